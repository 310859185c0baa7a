"""Course assignments: student versions of the chapter notebooks, and grading.

One source: the chapter notebooks hold the worked solutions between nbgrader's
markers, in code cells::

    def split(x, num_heads):
        ### BEGIN SOLUTION
        ...the instructor's answer...
        ### END SOLUTION

and, optionally, tests that students must not see, in check cells::

    ### BEGIN HIDDEN TESTS
    ...more checks...
    ### END HIDDEN TESTS

``student`` writes a copy of each chapter with every solution replaced by a stub
that raises ``NotImplementedError`` (with the indentation of the markers, as
nbgrader does), hidden tests removed, outputs cleared and the solution cells no
longer collapsed. The check cells stay, so students get the same immediate feedback.

``grade`` runs a folder of submitted student notebooks, each in its own kernel
(nbclient) in its own process, with a time limit per cell and per notebook, and
writes a score table per student and exercise (CSV and JSON). Check cells are put
back to the instructor's version (hidden tests included) before a submission runs,
so editing a check cannot earn points. By default only what the exercises need
runs: the chapter's set-up and import cells, then the whole exercise section of the
submission (``--full`` runs every cell, as the student did).

The markers are nbgrader's, so the chapters also work with nbgrader itself; this
module does the same two jobs with nbformat and nbclient alone, offline and
without nbgrader's course database and server.

Usage::

    python -m attnbook.assignments student notebooks/*.ipynb --out student/
    python -m attnbook.assignments grade submissions/ --source notebooks/ --out grades/

A submission folder holds either ``<student>.ipynb`` files or one folder per
student with that student's notebooks; each student notebook names its chapter in
its metadata (``attnbook.chapter``), written by ``student``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BEGIN_SOLUTION", "END_SOLUTION", "BEGIN_HIDDEN_TESTS", "END_HIDDEN_TESTS",
    "Exercise", "find_exercises", "clear_solutions", "remove_hidden_tests", "make_student_version",
    "write_student_versions", "ExerciseResult", "Submission", "grade_submission", "grade_folder",
    "write_grades", "main",
]

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB_COMMENT = "# YOUR CODE HERE"
METADATA_KEY = "attnbook"

_EXERCISE_HEADING = re.compile(r"^#{2,4}\s+Exercise\s+(\d+(?:\.\d+)*)\b[:.]?\s*(.*)$", re.MULTILINE)
_CHECK_CALL = re.compile(r"\bexercises\.ch\d+\.check_\w+\s*\(")
_EXERCISES_SECTION = re.compile(r"^##\s+Exercises\s*$", re.MULTILINE)
_IMPORTS_ATTNBOOK = re.compile(r"^\s*(import attnbook\b|from attnbook\b)", re.MULTILINE)


def _nbformat():
    try:
        import nbformat
    except ImportError:
        raise ModuleNotFoundError("expected nbformat (pip install nbformat nbclient) for student versions "
                                  "and grading, but it is not installed") from None
    return nbformat


# --- the exercises of a notebook ---------------------------------------------------------

@dataclass
class Exercise:
    """One graded item: a check cell, and the solution cells it checks.

    ``label`` is the exercise's number from its heading (``"5.1"``), with a suffix
    (``"5.1b"``) when one exercise has several check cells.
    """

    label: str
    title: str
    check_cell: int
    solution_cells: list[int] = field(default_factory=list)


def _cells(nb: Any) -> list[Any]:
    if not hasattr(nb, "cells") or not isinstance(nb.cells, list):
        raise TypeError(f"expected a notebook (nbformat.NotebookNode with .cells), got {type(nb).__name__}")
    return nb.cells


def find_exercises(nb: Any) -> list[Exercise]:
    """The graded items of a chapter notebook, in order.

    An exercise is a Markdown heading ``### Exercise N.M: title``; every code cell
    after it that calls ``exercises.chNN.check_...(...)`` is graded, and the code
    cells with solution markers between the heading and that check are its solution.
    Raises ``ValueError`` for a check cell before any exercise heading.
    """
    found: list[Exercise] = []
    label, title, solutions, count = None, "", [], 0
    for index, cell in enumerate(_cells(nb)):
        if cell.cell_type == "markdown":
            match = _EXERCISE_HEADING.search(cell.source)
            if match:
                label, title, solutions, count = match.group(1), match.group(2).strip(), [], 0
            continue
        if cell.cell_type != "code":
            continue
        if BEGIN_SOLUTION in cell.source:
            solutions.append(index)
        if _CHECK_CALL.search(cell.source):
            if label is None:
                raise ValueError(f"cell {index}: expected a check cell to follow a '### Exercise N.M: title' "
                                 f"heading, but no exercise heading comes before it")
            suffix = "" if count == 0 else "abcdefghijklmnopqrstuvwxyz"[count]
            found.append(Exercise(f"{label}{suffix}", title, index, list(solutions)))
            count += 1
    return found


def _marker_regions(source: str, begin: str, end: str, where: str) -> list[tuple[int, int]]:
    """Line index pairs (begin, end) of every marked region; ValueError if unbalanced."""
    lines = source.split("\n")
    regions, start = [], None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped == begin:
            if start is not None:
                raise ValueError(f"{where}: expected {end!r} before the next {begin!r} (line {number + 1})")
            start = number
        elif stripped == end:
            if start is None:
                raise ValueError(f"{where}: found {end!r} without a {begin!r} before it (line {number + 1})")
            regions.append((start, number))
            start = None
    if start is not None:
        raise ValueError(f"{where}: expected {end!r} to close the {begin!r} on line {start + 1}, found none")
    return regions


def clear_solutions(source: str, where: str = "cell") -> str:
    """Replace each solution region (markers included) with a stub, keeping its indentation.

    >>> print(clear_solutions("def f(x):\\n    ### BEGIN SOLUTION\\n    return x\\n    ### END SOLUTION"))
    def f(x):
        # YOUR CODE HERE
        raise NotImplementedError()
    """
    if not isinstance(source, str):
        raise TypeError(f"expected the cell source as a str, got {type(source).__name__}")
    lines = source.split("\n")
    for start, stop in reversed(_marker_regions(source, BEGIN_SOLUTION, END_SOLUTION, where)):
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        lines[start:stop + 1] = [f"{indent}{STUB_COMMENT}", f"{indent}raise NotImplementedError()"]
    return "\n".join(lines)


def remove_hidden_tests(source: str, where: str = "cell") -> str:
    """Remove each hidden-test region (markers included)."""
    if not isinstance(source, str):
        raise TypeError(f"expected the cell source as a str, got {type(source).__name__}")
    lines = source.split("\n")
    for start, stop in reversed(_marker_regions(source, BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS, where)):
        del lines[start:stop + 1]
    return "\n".join(lines).rstrip("\n")


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
    nbformat = _nbformat()
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
    note = nbformat.v4.new_markdown_cell(_STUDENT_NOTE.format(title=_title(nb, chapter), stub=STUB_COMMENT))
    student.cells.insert(first_markdown + 1, note)
    student.metadata[METADATA_KEY] = {"chapter": chapter, "version": "student",
                                      "exercises": [e.label for e in exercises]}
    return student


def write_student_versions(notebooks: Iterable[str | Path], out_dir: str | Path,
                           zip_name: str | None = None) -> list[Path]:
    """Write the student version of each notebook into ``out_dir`` (same file names).

    With ``zip_name``, also pack them into ``out_dir/zip_name``. Returns the paths written.
    """
    nbformat = _nbformat()
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
        nb = nbformat.read(path, as_version=4)
        student = make_student_version(nb, path.stem)
        target = out / path.name
        nbformat.write(student, target)
        written.append(target)
    if zip_name:
        with zipfile.ZipFile(out / zip_name, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for target in written:
                archive.write(target, arcname=f"student/{target.name}")
        written.append(out / zip_name)
    return written


# --- grading ------------------------------------------------------------------------------

STATUSES = ("pass", "fail", "not done", "error", "timeout", "not run", "missing")


@dataclass
class ExerciseResult:
    """The outcome of one graded item for one submission."""

    label: str
    status: str  # one of STATUSES
    points: float
    message: str = ""


@dataclass
class Submission:
    """One graded notebook: who, which chapter, the outcome of each exercise."""

    student: str
    path: str
    chapter: str
    status: str  # "graded", "malformed", "unknown chapter", "timeout", "crashed"
    seconds: float
    exercises: list[ExerciseResult] = field(default_factory=list)
    message: str = ""

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)


def _position(cells: list[Any], cell_id: str | None) -> int | None:
    """Index of the cell with this id (nbformat 4.5 cell ids), or None."""
    if cell_id is None:
        return None
    return next((i for i, c in enumerate(cells) if c.get("id") == cell_id), None)


def _graded_notebook(submission: Any, source: Any, full: bool) -> tuple[Any, dict[str, int], list[str], list[str]]:
    """Build the notebook to run: the submission with the instructor's check cells.

    Returns the notebook, the cell index of each exercise's check, the labels of
    exercises whose solution cell the submission no longer has, and every label.
    """
    nbformat = _nbformat()
    exercises = find_exercises(source)
    cells = [copy.deepcopy(c) for c in submission.cells]
    missing: list[str] = []
    # Put each check back to the instructor's version (hidden tests included).
    for exercise in exercises:
        original = source.cells[exercise.check_cell]
        index = _position(cells, original.get("id"))
        if index is None:  # the student deleted the check: put it after their solution cell
            anchors = [a for a in (_position(cells, source.cells[s].get("id")) for s in exercise.solution_cells)
                       if a is not None]
            if exercise.solution_cells and not anchors:
                missing.append(exercise.label)
                continue
            index = (max(anchors) + 1) if anchors else len(cells)
            cells.insert(index, nbformat.v4.new_code_cell())
        graded_part, rest = _split_check(original.source)
        cells[index].source = graded_part
        cells[index].metadata[METADATA_KEY] = {"grade": exercise.label}
        if rest:  # what the cell does after its checks (a demo, a printout) runs, ungraded, after it
            cells.insert(index + 1, nbformat.v4.new_code_cell(rest))
    if not full:
        cells = _exercise_section(cells, source)
    positions: dict[str, int] = {}
    for i, cell in enumerate(cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        label = cell.get("metadata", {}).get(METADATA_KEY, {}).get("grade")
        if label:
            positions[label] = i
    graded = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(source.metadata))
    return graded, positions, missing, [e.label for e in exercises]


def _split_check(source: str) -> tuple[str, str]:
    """Split a check cell after its last check call (or hidden-test block): (graded, rest)."""
    import ast

    try:
        statements = ast.parse(source).body
    except SyntaxError:
        return source, ""
    lines = source.split("\n")
    last = 0
    for statement in statements:
        segment = "\n".join(lines[statement.lineno - 1:statement.end_lineno])
        if _CHECK_CALL.search(segment):
            last = max(last, statement.end_lineno)
    for number, line in enumerate(lines, start=1):
        if line.strip() == END_HIDDEN_TESTS:
            last = max(last, number)
    if last == 0:
        return source, ""
    return "\n".join(lines[:last]), "\n".join(lines[last:]).strip("\n")


def _exercise_section(cells: list[Any], source: Any) -> list[Any]:
    """The instructor's set-up and import cells, then the submission's exercise section."""
    preamble = []
    for cell in source.cells:
        if cell.cell_type == "code":
            preamble.append(copy.deepcopy(cell))
            if _IMPORTS_ATTNBOOK.search(cell.source):
                break
    start = next((i for i, c in enumerate(cells) if c.cell_type == "markdown" and _EXERCISES_SECTION.search(c.source)),
                 None)
    if start is None:  # heading removed: start at the first exercise heading or graded cell
        start = next((i for i, c in enumerate(cells)
                      if (c.cell_type == "markdown" and _EXERCISE_HEADING.search(c.source))
                      or c.get("metadata", {}).get(METADATA_KEY, {}).get("grade")), len(cells))
    return preamble + [c for c in cells[start:] if c.cell_type == "code"]


def _outcome(cell: Any, label: str) -> ExerciseResult:
    if cell.get("execution_count") is None and not cell.get("outputs"):
        return ExerciseResult(label, "not run", 0.0, "the notebook stopped before this check ran")
    for output in cell.get("outputs", []):
        if output.get("output_type") != "error":
            continue
        name, value = output.get("ename", ""), str(output.get("evalue", ""))
        message = f"{name}: {value}".strip()
        message = message if len(message) <= 400 else message[:397] + "..."
        if name == "CheckFailed" and "not implemented yet" in value:
            return ExerciseResult(label, "not done", 0.0, message)
        if name in {"CheckFailed", "AssertionError"}:
            return ExerciseResult(label, "fail", 0.0, message)
        if name in {"KeyboardInterrupt", "CellTimeoutError"}:
            return ExerciseResult(label, "timeout", 0.0, "ran past the time limit per cell (an endless loop?)")
        return ExerciseResult(label, "error", 0.0, message)
    text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    if "PASS" in text:
        return ExerciseResult(label, "pass", 1.0, "")
    return ExerciseResult(label, "fail", 0.0, "the check printed no PASS line")


def _chapter_of(nb: Any) -> str | None:
    meta = nb.metadata.get(METADATA_KEY, {})
    return meta.get("chapter") if isinstance(meta, dict) else None


def _chapter_from_name(stem: str, sources: dict[str, Path]) -> str | None:
    """The chapter a file name points to: the same stem, or the same two-digit number."""
    if stem in sources:
        return stem
    if len(sources) == 1:
        return next(iter(sources))
    match = re.match(r"(\d{2})", stem)
    numbered = [name for name in sources if match and name.startswith(match.group(1))]
    return numbered[0] if len(numbered) == 1 else None


def grade_submission(path: str | Path, sources: dict[str, Path], student: str, *, full: bool = False,
                     cell_timeout: float = 60, notebook_timeout: float = 300,
                     chapter: str | None = None, threads: int | None = None) -> Submission:
    """Grade one submitted notebook in a separate process; never raises for a bad submission.

    ``sources`` maps chapter names (file stems) to the instructor's notebooks.
    A submission that is not a readable notebook is "malformed"; one that runs past
    ``notebook_timeout`` seconds is stopped (its kernel too) and scored as far as
    it got; a cell past ``cell_timeout`` is interrupted and the rest still runs.
    ``threads`` sets OMP_NUM_THREADS for its kernel unless the environment sets it.
    """
    nbformat = _nbformat()
    path = Path(path)
    start = time.perf_counter()

    def result(status: str, message: str = "", exercises: list[ExerciseResult] | None = None,
               chapter_name: str = "") -> Submission:
        return Submission(student, str(path), chapter_name, status, round(time.perf_counter() - start, 2),
                          exercises or [], message)

    try:
        nb = nbformat.read(path, as_version=4)
        _cells(nb)
    except Exception as error:  # noqa: BLE001 - any unreadable file is a malformed submission
        return result("malformed", f"not a readable notebook: {type(error).__name__}: {str(error)[:200]}")
    name = chapter or _chapter_of(nb) or _chapter_from_name(path.stem, sources)
    if name not in sources:
        return result("unknown chapter", f"expected metadata {METADATA_KEY}.chapter naming one of "
                      f"{sorted(sources)}, got {name!r}")
    graded, positions, missing, labels = _graded_notebook(nb, nbformat.read(sources[name], as_version=4), full)
    with tempfile.TemporaryDirectory(prefix="attnbook-grade-") as tmp:
        todo, done, pid_file = Path(tmp) / "in.ipynb", Path(tmp) / "out.ipynb", Path(tmp) / "kernel.pid"
        nbformat.write(graded, todo)
        command = [sys.executable, "-m", "attnbook.assignments", "_run", str(todo), str(done),
                   "--cwd", str(sources[name].resolve().parent), "--cell-timeout", str(cell_timeout),
                   "--pid-file", str(pid_file)]
        env = dict(os.environ)
        if threads is not None:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True, env=env)
        status, message = "graded", ""
        try:
            log, _ = worker.communicate(timeout=notebook_timeout)
        except subprocess.TimeoutExpired:
            status, message = "timeout", f"stopped after the time limit per notebook ({notebook_timeout:g} s)"
            _stop(worker, pid_file)
            log = ""
        if status == "graded" and worker.returncode != 0:
            status, message = "crashed", f"the grading run failed: {log.strip()[-300:]}"
        executed = nbformat.read(done, as_version=4) if done.exists() else graded
    results = []
    for label in labels:
        if label in missing:
            results.append(ExerciseResult(label, "missing", 0.0, "the solution cell was deleted"))
        elif label in positions:
            outcome = _outcome(executed.cells[positions[label]], label)
            if status == "timeout" and outcome.status == "not run":
                outcome = ExerciseResult(label, "timeout", 0.0, message)
            results.append(outcome)
        else:
            results.append(ExerciseResult(label, "missing", 0.0, "the check cell is missing"))
    return result(status, message, results, name)


def _stop(worker: subprocess.Popen, pid_file: Path) -> None:
    """Stop a grading process and its kernel (which runs in a session of its own)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if worker.poll() is not None:
            break
        try:
            os.killpg(worker.pid, sig)
        except ProcessLookupError:
            break
        try:
            worker.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError, PermissionError):
            pass


