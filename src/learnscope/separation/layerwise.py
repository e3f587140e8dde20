"""Measure D at the input and after every layer of a model; the Separation probe.

Feature points are found automatically: after every *feature block* (a module of a class in
`learnscope.registry.feature_blocks`, where the residual/plain blocks of the conv families resnet,
convnet, toynet, pyramidnet and fixup_resnet register themselves; no model is imported here),
and, in any
nn.Sequential, after every Linear/Conv group (Linear-BN-ReLU, Linear-ReLU, Linear alone, ...:
the output of the group's last module), leaving out a lone final Linear of a top-level Sequential
(the classifier). Any other model takes an explicit `layers=[module or qualified name, ...]`.

One measurement is one pass (two for wide layers, see `method`) over the data in a fixed order on
a frozen copy of the model, without gradients, restoring every random state
(`learnscope.engine.run_pass`).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from learnscope.defaults import LAW_MEASURES
from learnscope.engine.batches import MeasurementData, unwrap_model
from learnscope.engine.passes import Batch, PassState, Taps, module_names, run_pass
from learnscope.probe import MetricRow, Probe, ProbeResult
from learnscope.registry import feature_blocks
from learnscope.separation.law import fit_law
from learnscope.separation.moments import ClassMoments, WithinAlong

METHODS = ("auto", "moments", "subspace")
AUTO_MOMENTS_MAX_FEATURES = 1024  # wider layers use the exact two-pass subspace method
MOMENTS_MAX_FEATURES = 8192  # per-class p x p float64 moments of 512 MiB each at this width
INPUT = "input"
_LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


def is_feature_block(module: nn.Module) -> bool:
    """Whether `module`'s output is one layer's features: its class is registered in
    `learnscope.registry.feature_blocks` (the conv families' blocks are; a user's may be)."""
    return isinstance(module, tuple(feature_blocks[name] for name in feature_blocks))


def feature_points(model: nn.Module) -> list[str]:
    """Qualified names of the modules whose outputs are the layers' features (see module doc)."""
    model = unwrap_model(model)  # torch.compile / DDP / DataParallel: the names inside
    blocks = [name for name, m in model.named_modules() if is_feature_block(m)]
    if blocks:
        return blocks
    points: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        starts = [i for i, (_, child) in enumerate(children) if isinstance(child, _LAYER_TYPES)]
        for k, start in enumerate(starts):
            stop = starts[k + 1] if k + 1 < len(starts) else len(children)
            lone_classifier = module is model and stop == len(children) and stop - start == 1
            if lone_classifier and isinstance(children[start][1], nn.Linear):
                continue
            child = children[stop - 1][0]
            points.append(f"{name}.{child}" if name else child)
    if not points:
        names = [n for n, _ in model.named_modules() if n]
        raise ValueError(
            f"found no layers to measure in {type(model).__name__} (no feature block and no "
            f"Linear/Conv in an nn.Sequential); pass layers=[module or name, ...] from: {names}"
        )
    return points


def _resolve(model: nn.Module, layers: Sequence[nn.Module | str] | None) -> list[str]:
    if layers is None:
        return feature_points(model)
    resolved = module_names(model, layers)
    if not resolved:
        raise ValueError("layers is empty; pass None for automatic layers or a non-empty list")
    return resolved


class _Moments(PassState):
    """The first pass: class moments of the input and of every layer, made at its first batch."""

    def __init__(self, method: str, max_dim: int | None) -> None:
        super().__init__()
        self.method = method
        self.max_dim = max_dim


def _features(batch: Batch) -> dict:
    return {INPUT: batch.inputs, **batch.features}


def _add_moments(state: _Moments, batch: Batch) -> None:
    for name, x in _features(batch).items():
        acc = state.accumulators.get(name)
        if acc is None:
            acc = state.accumulators[name] = _accumulator(name, x[0].numel(), state.method,
                                                          state.max_dim)
        try:
            acc.update(x, batch.labels)
        except ValueError as error:
            raise ValueError(f"layer {name!r}: {error}") from None


def _add_within(state: PassState, batch: Batch) -> None:
    features = _features(batch)
    for name, acc in state.accumulators.items():
        acc.update(features[name], batch.labels)


