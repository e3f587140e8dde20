"""The Weights probe: snapshots of a network's flattened parameters, with a score per snapshot.

What a snapshot holds (one *trajectory* per vector, named as below):

- default: every parameter of the model, flattened in ``model.parameters()`` order ("all");
- ``layer="fc1"``: the parameters of one module (weight and bias, recursively) or one parameter,
  named by that module ("fc1");
- ``first_layers=N``: the first N *weight layers* (modules with a weight matrix or kernel, i.e. a
  parameter named ``weight`` with two or more dimensions: Linear, Conv, ...), each as its own
  trajectory named by its module;
- ``average_hidden=True``: the element-wise mean of the hidden weight layers (every weight layer
  but the first and the last, weight and bias flattened), one trajectory "hidden_mean". The
  hidden layers must have equal shapes (e.g. an MLP of constant width); the seed project's
  ``--average_hidden_layers``.

Values per measurement (metric rows, probe ``weights``): per trajectory, its Euclidean ``norm``,
``distance_from_init`` (to its first snapshot in this run) and ``distance_from_last`` (to the
previous snapshot); per model (layer "model"), ``train_accuracy``, ``train_loss``,
``test_accuracy`` and ``test_loss`` on the ``train`` / ``test`` data given (eval mode; the
whole set every time). The snapshots themselves go to the store's snapshot files (float32 or
float16), never into memory beyond the current step: the probe keeps only the first and the
previous vector of each trajectory, for the distances.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from learnscope.engine.batches import MeasurementData, unwrap_model
from learnscope.engine.evaluation import evaluate
from learnscope.probe import Probe, ProbeResult
from learnscope.store.snapshots import DTYPES, check_dtype

ALL = "all"
HIDDEN_MEAN = "hidden_mean"


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own a weight matrix or kernel, in registration order."""
    names = []
    for name, module in model.named_modules():
        weight = module._parameters.get("weight") if hasattr(module, "_parameters") else None
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
            names.append(name)
    return names