def _run_notebook(todo: Path, done: Path, cwd: Path, cell_timeout: float, pid_file: Path | None) -> None:
    """Worker: execute a notebook with nbclient, errors allowed, interrupting slow cells."""
    nbformat = _nbformat()
    from nbclient import NotebookClient

    nb = nbformat.read(todo, as_version=4)
    client = NotebookClient(nb, timeout=int(max(1, cell_timeout)), allow_errors=True, interrupt_on_timeout=True,
                            kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
                            record_timing=False)

    def save_pid(**_: Any) -> None:
        process = getattr(getattr(client.km, "provisioner", None), "process", None)
        if pid_file is not None and process is not None:
            pid_file.write_text(str(process.pid))

    client.on_notebook_start = save_pid

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    try:
        client.execute()
    finally:
        nbformat.write(nb, done)


def _student_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def grade_folder(folder: str | Path, source_dir: str | Path, *, jobs: int = 1, full: bool = False,
                 cell_timeout: float = 60, notebook_timeout: float = 300) -> list[Submission]:
    """Grade every ``.ipynb`` under ``folder`` (``<student>.ipynb`` or ``<student>/<any>.ipynb``).

    ``source_dir`` holds the instructor's chapter notebooks. Submissions run ``jobs``
    at a time; one bad submission never stops the others.
    """
    folder, source_dir = Path(folder), Path(source_dir)
    if not folder.is_dir():
        raise ValueError(f"expected a folder of submitted notebooks, got {str(folder)!r}")
    sources = {p.stem: p for p in sorted(source_dir.glob("*.ipynb"))}
    if not sources:
        raise ValueError(f"expected the instructor's chapter notebooks in {str(source_dir)!r}, found none")
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"expected jobs to be a positive int, got {jobs!r}")
    for name, value in (("cell_timeout", cell_timeout), ("notebook_timeout", notebook_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"expected {name} to be a positive number of seconds, got {value!r}")
    paths = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not paths:
        raise ValueError(f"expected submitted .ipynb files in {str(folder)!r}, found none")
    threads = max(1, (os.cpu_count() or 1) // jobs)  # share the cores between the kernels that run at once
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(grade_submission, p, sources, _student_name(p, folder), full=full,
                               cell_timeout=cell_timeout, notebook_timeout=notebook_timeout, threads=threads)
                   for p in paths]
        return [f.result() for f in futures]


def write_grades(submissions: Sequence[Submission], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``grades.csv`` (one row per student and chapter, one column per exercise) and ``grades.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    def column(s: Submission, e: ExerciseResult) -> str:  # "05:5.2": chapter number and exercise
        return f"{s.chapter[:2]}:{e.label}" if s.chapter else e.label

    labels = list(dict.fromkeys(column(s, e) for s in submissions for e in s.exercises))
    csv_path, json_path = out / "grades.csv", out / "grades.json"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "chapter", "status", *labels, "points", "max_points", "seconds", "file"])
        for s in submissions:
            scores = {column(s, e): e.points for e in s.exercises}
            writer.writerow([s.student, s.chapter, s.status, *(scores.get(c, "") for c in labels), s.points,
                             len(s.exercises), s.seconds, s.path])
    records = []
    for s in submissions:
        record = asdict(s)
        record["points"], record["max_points"] = s.points, len(s.exercises)
        records.append(record)
    json_path.write_text(json.dumps({"submissions": records}, indent=2) + "\n", encoding="utf-8")
    return csv_path, json_path


