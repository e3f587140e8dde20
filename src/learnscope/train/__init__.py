"""Training helpers: measurement schedules."""

from learnscope.train.schedules import At, Every, Schedule, Union, at, every

__all__ = ["At", "Every", "Schedule", "Union", "at", "every"]
