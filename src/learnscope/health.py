"""Failures in plain sight: chance-level runs and saturated layers, decided in one place.

Every view of a run store (``learnscope runs``, ``status``, ``show``, the dashboard and the
figures) asks this module, so they all agree.

Chance level
    A *finished* run whose final test accuracy (the ``test_accuracy`` logged at its greatest
    step, layer ``model``) is at most ``1 / classes + CHANCE_MARGIN`` (2 percentage points) is
    at chance level: it learned nothing, and its measures must not be averaged in with runs that
    did. :func:`is_chance_level` is the rule; :func:`assess_runs` applies it to the runs of a
    store. The number of classes comes from the run's configuration: ``num_classes`` or
    ``classes`` (a count or the list of kept classes) in it or in its ``user``,
    ``data_options`` or ``model_options`` parts, else the dataset's known class count
    (:data:`DATASET_CLASSES`, also the equi-separation keys ``cm``, ``cfm``, ``cc`` and the
    trajectory tasks such as ``digits-5-9``). A run without a test accuracy or a known class
    count is never flagged.

Saturated layers
    A layer is saturated at a step when nearly every evaluation has its own pattern:
    ``distinct / E > SATURATION`` (0.95). Its entropy then sits at its cap and its similarities
    say little; the figures mark such cells (:func:`is_saturated`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from learnscope.store import Store

__all__ = [
    "CHANCE_MARGIN",
    "DATASET_CLASSES",
    "SATURATION",
    "RunHealth",
    "assess_run",
    "assess_runs",
    "classes_of",
    "is_chance_level",
    "is_saturated",
    "short_error",
    "status_label",
]

#: A run is at chance level when its final test accuracy is <= 1 / classes + this.
CHANCE_MARGIN = 0.02
#: A layer is saturated at a step when distinct / E is above this.
SATURATION = 0.95
#: The score whose final value decides chance level.
SCORE = "test_accuracy"
#: Classes of the registry's datasets (synthetic: its default ``num_classes``).
DATASET_CLASSES = {
    "digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10, "mnist1d": 10,
    "synthetic": 10, "cm": 10, "cfm": 10, "cc": 10,
}  # fmt: skip
_CLASS_RANGE = re.compile(r"^(?P<dataset>[a-z0-9]+(?:-mnist)?)-(?P<low>\d+)-(?P<high>\d+)$")


def is_chance_level(accuracy: float | None, classes: int | None) -> bool:
    """Whether a final test ``accuracy`` is at (or below) chance for ``classes`` classes."""
    if accuracy is None or classes is None or classes < 2 or not math.isfinite(accuracy):
        return False
    return accuracy <= 1.0 / classes + CHANCE_MARGIN


def is_saturated(distinct_frac: Any) -> Any:
    """Whether distinct / E is above :data:`SATURATION` (works element-wise on arrays; NaN
    is not saturated)."""
    return distinct_frac > SATURATION


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 1:
        return value
    if isinstance(value, (list, tuple)) and value:
        return len(value)
    return None


def _dataset_classes(name: Any) -> int | None:
    if not isinstance(name, str):
        return None
    key = name.lower().replace("_", "-")
    if key in DATASET_CLASSES:
        return DATASET_CLASSES[key]
    match = _CLASS_RANGE.match(key)  # trajectory tasks: digits-5-9 keeps classes 5..9
    if match and match["dataset"] in DATASET_CLASSES:
        low, high = int(match["low"]), int(match["high"])
        return high - low + 1 if high >= low else None
    return None


def classes_of(config: Mapping[str, Any] | None) -> int | None:
    """The number of classes a run was trained on, from its stored configuration (see the
    module docstring); None when it cannot be told."""
    if not isinstance(config, Mapping):
        return None
    parts: list[Mapping[str, Any]] = []
    queue: list[Any] = [config]
    while queue:  # the config, its user part, settings, data and model options
        part = queue.pop(0)
        if not isinstance(part, Mapping):
            continue
        parts.append(part)
        queue += [part.get(key) for key in ("user", "settings", "data_options",
                                            "model_options")]
    for part in parts:
        for key in ("num_classes", "classes"):
            count = _count(part.get(key))
            if count is not None:
                return count
    for part in parts:
        for key in ("dataset", "train_on"):
            count = _dataset_classes(part.get(key))
            if count is not None:
                return count
    return None


@dataclass(frozen=True)
class RunHealth:
    """What the views say about one run besides its status."""

    status: str
    test_accuracy: float | None  # the final (latest) test accuracy, None when none was logged
    classes: int | None
    error: str | None

    @property
    def chance(self) -> float | None:
        """The accuracy of guessing, 1 / classes."""
        return None if not self.classes else 1.0 / self.classes

    @property
    def chance_level(self) -> bool:
        """A finished run whose final test accuracy is at chance level."""
        return self.status == "finished" and is_chance_level(self.test_accuracy, self.classes)

    @property
    def label(self) -> str:
        """The status as every view shows it, e.g. ``finished (chance-level)``."""
        return status_label(self.status, self.chance_level)

    @property
    def note(self) -> str:
        """One line on what is wrong ('' when nothing is)."""
        if self.chance_level:
            return (f"final test accuracy {self.test_accuracy:.3f} is at chance level "
                    f"(1/{self.classes} = {self.chance:.3f}, margin {CHANCE_MARGIN:g})")
        return self.error or ""


def status_label(status: str, chance_level: bool) -> str:
    """``finished (chance-level)`` for a chance-level run, else the status itself."""
    return f"{status} (chance-level)" if chance_level else status


def short_error(error: Any, limit: int = 80) -> str:
    """The last line of a stored error (the exception itself), cut to ``limit`` characters."""
    if not isinstance(error, str) or not error.strip():
        return ""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def assess_runs(store: Store, runs: pd.DataFrame | None = None) -> dict[str, RunHealth]:
    """:class:`RunHealth` of every run of ``runs`` (rows of ``store.runs()``; default: all).

    The final test accuracies of all runs come from one indexed query
    (``Store.final_values``), so views that poll every few seconds can afford it; only
    finished runs can be at chance level.
    """
    import json

    frame = store.runs() if runs is None else runs
    finals = store.final_values(SCORE) if (frame["status"] == "finished").any() else {}
    result = {}
    for record in frame.to_dict("records"):
        status = str(record["status"])
        config = record.get("config")
        if isinstance(config, str):
            try:
                config = json.loads(config) if config else {}
            except ValueError:
                config = {}
        accuracy = finals.get(str(record["id"])) if status == "finished" else None
        if accuracy is not None and math.isnan(accuracy):
            accuracy = None
        error = record.get("error")
        result[str(record["id"])] = RunHealth(
            status, accuracy, classes_of(config),
            error if isinstance(error, str) and error else None)
    return result


def assess_run(store: Store, record: Mapping[str, Any]) -> RunHealth:
    """:class:`RunHealth` of one run (a ``store.run(...)`` dict or a ``store.runs()`` row)."""
    import pandas as pd

    row = dict(record)
    return assess_runs(store, pd.DataFrame([row]))[str(row["id"])]
