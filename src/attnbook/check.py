"""``attnbook.check`` is :mod:`attnbook.course.check` (the chapters' result checks).

Kept so that notebooks can write ``from attnbook import check``: this module
replaces itself with the one implementation, so both names are the same module
object (patching one patches the other; there is no second copy).
"""

import sys

from attnbook.course import check as _check

sys.modules[__name__] = _check
