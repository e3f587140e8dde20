"""What every probe is: a narrow plug-in that measures a model and returns values.

A probe knows nothing of storage or plotting. Its lifecycle, which Scope, the trainer, the
Lightning callback and sweeps rely on (every method has a default, so they never test a probe
for one):

- ``__init__(...)`` stores its parameters under their own names (scikit-learn's way);
  `get_params()` reads them back and `config()`, stored with the run and hashed into its
  fingerprint, is derived from them: data arguments (`data_parameters`) are described by
  `describe_data()`, never dumped;
- one measurement, ``measure(model, step) -> ProbeResult``, is by default one pass of the
  measurement engine (`learnscope.engine.run_pass`): `taps(model)` says what the probe needs
  from the pass (data, batch size, BatchNorm mode, module outputs...), `new_state()` gives the
  accumulators, `update(state, batch)` fills them after each batch, and `finish(state, step)`
  turns the state, reduced across ranks, into the result: metric rows (layer, layer index,
  measure name, value), optional artifacts (objects with `.save(path)`, such as PatternCounts)
  and optional weight snapshots (1-D arrays), all of which the Scope hands to the store. A
  probe that needs no pass, or several, overrides `measure` instead;
- what it carries between measurements (references such as the first and the previous
  state) is `state_dict()` / `load_state_dict(state)` (the trainer's checkpoint holds it);
  `reset()` forgets it (a run that starts over); `state_from_results(first, last)` rebuilds it
  from the results the store kept of the first and the last measurement (given by the Scope
  when a run resumes without a checkpoint: a probe never reads the store; the model's weights
  at those steps come with them when the run kept them);
- `final_reference(model)` / `since_final_rows(model, final, step)`: comparison with the final
  network (default: none).

See docs/architecture.md, "Adding a probe", for a complete example.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from learnscope.engine.passes import Batch, PassState, Taps, run_pass

MetricRow = tuple[str, int, str, float]


@dataclass
class ProbeResult:
    """One measurement of one probe: metric rows, artifacts keyed by layer name, and snapshots.

    `snapshots` maps trajectory names to 1-D arrays of parameter values, stored as
    `snapshot_dtype` ("float32" or "float16"); a Scope with a store does not keep them in
    memory after writing them. `weights` is only set in what the store kept of a measurement
    (given to `state_from_results`): the model's state dict at that step, when the run kept it
    (the trainer's `save_weights=True`); a probe's own results leave it None.
    """

    rows: list[MetricRow] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, Any] = field(default_factory=dict)
    snapshot_dtype: str = "float32"
    weights: dict[str, Any] | None = None

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


def _plain(value: Any) -> Any:
    """A parameter value as plain JSON-able data (modules and other objects by their str)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


class Probe:
    """Base class of probes: parameters, a config, one measurement, and carried state."""

    name: str = "probe"
    #: `__init__` parameters holding data: described by `describe_data()` in the config,
    #: never dumped into it.
    data_parameters: ClassVar[tuple[str, ...]] = ("data",)
    #: `__init__` parameters left out of the config (they do not change what is measured).
    unrecorded_parameters: ClassVar[tuple[str, ...]] = ()

    # ---------------------------------------------------------------- parameters

    @classmethod
    def parameter_names(cls) -> list[str]:
        """The names of `__init__`'s parameters, in order (scikit-learn's `_get_param_names`)."""
        if cls.__init__ is object.__init__:
            return []
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """{parameter: value} as stored by `__init__` (an attribute of the same name)."""
        params = {}
        for key in self.parameter_names():
            try:
                params[key] = vars(self)[key]
            except KeyError:
                raise TypeError(
                    f"{type(self).__name__}.__init__ takes {key!r} but does not store it as "
                    f"self.{key}; store every parameter under its own name"
                ) from None
        return params

    def config(self) -> dict[str, Any]:
        """The probe's settings, stored with the run: its type, name and parameters (data
        described, not dumped)."""
        config: dict[str, Any] = {"type": type(self).__name__, "name": self.name}
        skipped = {"name", *self.data_parameters, *self.unrecorded_parameters}
        for key, value in self.get_params().items():
            if key not in skipped:
                config[key] = self.config_value(key, value)
        config.update(self.describe_data())
        return config

    def config_value(self, key: str, value: Any) -> Any:
        """How parameter `key` appears in the config (default: as plain JSON-able data)."""
        return _plain(value)

    def describe_data(self) -> dict[str, Any]:
        """Config entries describing the data parameters (default: none)."""
        return {}

    # ---------------------------------------------------------------- one measurement

    def taps(self, model: nn.Module) -> Taps:
        """What this probe needs from one measurement pass of `model`.

        A probe defines either this (with `new_state`, `update` and `finish`) or `measure`;
        one that defines neither raises TypeError naming what to define."""
        raise TypeError(
            f"{type(self).__name__} defines neither taps() (with new_state, update and finish) "
            "nor measure(); see docs/architecture.md, 'Adding a probe'"
        )

    def new_state(self) -> PassState:
        """Empty accumulators for one pass (default: none)."""
        return PassState()

    def update(self, state: PassState, batch: Batch) -> None:
        """Fold one batch of the pass into `state` (default: nothing)."""

    def finish(self, state: PassState, step: int) -> ProbeResult:
        """The result of one pass, from its state reduced across ranks."""
        raise TypeError(f"{type(self).__name__} defines taps() but not finish(); a probe that "
                        "measures through the pass turns its reduced state into rows in finish()")

    def measure(self, model: nn.Module, step: int) -> ProbeResult:
        """Measure `model` at training step `step` without changing it (default: one pass)."""
        state = run_pass(model, self.taps(model), self.new_state(), self.update,
                         description=f"{self.name} at step {step}")
        return self.finish(state, step)

    # ---------------------------------------------------------------- carried between passes

    def state_dict(self) -> dict[str, Any]:
        """What the probe carries from one measurement to the next (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (default: nothing to restore)."""

    def reset(self) -> None:
        """Forget what was carried: the next measurement is a run's first (default: nothing)."""

    def state_from_results(self, first: ProbeResult, last: ProbeResult) -> dict[str, Any] | None:
        """The `state_dict` after the stored measurements whose first and last results (as the
        store kept them: rows, artifacts loaded with `load_artifact`, snapshots) are given;
        None (the default) when nothing needs restoring."""
        return None

    def load_artifact(self, path: Path) -> Any:
        """Read one artifact this probe's results saved (default: this probe saves none)."""
        raise TypeError(f"{type(self).__name__} saves no artifacts, so it cannot load one; a "
                        "probe whose results carry artifacts defines load_artifact(path)")

    # ---------------------------------------------------------------- the final network

    def final_reference(self, model: nn.Module) -> Any | None:
        """What measured states are compared with, from the final network; None (the default)
        when this probe makes no comparison with the final network."""
        return None

    def since_final_rows(self, model: nn.Module, final: Any, step: int) -> list[MetricRow]:
        """Rows comparing `model` (the state at `step`) with `final_reference`'s result."""
        return []
