"""Kept so that older imports work: the BertViz bridge is :mod:`attnbook.viz.bertviz` (same objects)."""

from attnbook.viz.bertviz import *  # noqa: F401,F403
from attnbook.viz.bertviz import __all__  # noqa: F401
