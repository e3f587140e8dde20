"""Training: measurement schedules, optimizer recipes and the trainer loop."""

from learnscope.train.schedules import (
    At,
    AtEpochs,
    End,
    Every,
    EveryEpoch,
    Schedule,
    Union,
    Window,
    at,
    at_epochs,
    end,
    every,
    every_epoch,
    parse,
)

__all__ = [
    "At",
    "AtEpochs",
    "End",
    "Every",
    "EveryEpoch",
    "Schedule",
    "Union",
    "Window",
    "at",
    "at_epochs",
    "end",
    "every",
    "every_epoch",
    "parse",
]
