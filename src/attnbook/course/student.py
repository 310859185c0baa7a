"""Student versions of the chapter notebooks: every solution replaced by a stub.

A student copy keeps every cell (the check cells too, for immediate feedback), with
each solution region replaced by a stub that raises ``NotImplementedError`` (with
the indentation of the markers, as nbgrader does), hidden tests removed, outputs
cleared and the solution cells no longer collapsed.
"""

from __future__ import annotations

import copy
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attnbook.course.markers import (BEGIN_SOLUTION, METADATA_KEY, STUB_COMMENT, clear_solutions, find_exercises,
                                     nbformat, remove_hidden_tests)

__all__ = ["make_student_version", "write_student_versions"]

_STUDENT_NOTE = """\
> **Student version** of *{title}*. The exercises at the end have no solutions: write
> yours where a cell says `{stub}` (and delete its `raise NotImplementedError()` line),
> then run the check cell below it. It prints `PASS` when your answer is right, and says
> what was expected and what came back when it is not. Run the chapter's cells from the
> top first: the exercises use its imports."""


def _title(nb: Any, default: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.MULTILINE)
            if match:
                return match.group(1).strip()
    return default


def make_student_version(nb: Any, chapter: str) -> Any:
    """A student copy of a chapter notebook: stubs for solutions, no hidden tests, no outputs.

    ``chapter`` (the notebook's file stem, e.g. ``"05_multihead_cross_causal"``) is
    stored in the metadata so that grading finds the instructor's version.
    Raises ``ValueError`` when the notebook has no exercise or unbalanced markers.
    """
    if not isinstance(chapter, str) or not chapter.strip():
        raise TypeError(f"expected the chapter name as a non-empty str, got {chapter!r}")
    exercises = find_exercises(nb)
    if not exercises:
        raise ValueError(f"{chapter}: expected at least one exercise (a '### Exercise N.M' heading followed by a "
                         f"cell calling exercises.chNN.check_...), found none")
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        where = f"{chapter}, cell {index}"
        had_solution = BEGIN_SOLUTION in cell.source
        cell.source = remove_hidden_tests(clear_solutions(cell.source, where), where)
        cell.outputs, cell.execution_count = [], None
        if had_solution:
            tags = [t for t in cell.metadata.get("tags", []) if t not in {"hide-input", "hide-cell", "remove-input"}]
            if tags:
                cell.metadata["tags"] = tags
            else:
                cell.metadata.pop("tags", None)
    first_markdown = next((i for i, c in enumerate(student.cells) if c.cell_type == "markdown"), 0)
    note = nbformat().v4.new_markdown_cell(_STUDENT_NOTE.format(title=_title(nb, chapter), stub=STUB_COMMENT))
    student.cells.insert(first_markdown + 1, note)
    student.metadata[METADATA_KEY] = {"chapter": chapter, "version": "student",
                                      "exercises": [e.label for e in exercises]}
    return student


def write_student_versions(notebooks: Iterable[str | Path], out_dir: str | Path,
                           zip_name: str | None = None) -> list[Path]:
    """Write the student version of each notebook into ``out_dir`` (same file names).

    With ``zip_name``, also pack them into ``out_dir/zip_name``. Returns the paths written.
    """
    nbf = nbformat()
    paths = [Path(p) for p in notebooks]
    if not paths:
        raise ValueError("expected at least one notebook to make a student version of, got none")
    for path in paths:
        if path.suffix != ".ipynb" or not path.is_file():
            raise ValueError(f"expected an existing .ipynb file, got {str(path)!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        student = make_student_version(nbf.read(path, as_version=4), path.stem)
        target = out / path.name
        nbf.write(student, target)
        written.append(target)
    if zip_name:
        with zipfile.ZipFile(out / zip_name, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for target in written:
                archive.write(target, arcname=f"student/{target.name}")
        written.append(out / zip_name)
    return written
