"""What every probe is: a narrow plug-in that measures a model and returns values.

A probe knows nothing of storage or plotting. `measure(model, step)` returns a ProbeResult: metric
rows (layer, layer index, measure name, value), optional artifacts (objects with `.save(path)`,
such as PatternCounts) and optional weight snapshots (1-D arrays, appended to the run's snapshot
files), all of which the Scope hands to the store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from torch import nn

MetricRow = tuple[str, int, str, float]


@dataclass
class ProbeResult:
    """One measurement of one probe: metric rows, artifacts keyed by layer name, and snapshots.

    `snapshots` maps trajectory names to 1-D arrays of parameter values, stored as
    `snapshot_dtype` ("float32" or "float16"); a Scope with a store does not keep them in
    memory after writing them.
    """

    rows: list[MetricRow] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, Any] = field(default_factory=dict)
    snapshot_dtype: str = "float32"

    def value(self, layer: str, measure: str) -> float:
        """The value of one measure of one layer (KeyError listing what exists if absent)."""
        for row_layer, _, row_measure, value in self.rows:
            if row_layer == layer and row_measure == measure:
                return value
        layers = sorted({r[0] for r in self.rows})
        measures = sorted({r[2] for r in self.rows})
        raise KeyError(
            f"no value for layer {layer!r}, measure {measure!r}; layers: {layers}, "
            f"measures: {measures}"
        )


class Probe(ABC):
    """Base class of probes: a name, a config, and `measure(model, step)`."""

    name: str = "probe"

    @abstractmethod
    def measure(self, model: nn.Module, step: int) -> ProbeResult:
        """Measure `model` at training step `step` without changing it."""

    def config(self) -> dict[str, Any]:
        """The probe's settings, stored with the run."""
        return {"type": type(self).__name__, "name": self.name}