# --- command line -------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnbook.assignments", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student", help="write student versions (solutions replaced by stubs)")
    student.add_argument("notebooks", nargs="+", type=Path, help="chapter notebooks (.ipynb)")
    student.add_argument("--out", type=Path, default=Path("student"), help="output folder (default: student/)")
    student.add_argument("--zip", default=None, help="also pack them into this zip file in the output folder")
    grade = commands.add_parser("grade", help="grade a folder of submitted student notebooks")
    grade.add_argument("submissions", type=Path, help="folder: <student>.ipynb or <student>/<chapter>.ipynb")
    grade.add_argument("--source", type=Path, default=Path("notebooks"),
                       help="the instructor's chapter notebooks (default: notebooks/)")
    grade.add_argument("--out", type=Path, default=Path("grades"), help="where grades.csv/json go (default: grades/)")
    grade.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                       help="submissions graded at once (default: 2, or 1 on a one-core machine)")
    grade.add_argument("--cell-timeout", type=float, default=60, help="seconds per cell (default 60)")
    grade.add_argument("--timeout", type=float, default=300, help="seconds per notebook (default 300)")
    grade.add_argument("--full", action="store_true",
                       help="run every cell of each submission, not only the set-up and the exercises")
    run = commands.add_parser("_run", help=argparse.SUPPRESS)
    run.add_argument("todo", type=Path)
    run.add_argument("done", type=Path)
    run.add_argument("--cwd", type=Path, required=True)
    run.add_argument("--cell-timeout", type=float, required=True)
    run.add_argument("--pid-file", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.command == "student":
        started = time.perf_counter()
        written = write_student_versions(args.notebooks, args.out, zip_name=args.zip)
        for path in written:
            print(f"wrote {path}")
        print(f"{len(args.notebooks)} student notebooks in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "grade":
        started = time.perf_counter()
        submissions = grade_folder(args.submissions, args.source, jobs=args.jobs, full=args.full,
                                   cell_timeout=args.cell_timeout, notebook_timeout=args.timeout)
        csv_path, json_path = write_grades(submissions, args.out)
        for s in submissions:
            detail = ", ".join(f"{e.label} {e.status}" for e in s.exercises) or s.message
            print(f"{s.student:>16}  {s.chapter or '?':<28} {s.points:g}/{len(s.exercises)}  [{s.status}]  {detail}")
        print(f"graded {len(submissions)} notebooks in {time.perf_counter() - started:.1f} s; "
              f"wrote {csv_path} and {json_path}")
        return 0
    _run_notebook(args.todo, args.done, args.cwd, args.cell_timeout, args.pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
