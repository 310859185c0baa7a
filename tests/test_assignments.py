"""Student versions and grading (attnbook.course; attnbook.assignments is its alias).

Fast tests check the text transformations on every chapter, the wire format and the
sandbox. The grading tests start real Jupyter kernels: every chapter's student version
must score 0 (its checks say "not implemented yet") and its instructor version full
marks, and a planted class of submissions (correct, stubs, partial, wrong, raising,
endless loop, tampered check, deleted cell, malformed file, and cheats: printing PASS,
patching the checks, forging the grader's result file, writing outside its folder,
allocating without end) must get exactly the expected grades.
"""

from __future__ import annotations

import ast
import copy
import csv
import json
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from attnbook import assignments
from attnbook.course import cli, sandbox, wire
from attnbook.course.grading import Limits, grade_folder
from attnbook.course.markers import (BEGIN_HIDDEN_TESTS, BEGIN_SOLUTION, END_HIDDEN_TESTS, END_SOLUTION,
                                     clear_solutions, find_exercises, remove_hidden_tests)
from attnbook.course.reports import write_grades
from attnbook.course.student import make_student_version, write_student_versions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
CH05 = ROOT / "notebooks" / "05_multihead_cross_causal.ipynb"

pytestmark = pytest.mark.kernels  # the grading tests start kernels (tools/schedule.py runs this file early)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


# --- text transformations -------------------------------------------------------------------

def test_clear_solutions_keeps_indentation_and_code_around():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n# after"
    assert clear_solutions(source) == ("def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
                                       "# after")


def test_clear_solutions_handles_several_regions():
    source = "\n".join([BEGIN_SOLUTION, "a = 1", END_SOLUTION, "def g():", f"  {BEGIN_SOLUTION}", "  return 2",
                        f"  {END_SOLUTION}"])
    cleared = clear_solutions(source)
    assert cleared.count("raise NotImplementedError()") == 2
    assert "a = 1" not in cleared and "return 2" not in cleared
    assert "  raise NotImplementedError()" in cleared.split("\n")


@pytest.mark.parametrize("source, message", [
    (f"{BEGIN_SOLUTION}\nx = 1", "expected '### END SOLUTION' to close"),
    (f"x = 1\n{END_SOLUTION}", "without a '### BEGIN SOLUTION'"),
    (f"{BEGIN_SOLUTION}\n{BEGIN_SOLUTION}\n{END_SOLUTION}", "before the next"),
])
def test_unbalanced_markers_are_reported(source, message):
    with pytest.raises(ValueError, match=message):
        clear_solutions(source, where="my cell")


def test_bad_types_are_reported():
    with pytest.raises(TypeError, match="expected the cell source as a str"):
        clear_solutions(["not", "a", "string"])
    with pytest.raises(TypeError, match="expected the cell source as a str"):
        remove_hidden_tests(None)
    with pytest.raises(TypeError, match="expected a notebook"):
        find_exercises({"cells": []})
    with pytest.raises(TypeError, match="chapter name"):
        make_student_version(_read(CH05), "")


def test_remove_hidden_tests():
    source = f"check(f)\n{BEGIN_HIDDEN_TESTS}\ncheck_more(f)\n{END_HIDDEN_TESTS}"
    assert remove_hidden_tests(source) == "check(f)"


def test_a_notebook_without_exercises_is_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="expected at least one exercise"):
        make_student_version(nb, "99_empty")


