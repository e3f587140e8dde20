"""learnscope: watch what happens inside a deep network while it trains.

    import learnscope as ls
    scope = ls.Scope(model, probes=[ls.ActivationPatterns(train_x)], schedule=ls.every(100))
"""

__version__ = "0.1.0"

from learnscope import diagnostics  # noqa: E402  (first: LEARNSCOPE_LOG applies to all)

diagnostics.enable_from_env()

from learnscope import data, models, patterns, store, train, trajectory  # noqa: E402
from learnscope.patterns import ActivationPatterns  # noqa: E402
from learnscope.probe import Probe, ProbeResult  # noqa: E402
from learnscope.scope import Scope  # noqa: E402
from learnscope.separation import Separation  # noqa: E402
from learnscope.train.schedules import at, at_epochs, end, every, every_epoch  # noqa: E402
from learnscope.trajectory import Weights  # noqa: E402

__all__ = [
    "ActivationPatterns",
    "Probe",
    "ProbeResult",
    "Scope",
    "Separation",
    "Weights",
    "__version__",
    "data",
    "models",
    "train",
    "at",
    "at_epochs",
    "end",
    "every",
    "every_epoch",
    "patterns",
    "store",
    "trajectory",
]
