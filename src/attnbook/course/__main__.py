"""``python -m attnbook.course student|grade|new-chapter ...`` (see :mod:`attnbook.course.cli`)."""

import sys

from attnbook.course.cli import main

sys.exit(main())