def test_a_check_before_any_exercise_heading_is_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("exercises.ch01.check_pad(f)")])
    with pytest.raises(ValueError, match="no exercise heading"):
        find_exercises(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_chapter_has_graded_exercises(path: Path):
    found = find_exercises(_read(path))
    assert len(found) >= 3, f"{path.name}: expected at least 3 graded exercises, found {len(found)}"
    labels = [e.label for e in found]
    assert len(set(labels)) == len(labels), f"{path.name}: exercise labels repeat: {labels}"
    for exercise in found:
        assert exercise.solution_cells, f"{path.name}: exercise {exercise.label} has a check but no solution cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_student_version_hides_solutions_and_keeps_the_rest(path: Path):
    nb = _read(path)
    student = make_student_version(nb, path.stem)
    nbformat.validate(student)
    text = "\n".join(c.source for c in student.cells)
    for marker in (BEGIN_SOLUTION, END_SOLUTION, BEGIN_HIDDEN_TESTS, END_HIDDEN_TESTS):
        assert marker not in text, f"{path.name}: the student version still contains {marker!r}"
    student_by_id = {c.id: c for c in student.cells}
    assert len(student_by_id) == len(student.cells)
    for cell in nb.cells:  # no solution line survives in the student's cell
        if cell.cell_type == "code" and BEGIN_SOLUTION in cell.source:
            body = cell.source.split(BEGIN_SOLUTION, 1)[1].split(END_SOLUTION, 1)[0]
            stub = student_by_id[cell.id].source
            for line in body.strip().splitlines():
                if line.strip() and not line.strip().startswith("#"):
                    assert line.strip() not in stub.split("\n"), f"{path.name}: solution line kept: {line!r}"
    exercises = find_exercises(nb)
    assert len(find_exercises(student)) == len(exercises), "the student version must keep every check cell"
    assert student.metadata["attnbook"]["chapter"] == path.stem
    assert student.cells[0].source == nb.cells[0].source, "the Colab set-up cell must stay as it is"
    assert "REPO_URL" in student.cells[0].source
    assert student.metadata.get("accelerator") == "GPU"
    stubs = [c for c in student.cells if c.cell_type == "code" and "raise NotImplementedError()" in c.source]
    assert len(stubs) == sum(1 for c in nb.cells if c.cell_type == "code" and BEGIN_SOLUTION in c.source)
    for cell in stubs:
        assert "hide-input" not in cell.metadata.get("tags", []), "students must see the cell they write in"
        ast.parse(cell.source)  # a stub is still valid Python
    for cell in student.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


def test_write_student_versions_and_zip(tmp_path: Path):
    written = write_student_versions(NOTEBOOKS, tmp_path / "student", zip_name="student.zip")
    assert [p.name for p in written[:-1]] == [p.name for p in NOTEBOOKS]
    with zipfile.ZipFile(written[-1]) as archive:
        assert sorted(archive.namelist()) == sorted(f"student/{p.name}" for p in NOTEBOOKS)
    with pytest.raises(ValueError, match="expected an existing .ipynb file"):
        write_student_versions([tmp_path / "missing.ipynb"], tmp_path / "out")
    with pytest.raises(ValueError, match="at least one notebook"):
        write_student_versions([], tmp_path / "out")


def test_command_line_writes_student_versions(tmp_path: Path, capsys):
    assert cli.main(["student", str(CH05), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / CH05.name).is_file()
    assert "1 student notebooks" in capsys.readouterr().out
    assert assignments.main(["student", str(CH05), "--out", str(tmp_path / "b")]) == 0  # the old name, an alias
    a, b = (_read(tmp_path / d / CH05.name) for d in "ab")
    assert [c.source for c in a.cells] == [c.source for c in b.cells]


# --- the wire between grader and kernel, and the sandbox -------------------------------------

def test_wire_round_trips_plain_data():
    import numpy as np
    import pandas as pd
    import torch

    value = {"t": torch.arange(6, dtype=torch.float64).reshape(2, 3), "b": torch.tensor([True, False]),
             "a": np.ones((2, 2), dtype=np.int64), "nested": [1, 2.5, float("nan"), ("x", None)],
             "frame": pd.DataFrame({"digits": [1, 2], "exact_match": [1.0, 0.5]}), "n": np.float32(1.5)}
    back = wire.loads(wire.dumps(value))
    assert torch.equal(back["t"], value["t"]) and back["t"].dtype == torch.float64
    assert torch.equal(back["b"], value["b"]) and isinstance(back["a"], np.ndarray)
    assert back["nested"][:2] == [1, 2.5] and back["nested"][3] == ("x", None) and back["nested"][2] != back["nested"][2]
    pd.testing.assert_frame_equal(back["frame"], value["frame"])
    assert back["n"] == 1.5


@pytest.mark.parametrize("bad, message", [
    ('{"t": "tensor", "dtype": "object", "shape": [1], "data": ""}', "known dtype"),
    ('{"t": "ndarray", "dtype": "float32", "shape": [3], "data": "AAAAAA=="}', "expected 3 elements"),
    ('{"t": "pickle", "v": "..."}', "known tag"),
    ('[1, 2]', "tagged value"),
    ("not json", "malformed message"),
])
def test_wire_refuses_anything_else(bad, message):
    with pytest.raises(wire.WireError, match=message):
        wire.loads(bad)
    with pytest.raises(wire.WireError, match="expected numbers"):
        wire.dumps(object())


def test_in_kernel_trials_name_only_the_package():
    from attnbook.course.worker import KernelFunction

    proxy = KernelFunction(session=None, expression="MyBlock")
    trial = proxy.in_kernel("attnbook.course.exercises.ch06:block_trial")
    assert "import_module('attnbook.course.exercises.ch06').block_trial((MyBlock)" in trial.expression
    for bad in ("os:system", "attnbook.course.exercises.ch06", "attnbook; import os:x", "attnbook:a.b"):
        with pytest.raises(ValueError, match="attnbook.<module>:<function>"):
            proxy.in_kernel(bad)


SANDBOX_PROBE = """
import os, socket
report = {}
for name, path in (("inside", "inside.txt"), ("outside", OUTSIDE)):
    try:
        open(path, "w").write("x")
        report[name] = "written"
    except OSError as error:
        report[name] = type(error).__name__
try:
    socket.create_connection(("127.0.0.1", 9), timeout=2)
    report["tcp"] = "connected"
except OSError as error:
    report["tcp"] = type(error).__name__
try:
    hog = bytearray(3 * 2**30)
    report["memory"] = "allocated"
except MemoryError:
    report["memory"] = "MemoryError"
print(report)
"""


def test_the_sandbox_blocks_writes_outside_network_and_memory(tmp_path: Path):
    import subprocess
    import sys

    outside = tmp_path / "outside.txt"
    probe = SANDBOX_PROBE.replace("OUTSIDE", repr(str(outside)))
    subprocess.run([sys.executable, "-m", "attnbook.course.sandbox", "--root", str(tmp_path / "box"), "--memory-gb",
                    "1", "--", sys.executable, "-c", probe], check=True, timeout=120)
    log = (tmp_path / "box" / "kernel.log").read_text()
    assert "'inside': 'written'" in log and "'memory': 'MemoryError'" in log, log
    found = sandbox.available()
    if found["landlock_abi"]:
        assert "'outside': 'PermissionError'" in log and not outside.exists(), log
    if found["landlock_abi"] >= 4 or found["network_namespace"].startswith("isolated"):
        assert "'tcp': 'connected'" not in log, log


# --- grading ---------------------------------------------------------------------------------

def _set_function(nb: nbformat.NotebookNode, name: str, code: str) -> None:
    """Put ``code`` into the student's cell that defines ``name``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and f"def {name}(" in cell.source:
            cell.source = code
            return
    raise AssertionError(f"no cell defines {name}")


SPLIT = """def split(x, num_heads):
    B, T, C = x.shape
    return x.view(B, T, num_heads, C // num_heads).transpose(1, 2)"""
MULTI_HEAD = """def multi_head(x, W_q, W_k, W_v, W_o, num_heads):
    B, T, d = x.shape
    q, k, v = (split(x @ W, num_heads) for W in (W_q, W_k, W_v))
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // num_heads), dim=-1)
    return (w @ v).transpose(1, 2).reshape(B, T, d) @ W_o"""
GROUPED = """def grouped(q, k, v):
    g = q.shape[1] // k.shape[1]
    return scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), is_causal=True)[0]"""


PRINTS_PASS = """def split(x, num_heads):
    print("PASS  Exercise 5.1 (split into heads): all 3 cases")
    return x"""
PATCHES_CHECKS = """import attnbook.check, attnbook.course.check, attnbook.course.wire, attnbook.exercises.ch05 as ch05
from attnbook import exercises
def _always_pass(*args, **kwargs):
    print("PASS")
for module in (attnbook.check, attnbook.course.check):
    for name in ("cases", "close", "equal", "true", "at_least", "at_most"):
        setattr(module, name, _always_pass)
    module.CheckFailed = type("CheckFailed", (Exception,), {})
for name in ch05.__all__:
    setattr(ch05, name, _always_pass)
    setattr(exercises.ch05, name, _always_pass)
def _forged_serve(resolve, mode, payload, nonce):  # replies "ok" to every call, with no real answer
    print("\\n" + attnbook.course.wire.MARK, nonce, '{"t":"dict","v":[["ok",null]]}' if mode == "call"
          else '{"t":"dict","v":[["callable",true]]}')
attnbook.course.wire.serve = _forged_serve
def split(x, num_heads):
    return x"""
FORGES_RESULT = """import json, os
forged = {"exercises": {"5.1": {"status": "pass"}, "5.2": {"status": "pass"}, "5.3": {"status": "pass"}},
          "done": True, "problem": ""}
for path in ("../grader/result.json", OUTSIDE):
    try:
        with open(path, "w") as handle:
            json.dump({"payload": json.dumps(forged, sort_keys=True), "hmac": "0" * 64}, handle)
    except OSError as error:
        print("blocked:", error)
""" + SPLIT
HOGS_MEMORY = """def multi_head(x, W_q, W_k, W_v, W_o, num_heads):
    hog = []
    while True:
        hog.append(bytearray(2**26))"""


PLANTED = ("5.1", "5.2", "5.3")  # the exercises the planted submissions answer; later ones stay stubs


def _planted_class(folder: Path, outside: Path | None = None) -> dict[str, dict[str, str]]:
    """Write planted ch05 submissions; return the expected status of each exercise per student."""
    student = make_student_version(_read(CH05), CH05.stem)
    folder.mkdir()

    def submit(name: str, **functions: str) -> None:
        nb = copy.deepcopy(student)
        for fn, code in functions.items():
            _set_function(nb, fn, code)
        nbformat.write(nb, folder / f"{name}.ipynb")

    submit("all_correct", split=SPLIT, multi_head=MULTI_HEAD, grouped=GROUPED)
    submit("all_stubs")
    submit("partial", split=SPLIT, multi_head=MULTI_HEAD.replace("@ W_o", "@ W_o.T"))  # 5.3 left as a stub
    submit("raises", split="def split(x, num_heads):\n    return 1 / 0",  # raises inside the function
           multi_head='raise RuntimeError("the cell itself fails")', grouped=GROUPED)
    submit("endless_loop", split=SPLIT, multi_head="def multi_head(*args):\n    while True:\n        pass",
           grouped=GROUPED)
    tampered = copy.deepcopy(student)
    for cell in tampered.cells:  # replaces every check with a fake pass line
        if "exercises.ch05.check_" in cell.source:
            cell.source = 'print("PASS")'
    nbformat.write(tampered, folder / "tampered.ipynb")
    deleted = copy.deepcopy(student)
    deleted.cells = [c for c in deleted.cells if "def grouped(" not in c.source and "check_grouped_query" not in c.source]
    _set_function(deleted, "split", SPLIT)
    nbformat.write(deleted, folder / "deleted_cells.ipynb")
    (folder / "malformed.ipynb").write_text('{"cells": [ this is not json', encoding="utf-8")
    # Cheats: none may score what it did not solve.
    submit("prints_pass", split=PRINTS_PASS)
    submit("patches_checks", split=PATCHES_CHECKS)
    submit("forges_result", split=FORGES_RESULT.replace("OUTSIDE", repr(str(outside or folder / "x"))))
    submit("hogs_memory", split=SPLIT, multi_head=HOGS_MEMORY, grouped=GROUPED)
    return {
        "prints_pass": {"5.1": "fail", "5.2": "not done", "5.3": "not done"},
        "patches_checks": {"5.1": "fail", "5.2": "fail", "5.3": "fail"},  # forged replies carry no answer
        "forges_result": {"5.1": "pass", "5.2": "not done", "5.3": "not done"},
        "hogs_memory": {"5.1": "pass", "5.2": "fail", "5.3": "pass"},
        "all_correct": {"5.1": "pass", "5.2": "pass", "5.3": "pass"},
        "all_stubs": {"5.1": "not done", "5.2": "not done", "5.3": "not done"},
        "partial": {"5.1": "pass", "5.2": "fail", "5.3": "not done"},
        "raises": {"5.1": "fail", "5.2": "error", "5.3": "pass"},
        "endless_loop": {"5.1": "pass", "5.2": "timeout", "5.3": "pass"},
        "tampered": {"5.1": "not done", "5.2": "not done", "5.3": "not done"},
        "deleted_cells": {"5.1": "pass", "5.2": "not done", "5.3": "missing"},
        "malformed": {},
    }


def test_grading_a_planted_class(tmp_path: Path):
    outside = tmp_path / "written_by_a_submission.json"
    expected = _planted_class(tmp_path / "submissions", outside)
    started = time.perf_counter()
    graded = grade_folder(tmp_path / "submissions", ROOT / "notebooks", jobs=2, cell_timeout=15, notebook_timeout=600,
                          limits=Limits(memory_gb=1.5))
    took = time.perf_counter() - started
    by_student = {s.student: s for s in graded}
    assert sorted(by_student) == sorted(expected)
    for name, statuses in expected.items():
        everything = {e.label: e.status for e in by_student[name].exercises}
        got = {label: status for label, status in everything.items() if label in PLANTED}
        assert got == statuses, f"{name}: expected {statuses}, got {got} ({by_student[name].exercises})"
        later = {label: status for label, status in everything.items() if label not in PLANTED}
        assert "pass" not in later.values(), f"{name}: exercises left as stubs passed: {later}"  # e.g. 5.4
        assert by_student[name].points == sum(s == "pass" for s in statuses.values())
    assert by_student["malformed"].status == "malformed"
    assert "not a readable notebook" in by_student["malformed"].message
    assert by_student["partial"].exercises[1].message.startswith("CheckFailed: Exercise 5.2")
    assert "ZeroDivisionError" in by_student["raises"].exercises[0].message
    assert "MemoryError" in by_student["hogs_memory"].exercises[1].message
    assert all(s.status == "graded" for name, s in by_student.items() if name != "malformed")
    if sandbox.landlock_abi():
        assert not outside.exists(), "a submission wrote outside its folder"
    assert took < 1200, f"grading {len(expected)} planted submissions took {took:.0f} s"

    csv_path, json_path = write_grades(graded, tmp_path / "grades")
    rows = {row["student"]: row for row in csv.DictReader(csv_path.open(encoding="utf-8"))}
    chapter_max = str(len(by_student["all_stubs"].exercises))  # every exercise of the chapter, 5.4 included
    assert rows["all_correct"]["points"] == "3.0" and rows["all_correct"]["max_points"] == chapter_max
    assert rows["partial"]["05:5.1"] == "1.0" and rows["partial"]["05:5.2"] == "0.0"
    assert rows["malformed"]["status"] == "malformed" and rows["malformed"]["points"] == "0"
    data = json.loads(json_path.read_text(encoding="utf-8"))
    endless = next(s for s in data["submissions"] if s["student"] == "endless_loop")
    assert [e["status"] for e in endless["exercises"] if e["label"] in PLANTED] == ["pass", "timeout", "pass"]


def test_a_notebook_past_its_time_limit_is_stopped(tmp_path: Path):
    student = make_student_version(_read(CH05), CH05.stem)
    _set_function(student, "split", "def split(x, num_heads):\n    import time\n    while True:\n        time.sleep(0.1)")
    folder = tmp_path / "subs"
    folder.mkdir()
    nbformat.write(student, folder / "slow.ipynb")
    started = time.perf_counter()
    (graded,) = grade_folder(folder, ROOT / "notebooks", cell_timeout=600, notebook_timeout=15)
    assert time.perf_counter() - started < 60
    assert graded.status == "timeout"
    assert {e.status for e in graded.exercises} == {"timeout"}


def test_hidden_tests_are_hidden_from_students_and_used_in_grading(tmp_path: Path):
    source = _read(CH05)
    for cell in source.cells:  # a hidden test that a solution which only handles 3-D inputs fails
        if "exercises.ch05.check_split_heads(split)" in cell.source:
            cell.source += (f"\n{BEGIN_HIDDEN_TESTS}\nassert split(torch.zeros(2, 3, 4), 2).shape == (2, 2, 3, 2)\n"
                            f"check.equal(tuple(split(torch.zeros(1, 5, 6), 3).shape), (1, 3, 5, 2), 'hidden')\n"
                            f"{END_HIDDEN_TESTS}")
    sources = tmp_path / "sources"
    sources.mkdir()
    nbformat.write(source, sources / CH05.name)
    student = make_student_version(source, CH05.stem)
    assert "hidden" not in "\n".join(c.source for c in student.cells)
    # right for 1, 2 and 4 heads (the visible cases), wrong for 3 (the hidden one)
    wrong = SPLIT.replace("return x.view", "return x if num_heads == 3 else x.view")
    folder = tmp_path / "subs"
    folder.mkdir()
    _set_function(student, "split", wrong)
    nbformat.write(student, folder / "student.ipynb")
    (graded,) = grade_folder(folder, sources, cell_timeout=30)
    assert graded.exercises[0].status == "fail", graded.exercises[0]
    (without_hidden,) = grade_folder(folder, ROOT / "notebooks", cell_timeout=30)
    assert without_hidden.exercises[0].status == "pass", without_hidden.exercises[0]


@pytest.mark.parametrize("bad, message", [
    ({"jobs": 0}, "jobs to be a positive int"),
    ({"cell_timeout": -1}, "cell_timeout to be a positive number"),
    ({"notebook_timeout": "10"}, "notebook_timeout to be a positive number"),
])
def test_grade_folder_rejects_bad_settings(tmp_path: Path, bad, message):
    (tmp_path / "x.ipynb").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        grade_folder(tmp_path, ROOT / "notebooks", **bad)


def test_grade_folder_rejects_missing_folders(tmp_path: Path):
    with pytest.raises(ValueError, match="expected a folder of submitted notebooks"):
        grade_folder(tmp_path / "nope", ROOT / "notebooks")
    with pytest.raises(ValueError, match="expected the instructor's chapter notebooks"):
        grade_folder(tmp_path, tmp_path)
    with pytest.raises(ValueError, match="expected submitted .ipynb files"):
        grade_folder(tmp_path, ROOT / "notebooks")


def test_every_chapter_student_version_fails_and_solution_passes(tmp_path: Path):
    """The exercises are never silently broken: stubs score 0, the worked solutions full marks."""
    subs = tmp_path / "subs"
    write_student_versions(NOTEBOOKS, subs / "stubs")
    (subs / "solutions").mkdir()
    for path in NOTEBOOKS:
        (subs / "solutions" / path.name).write_bytes(path.read_bytes())
    graded = grade_folder(subs, ROOT / "notebooks", jobs=2, cell_timeout=120, notebook_timeout=300)
    assert len(graded) == 2 * len(NOTEBOOKS)
    for submission in graded:
        statuses = {e.label: e.status for e in submission.exercises}
        assert submission.status == "graded", submission
        assert len(statuses) >= 3, submission
        want = "pass" if submission.student == "solutions" else "not done"
        wrong = {label: (s, e.message) for (label, s), e in zip(statuses.items(), submission.exercises) if s != want}
        assert not wrong, f"{submission.chapter} ({submission.student}): expected every exercise {want!r}, got {wrong}"
