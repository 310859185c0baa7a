"""Kept so that older imports work: the shared plots are :mod:`attnbook.viz.plotting` (same objects)."""

from attnbook.viz.plotting import *  # noqa: F401,F403
from attnbook.viz.plotting import __all__  # noqa: F401
