"""Training: measurement schedules, optimizer recipes and the trainer loop.

`ls.train.recipes.get(name)` and `ls.train.trainer.train(...)` work after `import learnscope`.
"""

from learnscope.schedules import (
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
from learnscope.train import recipes, trainer  # noqa: F401 - the documented ls.train.<module>

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
    "recipes",
    "trainer",
]