def measure(
    model: nn.Module,
    data: MeasurementData,
    *,
    layers: Sequence[nn.Module | str] | None = None,
    batchnorm: str = "train",
    balanced: bool = True,
    batch_size: int = 256,
    max_dim: int | None = None,
    method: str = "auto",
    step: int | None = None,
) -> dict[str, float]:
    """Separation fuzziness D at the input ("input") and after each layer, in forward order.

    The model, its BatchNorm statistics and all random states are left exactly as they were.
    Inside `learnscope.distributed.sharded()` with several ranks (torchrun) it is collective:
    each rank passes its share of the batches, the class moments are summed across ranks, and
    every rank returns the single-process values (to float64 rounding).

    Args:
        model: a registry model (layers found automatically) or any nn.Module with `layers`.
        data: labelled data: (inputs, labels), a Dataset of (input, label), or a DataLoader that
            does not shuffle.
        layers: modules or qualified names whose outputs are measured (default: automatic).
        batchnorm: "train" (batch statistics, as the paper takes features) or "eval".
        balanced: balanced (default, the paper's) or imbalanced definition of Σ_B and Σ_W.
        batch_size: samples per forward pass (ignored for a DataLoader); with BatchNorm in train
            mode it changes the statistics, so keep it fixed across measurements.
        max_dim: PCA-project layers wider than this on their top `max_dim` principal directions
            (as the paper's code does for wide features). Uses per-class p × p moments.
        method: "moments" (one pass, per-class p × p moments: O(C p²) memory), "subspace" (two
            passes, exact, O(C p) memory: Σ_W is only needed along the ≤ C − 1 directions of Σ_B),
            or "auto": moments for layers of at most 1,024 features or when max_dim is set,
            subspace for wider ones.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if max_dim is not None and method == "subspace":
        raise ValueError("max_dim needs method='moments' (or 'auto'): the subspace method is "
                         "exact without any projection")
    if max_dim is not None and max_dim < 1:
        raise ValueError(f"max_dim must be >= 1, got {max_dim}")
    names = _resolve(model, layers)
    taps = Taps(data, batch_size=batch_size, batchnorm=batchnorm, labels=True, features=names)
    what = "separation" + ("" if step is None else f" at step {step}")
    moments = run_pass(model, taps, _Moments(method, max_dim), _add_moments,
                       description=what).accumulators
    second = {n: WithinAlong(m, balanced) for n, m in moments.items() if not m.second_moments}
    if second:
        second = run_pass(model, taps, PassState(**second), _add_within,
                          description=what).accumulators
    return {name: (second[name].fuzziness() if name in second
                   else acc.fuzziness(balanced, max_dim)) for name, acc in moments.items()}


def _accumulator(name: str, p: int, method: str, max_dim: int | None) -> ClassMoments:
    """Empty moments for a layer of p features: full p x p moments or class means only."""
    full = method == "moments" or (method == "auto" and (
        max_dim is not None or p <= AUTO_MOMENTS_MAX_FEATURES))
    if full and p > MOMENTS_MAX_FEATURES:
        raise ValueError(
            f"layer {name!r} has {p} features: per-class p x p moments "
            f"would take {p * p * 8 / 2**30:.1f} GiB per class; use "
            "method='subspace' (exact, no max_dim) or pick narrower layers"
        )
    return ClassMoments(p, second_moments=full)




class Separation(Probe):
    """Probe: separation fuzziness D_l of every layer and the fit of the equi-separation law.

    Rows: (layer name, l, "fuzziness", D_l) with l = 0 for the input (layer "input") and 1..L for
    the layers in forward order; then, with layer "law" and layer_index −1, `law_slope`,
    `law_rho`, `law_pearson_r`, `law_r2`, `law_first`, `law_last` of the fit of log D_l over
    l = fit_first..L (NaN when it cannot be fitted: fewer than 2 layers, or D ≤ 0 or NaN).

    Args:
        data: labelled measurement data (see `measure`).
        layers, batchnorm, balanced, batch_size, max_dim, method: as in `measure`.
        fit_first: first layer index of the law fit (1: the layers after the input).
        name: the probe's name in the store.
    """

    def __init__(
        self,
        data: MeasurementData,
        *,
        layers: Sequence[nn.Module | str] | None = None,
        batchnorm: str = "train",
        balanced: bool = True,
        batch_size: int = 256,
        max_dim: int | None = None,
        method: str = "auto",
        fit_first: int = 1,
        name: str = "separation",
    ) -> None:
        if batchnorm not in ("train", "eval"):
            raise ValueError(f"batchnorm must be 'train' or 'eval', got {batchnorm!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.data = data
        self.layers = layers
        self.batchnorm = batchnorm
        self.balanced = balanced
        self.batch_size = batch_size
        self.max_dim = max_dim
        self.method = method
        self.fit_first = fit_first
        self.name = name

    def measure(self, model: nn.Module, step: int) -> ProbeResult:
        """D of every layer of `model` and the law fit (see the class docstring)."""
        values = measure(model, self.data, layers=self.layers, batchnorm=self.batchnorm,
                         balanced=self.balanced, batch_size=self.batch_size,
                         max_dim=self.max_dim, method=self.method, step=step)
        rows: list[MetricRow] = [(layer, i, "fuzziness", float(d))
                                 for i, (layer, d) in enumerate(values.items())]
        try:
            fit = fit_law(values, first=self.fit_first)
            law = (fit.slope, fit.rho, fit.pearson_r, fit.r2, float(fit.first), float(fit.last))
        except ValueError:
            law = (float("nan"),) * len(LAW_MEASURES)
        rows += [("law", -1, m, float(v)) for m, v in zip(LAW_MEASURES, law, strict=True)]
        return ProbeResult(rows=rows)
