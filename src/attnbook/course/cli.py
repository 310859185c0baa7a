"""``python -m attnbook.course student|grade|new-chapter ...``: the course tooling's command line.

Usage::

    python -m attnbook.course student notebooks/*.ipynb --out student/ [--zip student.zip]
    python -m attnbook.course grade submissions/ --source notebooks/ --out grades/
    python -m attnbook.course new-chapter 11 "Attention on graphs"

``python -m attnbook.assignments`` is the same command line (the name it had before).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Course tooling: student versions, grading, "
                                     "new chapters (see book/instructors.md and CONTRIBUTING.md).")
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
    grade.add_argument("--memory-gb", type=float, default=4.0,
                       help="address-space limit of each kernel in GiB (default 4; 0: none)")
    grade.add_argument("--network", action="store_true", help="let submissions use the network (default: not)")
    grade.add_argument("--gpu", action="store_true", help="let submissions see the GPUs (default: not)")
    new = commands.add_parser("new-chapter", help="write the skeleton of a new chapter")
    new.add_argument("number", type=int, help="the chapter's number, e.g. 11")
    new.add_argument("title", help='the chapter\'s title, e.g. "Attention on graphs"')
    new.add_argument("--slug", default=None, help="file name after NN_ (default: from the title)")
    new.add_argument("--root", type=Path, default=Path("."), help="the repository (default: here)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m attnbook.course") -> int:
    args = _parser(prog).parse_args(argv)
    started = time.perf_counter()
    if args.command == "student":
        from attnbook.course.student import write_student_versions

        for path in write_student_versions(args.notebooks, args.out, zip_name=args.zip):
            print(f"wrote {path}")
        print(f"{len(args.notebooks)} student notebooks in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "grade":
        from attnbook.course.grading import Limits, grade_folder
        from attnbook.course.reports import write_grades
        from attnbook.course.sandbox import available

        sandbox = available()
        print(f"sandbox: writes outside each submission's folder {sandbox['writes_outside_folder']}; "
              f"network {'allowed (--network)' if args.network else sandbox['network_namespace']}")
        limits = Limits(memory_gb=args.memory_gb, network=args.network, gpu=args.gpu)
        submissions = grade_folder(args.submissions, args.source, jobs=args.jobs, full=args.full,
                                   cell_timeout=args.cell_timeout, notebook_timeout=args.timeout, limits=limits)
        csv_path, json_path = write_grades(submissions, args.out, sandbox=sandbox)
        for s in submissions:
            detail = ", ".join(f"{e.label} {e.status}" for e in s.exercises) or s.message
            print(f"{s.student:>16}  {s.chapter or '?':<28} {s.points:g}/{len(s.exercises)}  [{s.status}]  {detail}")
        print(f"graded {len(submissions)} notebooks in {time.perf_counter() - started:.1f} s; "
              f"wrote {csv_path} and {json_path}")
        return 0
    from attnbook.course.scaffold import new_chapter

    for path in new_chapter(args.root, args.number, args.title, slug=args.slug):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
