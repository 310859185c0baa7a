"""``attnbook.exercises`` is :mod:`attnbook.course.exercises` (the exercise checks).

Kept so that notebooks can write ``from attnbook import exercises`` and call
``exercises.ch05.check_split_heads(split)``: this package replaces itself with the
one implementation, and ``attnbook.exercises.chNN`` names the same module objects
as ``attnbook.course.exercises.chNN`` (no second copy of any check).
"""

import sys

from attnbook.course import exercises as _exercises

sys.modules[__name__] = _exercises
for _name in _exercises.__all__:
    sys.modules[f"{__name__}.{_name}"] = getattr(_exercises, _name)
del _name
