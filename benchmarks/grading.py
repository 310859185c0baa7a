"""Time the course tooling: building every student version, and grading a class.

The class is planted: 30 submissions of one chapter, made from its student version
and its worked solutions, in seven kinds that cycle (all correct, all stubs, the first
exercise only, wrong answers, answers that raise, an endless loop, a malformed file).
Every submission's grade is compared with what its kind must get, so the figures
come from a grading run that was also right.

Usage: python benchmarks/grading.py [--chapter 05] [--students 30] [--jobs 2]
           [--cell-timeout 20] [--full] [--out benchmarks/grading.md]
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import nbformat

from attnbook.course.grading import grade_folder
from attnbook.course.markers import BEGIN_SOLUTION, find_exercises
from attnbook.course.reports import write_grades
from attnbook.course.student import make_student_version, write_student_versions

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["correct", "stubs", "first only", "wrong", "raises", "endless loop", "malformed"]
STUB = "raise NotImplementedError()"


def _replace_stub(cell_source: str, line: str) -> str:
    return "\n".join(l.replace(STUB, line) if l.strip() == STUB else l for l in cell_source.split("\n"))


def plant(source_path: Path, folder: Path, students: int) -> dict[str, list[str]]:
    """Write ``students`` submissions into ``folder``; return the statuses each must get."""
    source = nbformat.read(source_path, as_version=4)
    student = make_student_version(source, source_path.stem)
    labels = [e.label for e in find_exercises(source)]
    solutions = {c.id: c.source for c in source.cells if c.cell_type == "code" and BEGIN_SOLUTION in c.source}
    expected = {}
    for number in range(students):
        kind = KINDS[number % len(KINDS)]
        name = f"student{number + 1:02d}"
        nb = copy.deepcopy(student)
        if kind == "malformed":
            (folder / f"{name}.ipynb").write_text('{"cells": [ truncated', encoding="utf-8")
            expected[name] = []
            continue
        stub_cells = [c for c in nb.cells if c.id in solutions]
        for i, cell in enumerate(stub_cells):
            if kind == "correct" or (kind == "first only" and i == 0):
                cell.source = solutions[cell.id]
            elif kind == "wrong":
                cell.source = _replace_stub(cell.source, "return None")
            elif kind == "raises":
                cell.source = _replace_stub(cell.source, 'raise ValueError("a bug in my answer")')
            elif kind == "endless loop" and i == 0:
                cell.source = _replace_stub(cell.source, "while True: pass")
        nbformat.write(nb, folder / f"{name}.ipynb")
        want = {"correct": "pass", "stubs": "not done", "wrong": "fail", "raises": "fail"}.get(kind)
        if kind == "first only":
            expected[name] = ["pass"] + ["not done"] * (len(labels) - 1)
        elif kind == "endless loop":
            expected[name] = ["timeout"] + ["not done"] * (len(labels) - 1)
        else:
            expected[name] = [want] * len(labels)
    return expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapter", default="05", help="chapter number or file stem (default 05)")
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cell-timeout", type=float, default=20)
    parser.add_argument("--full", action="store_true", help="run every cell, not only the exercises")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "grading.md")
    args = parser.parse_args()
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    matches = [p for p in notebooks if p.stem.startswith(args.chapter)]
    if len(matches) != 1:
        parser.error(f"expected --chapter to name one chapter, got {args.chapter!r} ({len(matches)} matches)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        write_student_versions(notebooks, tmp / "student", zip_name="student.zip")
        build_seconds = time.perf_counter() - started
        (tmp / "class").mkdir()
        expected = plant(matches[0], tmp / "class", args.students)
        started = time.perf_counter()
        graded = grade_folder(tmp / "class", ROOT / "notebooks", jobs=args.jobs, full=args.full,
                              cell_timeout=args.cell_timeout, notebook_timeout=600)
        grade_seconds = time.perf_counter() - started
        write_grades(graded, tmp / "grades")
    wrong = []
    for s in graded:
        got = [e.status for e in s.exercises]
        if got != expected[s.student]:
            wrong.append(f"{s.student}: expected {expected[s.student]}, got {got}")
    import torch

    lines = [
        "# Course tooling timings",
        "",
        "Written by `python benchmarks/grading.py`.",
        "",
        f"{date.today().isoformat()}, Python {platform.python_version()}, PyTorch {torch.__version__}, "
        f"{__import__('os').cpu_count()} CPU cores.",
        "",
        "| what | figure |",
        "|---|---|",
        f"| student versions of all {len(notebooks)} chapters (+ zip) | {build_seconds:.2f} s |",
        f"| grading {args.students} planted submissions of `{matches[0].name}` "
        f"({'every cell' if args.full else 'set-up + exercises'}, {args.jobs} at a time, "
        f"cell limit {args.cell_timeout:g} s) | {grade_seconds:.1f} s "
        f"({grade_seconds / args.students:.1f} s per submission) |",
        f"| grades that matched the planted kinds | {args.students - len(wrong)} of {args.students} |",
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    for line in wrong:
        print("MISMATCH", line, file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
