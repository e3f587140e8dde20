"""learnscope: watch what happens inside a deep network while it trains.

    import learnscope as ls
    scope = ls.Scope(model, probes=[ls.ActivationPatterns(train_x)], schedule=ls.every(100))

The names below are imported when first used (PEP 562), so ``import learnscope`` (and
``import learnscope.store``, which the dashboard uses) does not import torch: ``ls.Scope``
imports it, ``ls.store`` does not. Every submodule is reachable as an attribute too
(``ls.separation``, ``ls.distributed``).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from learnscope import diagnostics
from learnscope._version import __version__

diagnostics.enable_from_env()  # first: LEARNSCOPE_LOG applies to everything imported later

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from learnscope import data, models, patterns, store, train, trajectory
    from learnscope.patterns import ActivationPatterns
    from learnscope.probe import Probe, ProbeResult
    from learnscope.schedules import at, at_epochs, end, every, every_epoch
    from learnscope.scope import Scope
    from learnscope.separation import Separation
    from learnscope.trajectory import Weights

#: Each lazily imported name and the module it comes from (a submodule: itself).
_LAZY = {
    "ActivationPatterns": "learnscope.patterns",
    "Probe": "learnscope.probe",
    "ProbeResult": "learnscope.probe",
    "Scope": "learnscope.scope",
    "Separation": "learnscope.separation",
    "Weights": "learnscope.trajectory",
    "at": "learnscope.schedules",
    "at_epochs": "learnscope.schedules",
    "end": "learnscope.schedules",
    "every": "learnscope.schedules",
    "every_epoch": "learnscope.schedules",
    "data": "learnscope.data",
    "models": "learnscope.models",
    "patterns": "learnscope.patterns",
    "store": "learnscope.store",
    "train": "learnscope.train",
    "trajectory": "learnscope.trajectory",
}

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


def __getattr__(name: str) -> Any:
    """Import ``name`` (one of ``__all__``, or any submodule) on first use and keep it."""
    module_name = _LAZY.get(name)
    if module_name is None:
        if name.startswith("_"):
            raise AttributeError(f"module 'learnscope' has no attribute {name!r}")
        module_name = f"learnscope.{name}"
        if importlib.util.find_spec(module_name) is None:
            raise AttributeError(f"module 'learnscope' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"learnscope.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
