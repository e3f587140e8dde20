"""Kept for old imports: this module is now :mod:`learnscope.viz.runs`."""

from learnscope.viz.runs import *  # noqa: F403
from learnscope.viz.runs import __all__  # noqa: F401
