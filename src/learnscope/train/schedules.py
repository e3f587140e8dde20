"""Kept for old imports: the measurement schedules live in `learnscope.schedules`."""

from learnscope.schedules import *  # noqa: F403
