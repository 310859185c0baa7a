"""Automatic checks for the chapters' exercises, one module per chapter.

Each check calls the learner's function on several cases and reports the first
that fails (its arguments, what was expected and what was got), or a pass line.
A function that still raises ``NotImplementedError`` is reported as not done.
"""

from attnbook.exercises import ch01, ch02, ch03, ch04, ch05, ch06, ch07

__all__ = ["ch01", "ch02", "ch03", "ch04", "ch05", "ch06", "ch07"]