def _flat(parameters: list[torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        vector = torch.cat([p.detach().reshape(-1).to("cpu", torch.float32) for p in parameters])
    return vector.numpy()


class Weights(Probe):
    """Snapshots of parameters at every measured step, plus train / test scores.

    Args:
        layer: track only this module (or parameter) name.
        first_layers: track the first N weight layers, each as its own trajectory.
        average_hidden: track the element-wise mean of the hidden weight layers.
        train, test: labelled data (Dataset, (inputs, labels), ...) scored at every snapshot
            (accuracy and cross-entropy loss, eval mode); either may be None.
        dtype: storage type of the snapshots, "float32" or "float16".
        batch_size: batch size of the scoring passes.
        name: probe name (unique within a Scope).

    At most one of `layer`, `first_layers`, `average_hidden` may be given; none means all
    parameters.
    """

    def __init__(
        self,
        *,
        layer: str | None = None,
        first_layers: int | None = None,
        average_hidden: bool = False,
        train: MeasurementData | None = None,
        test: MeasurementData | None = None,
        dtype: str = "float32",
        batch_size: int = 512,
        name: str = "weights",
    ) -> None:
        chosen = [o for o, v in (("layer", layer), ("first_layers", first_layers),
                                 ("average_hidden", average_hidden or None)) if v is not None]
        if len(chosen) > 1:
            raise ValueError(
                f"Weights tracks one thing at a time; got {' and '.join(chosen)}. Use one probe "
                "per choice, with distinct names (Weights(..., name='weights_fc1'))"
            )
        if layer is not None and (not isinstance(layer, str) or not layer):
            raise ValueError(f"layer must be a module or parameter name, got {layer!r}")
        if first_layers is not None and (
            isinstance(first_layers, bool) or not isinstance(first_layers, int)
            or first_layers < 1
        ):
            raise ValueError(f"first_layers must be an int >= 1, got {first_layers!r}")
        if not isinstance(average_hidden, bool):
            raise ValueError(f"average_hidden must be True or False, got {average_hidden!r}")
        check_dtype(dtype)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.layer = layer
        self.first_layers = first_layers
        self.average_hidden = average_hidden
        self.train = train
        self.test = test
        self.dtype = dtype
        self.batch_size = batch_size
        self.name = name
        self._first: dict[str, np.ndarray] = {}
        self._last: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------- what to track

    def tracked(self) -> str:
        """A short description of what this probe tracks (stored in the run config)."""
        if self.layer is not None:
            return f"layer {self.layer}"
        if self.first_layers is not None:
            return f"first {self.first_layers} weight layers"
        if self.average_hidden:
            return "hidden weight layers averaged"
        return "all parameters"

    def vectors(self, model: nn.Module) -> dict[str, np.ndarray]:
        """The current trajectories' vectors (float32), keyed by trajectory name (those of
        the module inside torch.compile / DDP / DataParallel, under its own names)."""
        model = unwrap_model(model)
        if self.layer is not None:
            return {self.layer: _flat(self._layer_parameters(model, self.layer))}
        if self.first_layers is not None:
            layers = weight_layers(model)
            if len(layers) < self.first_layers:
                raise ValueError(
                    f"first_layers={self.first_layers} but {type(model).__name__} has "
                    f"{len(layers)} weight layers: {layers}"
                )
            return {name: _flat(list(model.get_submodule(name).parameters()))
                    for name in layers[:self.first_layers]}
        if self.average_hidden:
            return {HIDDEN_MEAN: self._hidden_mean(model)}
        parameters = list(model.parameters())
        if not parameters:
            raise ValueError(f"{type(model).__name__} has no parameters to snapshot")
        return {ALL: _flat(parameters)}

    @staticmethod
    def _layer_parameters(model: nn.Module, layer: str) -> list[torch.Tensor]:
        named = dict(model.named_parameters())
        if layer in named:
            return [named[layer]]
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            module = None
        parameters = list(module.parameters()) if module is not None else []
        if not parameters:
            raise ValueError(
                f"{type(model).__name__} has no module or parameter {layer!r} with parameters; "
                f"its weight layers: {weight_layers(model)}"
            )
        return parameters

    @staticmethod
    def _hidden_mean(model: nn.Module) -> np.ndarray:
        layers = weight_layers(model)
        hidden = layers[1:-1]
        if not hidden:
            raise ValueError(
                f"average_hidden needs at least one hidden weight layer between the first and "
                f"the last; {type(model).__name__} has weight layers {layers}"
            )
        vectors = [_flat(list(model.get_submodule(name).parameters())) for name in hidden]
        sizes = {name: v.size for name, v in zip(hidden, vectors, strict=True)}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"average_hidden needs hidden layers of equal shape, got sizes {sizes}; track "
                "them separately with first_layers=N or pick one with layer=NAME"
            )
        return np.mean(vectors, axis=0, dtype=np.float64).astype(np.float32)

    # ---------------------------------------------------------------- measuring

    def measure(self, model: nn.Module, step: int) -> ProbeResult:
        vectors = self.vectors(model)
        rows: list[tuple[str, int, str, float]] = []
        for index, (trajectory, vector) in enumerate(vectors.items()):
            # distances are taken between the values as stored, so they agree with the files
            stored = vector.astype(DTYPES[self.dtype]).astype(np.float64)
            first = self._first.setdefault(trajectory, stored)
            last = self._last.get(trajectory, stored)
            rows += [
                (trajectory, index, "norm", float(np.linalg.norm(stored))),
                (trajectory, index, "distance_from_init", float(np.linalg.norm(stored - first))),
                (trajectory, index, "distance_from_last", float(np.linalg.norm(stored - last))),
                (trajectory, index, "parameters", float(vector.size)),
            ]
            self._last[trajectory] = stored
        for split, data in (("train", self.train), ("test", self.test)):
            for measure, value in evaluate(model, data, self.batch_size).items():
                rows.append(("model", -1, f"{split}_{measure}", value))
        return ProbeResult(rows=rows, snapshots=vectors, snapshot_dtype=self.dtype)

    # ---------------------------------------------------------------- carried state

    data_parameters = ("train", "test")
    unrecorded_parameters = ("batch_size",)

    def state_dict(self) -> dict[str, Any]:
        """The first and the previous stored vector of each trajectory (for the distances)."""
        return {"first": dict(self._first), "last": dict(self._last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._first, self._last = dict(state["first"]), dict(state["last"])

    def reset(self) -> None:
        self._first, self._last = {}, {}

    def state_from_results(self, first: ProbeResult, last: ProbeResult) -> dict[str, Any]:
        """The first and last stored snapshot of each trajectory (as stored, in float64)."""
        return {"first": {t: np.asarray(v, dtype=np.float64) for t, v in first.snapshots.items()},
                "last": {t: np.asarray(v, dtype=np.float64) for t, v in last.snapshots.items()}}

    def describe_data(self) -> dict[str, Any]:
        """Which of the train / test sets are scored (the data itself is not recorded)."""
        return {"scored_on": [split for split, data in (("train", self.train),
                                                       ("test", self.test)) if data is not None]}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "tracks": self.tracked()}
