"""Every chapter's exercise checks, in one suite: stubs fail, solutions pass, wrong answers fail.

The right answers are the chapter notebook's own solution cells (run here with the
chapter's imports), the stubs are its student version (:mod:`attnbook.course.student`),
and the wrong answers are the ones its exercises module declares in ``WRONG_ANSWERS``.
A new chapter (``python -m attnbook.course new-chapter``) is picked up with no edit here.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import nbformat
import pytest

from attnbook.course import check, exercises
from attnbook.course.markers import BEGIN_SOLUTION, IMPORTS_ATTNBOOK, check_target, clear_solutions, \
    find_exercises, split_check

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {p.stem: nbformat.read(p, as_version=4) for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}


def _module_name(stem: str) -> str:
    return f"ch{stem[:2]}"


def _imports(nb: nbformat.NotebookNode) -> str:
    """The import statements of the chapter's set-up cells (up to the one importing attnbook)."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        found += [ast.unparse(s) for s in ast.parse(cell.source).body if isinstance(s, (ast.Import, ast.ImportFrom))]
        if IMPORTS_ATTNBOOK.search(cell.source):
            break
    return "\n".join(found)


def _namespace(nb: nbformat.NotebookNode, student: bool) -> dict:
    """The chapter's imports, then every solution cell (or its stub) run in order."""
    namespace: dict = {}
    exec(_imports(nb), namespace)  # noqa: S102 - the repository's own notebooks
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and BEGIN_SOLUTION in cell.source:
            exec(clear_solutions(cell.source) if student else cell.source, namespace)  # noqa: S102
    return namespace


def _graded_items():
    for stem, nb in NOTEBOOKS.items():
        for exercise in find_exercises(nb):
            yield pytest.param(stem, exercise.check_cell, id=f"{stem[:2]}-{exercise.label}")


def _wrong_answers():
    for name in exercises.__all__:
        module = getattr(exercises, name)
        for check_name, wrongs in getattr(module, "WRONG_ANSWERS", {}).items():
            for number, entry in enumerate(wrongs, start=1):
                yield pytest.param(module, check_name, entry, id=f"{name}.{check_name}-{number}")


NAMESPACES: dict[tuple[str, bool], dict] = {}


def _run_check_cell(stem: str, cell_index: int, student: bool, capsys) -> str:
    key = (stem, student)
    if key not in NAMESPACES:
        NAMESPACES[key] = _namespace(NOTEBOOKS[stem], student)
    graded, _ = split_check(NOTEBOOKS[stem].cells[cell_index].source)
    exec(graded, NAMESPACES[key])  # noqa: S102
    return capsys.readouterr().out


@pytest.mark.parametrize("stem, cell_index", list(_graded_items()))
def test_the_notebooks_solution_passes(stem, cell_index, capsys):
    out = _run_check_cell(stem, cell_index, student=False, capsys=capsys)
    assert out.count("PASS") >= 1, f"{stem}: the check printed no pass line: {out!r}"


@pytest.mark.parametrize("stem, cell_index", list(_graded_items()))
def test_the_student_versions_stub_is_not_done(stem, cell_index, capsys):
    with pytest.raises(check.CheckFailed, match="not implemented yet"):
        _run_check_cell(stem, cell_index, student=True, capsys=capsys)


@pytest.mark.parametrize("module, check_name, entry", list(_wrong_answers()))
def test_a_wrong_answer_fails(module, check_name, entry):
    why, wrong, *pattern = entry
    label = re.escape(module.__name__.rsplit(".", 1)[1][2:].lstrip("0"))
    with pytest.raises(check.CheckFailed, match=pattern[0] if pattern else rf"Exercise {label}\.") as failure:
        getattr(module, check_name)(wrong)
    assert "not implemented yet" not in str(failure.value), f"{why}: reported as not done, not as wrong"


@pytest.mark.parametrize("name", exercises.__all__)
def test_every_chapter_module_keeps_the_contract(name):
    module = importlib.import_module(f"attnbook.course.exercises.{name}")
    checks = [c for c in module.__all__ if c.startswith("check_")]
    assert checks and checks == list(module.__all__), f"{name}: expected __all__ to list only check_* functions"
    wrong = getattr(module, "WRONG_ANSWERS", None)
    assert isinstance(wrong, dict), f"{name}: expected a WRONG_ANSWERS dict (check name -> [(why, function)])"
    assert set(wrong) == set(checks), (f"{name}: expected wrong answers for every check; missing "
                                       f"{sorted(set(checks) - set(wrong))}, unknown {sorted(set(wrong) - set(checks))}")
    for check_name, entries in wrong.items():
        assert entries and all(isinstance(e[0], str) and callable(e[1]) for e in entries), check_name
    stems = [s for s in NOTEBOOKS if _module_name(s) == name]
    assert len(stems) == 1, f"{name}: expected one chapter notebook notebooks/{name[2:]}_*.ipynb, found {stems}"
    called = set()
    for exercise in find_exercises(NOTEBOOKS[stems[0]]):
        for statement in ast.parse(NOTEBOOKS[stems[0]].cells[exercise.check_cell].source).body:
            target = check_target(statement)
            if target:
                assert target[0] == name, f"{stems[0]} calls exercises.{target[0]}, expected exercises.{name}"
                called.add(target[1])
    assert called == set(checks), f"{name}: checks no check cell calls: {sorted(set(checks) - called)}"


@pytest.mark.parametrize("name", exercises.__all__)
def test_a_generic_stub_is_not_done(name):
    module = getattr(exercises, name)

    def stub(*args, **kwargs):
        raise NotImplementedError

    for check_name in module.__all__:
        with pytest.raises(check.CheckFailed, match="not implemented yet"):
            getattr(module, check_name)(stub)


def test_every_chapter_with_exercises_has_a_module():
    for stem, nb in NOTEBOOKS.items():
        if find_exercises(nb):
            assert _module_name(stem) in exercises.__all__, f"{stem}: expected src/attnbook/course/exercises/" \
                                                            f"{_module_name(stem)}.py"
