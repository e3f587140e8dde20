"""Run specifications: `RunSpec` (everything one run needs) and the probes they name.

A RunSpec is self-contained and serialisable: model, data, recipe, seed, length, schedule and
probe settings. `PROBE_REGISTRY` maps `RunSpec.probe` to a factory (measurement data,
**probe_options) -> Probe; `register_probe` adds one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from learnscope.patterns import ActivationPatterns
from learnscope.registry import Registry
from learnscope.separation import Separation
from learnscope.trajectory import Weights


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs; `name` and the fingerprint of `run_identity(spec)` identify
    it in the store (reuse, resume)."""

    preset: str
    name: str
    model: str
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    data_options: dict[str, Any] = field(default_factory=dict)
    recipe: str = "multistep"
    recipe_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    max_steps: int | None = None
    schedule: str = "every 1"
    probe_options: dict[str, Any] = field(default_factory=dict)
    since_final: bool = False
    device: str = "cpu"
    probe: str = "patterns"

    def config(self) -> dict[str, Any]:
        """JSON-friendly settings (stored with the run)."""
        return json.loads(json.dumps(asdict(self), default=list))


#: Probes by name, for RunSpec.probe: factories (measurement data, **probe_options) -> Probe.
#: The measurement data are the run's training samples, un-augmented (DataSplits.measure).
PROBE_REGISTRY: Registry[Callable[..., Any]] = Registry("probe")
register_probe = PROBE_REGISTRY.register
PROBE_REGISTRY.add("patterns", ActivationPatterns)
PROBE_REGISTRY.add("separation", Separation)


@register_probe("weights")
def _weights(data: Any, **options: Any) -> Weights:
    return Weights(train=data, **options)  # train / test scores of the snapshots: data first


#: The built-in probe names (PROBE_REGISTRY is the live list).
PROBES = PROBE_REGISTRY.names()


def make_probe(spec: RunSpec, data: Any) -> Any:
    """The probe `spec.probe` over the measurement set (training samples, un-augmented)."""
    return PROBE_REGISTRY[spec.probe](data, **spec.probe_options)
