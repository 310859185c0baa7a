"""The course tooling's former single module, kept as a thin alias of :mod:`attnbook.course`.

``python -m attnbook.assignments student|grade|new-chapter ...`` is
``python -m attnbook.course ...``; the names below are re-exported from the modules
that implement them (markers, student versions, grading, reports).
"""

import sys

from attnbook.course.cli import main as _main
from attnbook.course.grading import ExerciseResult, Limits, Submission, grade_folder, grade_submission
from attnbook.course.markers import (BEGIN_HIDDEN_TESTS, BEGIN_SOLUTION, END_HIDDEN_TESTS, END_SOLUTION, Exercise,
                                     clear_solutions, find_exercises, remove_hidden_tests)
from attnbook.course.reports import write_grades
from attnbook.course.student import make_student_version, write_student_versions

__all__ = ["BEGIN_SOLUTION", "END_SOLUTION", "BEGIN_HIDDEN_TESTS", "END_HIDDEN_TESTS", "Exercise",
           "find_exercises", "clear_solutions", "remove_hidden_tests", "make_student_version",
           "write_student_versions", "ExerciseResult", "Submission", "Limits", "grade_submission", "grade_folder",
           "write_grades", "main"]


def main(argv=None) -> int:
    """``python -m attnbook.assignments ...``: the same as ``python -m attnbook.course ...``."""
    return _main(argv, prog="python -m attnbook.assignments")


if __name__ == "__main__":
    sys.exit(main())
