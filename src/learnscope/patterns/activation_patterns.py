"""Count every activation pattern of every layer over a dataset; the ActivationPatterns probe.

`count(model, data)` is the one-off measurement; `ActivationPatterns` wraps it for a Scope, keeps
the first (init) and previous (last) counts, and turns counts into measure rows.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from learnscope import distributed
from learnscope.engine.batches import MeasurementData, measurement_copy, unwrap_model
from learnscope.engine.passes import PassState, Taps, run_pass
from learnscope.patterns import measures as M
from learnscope.patterns.counts import (
    DEFAULT_TABLE_SIZE,
    PartitionedCounts,
    PatternCounter,
    PatternCounts,
    check_counting_mode,
    check_merge,
)
from learnscope.patterns.device_counts import DevicePatternCounter
from learnscope.patterns.keys import PatternLayout, pack_keys
from learnscope.patterns.layers import (
    ActivationTap,
    no_layers_message,
    resolve_layer_selection,
    unknown_layer_message,
)
from learnscope.probe import MetricRow, Probe, ProbeResult

UNIT_DIMS = ("auto", "channels", "last")
BACKENDS = ("auto", "numpy", "torch")


def check_backend(backend: str) -> None:
    """Raise ValueError unless `backend` is one of BACKENDS."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown counting backend {backend!r}; use one of {BACKENDS}")


def resolved_backend(backend: str, device: torch.device) -> str:
    """The backend that counts keys on `device`: "auto" is NumPy on the CPU (measured faster
    there, see benchmarks/RESULTS.md) and torch, on the device, anywhere else."""
    if backend != "auto":
        return backend
    return "numpy" if device.type == "cpu" else "torch"
MAX_QUEUED_BATCHES = 64  # layer-batches of keys waiting to be counted


class NonFiniteActivationError(ValueError):
    """A layer's input held NaN or inf during a measurement pass."""

    def __init__(self, layer: str, step: int | None, bad: int, total: int) -> None:
        where = f" at step {step}" if step is not None else ""
        super().__init__(
            f"layer {layer!r}{where}: {bad} of {total} activation inputs are NaN or inf; the "
            "model has diverged (lower the learning rate, or check the inputs for NaN)"
        )
        self.layer = layer
        self.step = step


class _PatternState(PassState):
    """One pass's pattern counters, fed by the activation tap (see `_ActivationInstrument`).

    Each layer's input is packed into keys during the forward pass, on its device; the counting
    (NumPy on the host, or torch on the keys' device: see `backend`; both release the GIL) runs
    on one background thread, in order, while the forward pass goes on, with a bounded backlog
    capping the memory held by queued keys. Once closed, its
    accumulators are the layers' PatternCounts and its agreement the layer order.
    """

    def __init__(
        self,
        selection: set[str] | None,
        *,
        labelled: bool,
        mode: str,
        table_size: int,
        unit_dim: str,
        has_conv1d: bool,
        step: int | None,
        backend: str = "auto",
        merge: str = "partition",
    ) -> None:
        super().__init__()
        self.backend = backend
        self.merge = merge
        self.selection = selection
        self.labelled = labelled
        self.mode = mode
        self.table_size = table_size
        self.unit_dim = unit_dim
        self.has_conv1d = has_conv1d
        self.step = step
        self.layer_order: list[str] = []  # every activation layer that ran, forward order
        self.counters: dict[str, PatternCounter] = {}
        self.workspace: dict = {}  # packing scratch buffers, reused across layers and batches
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learnscope-count")
        self._backlog: deque[Future] = deque()
        self._batch_labels: dict[str, tuple[object, Any]] = {}  # device: (batch, its labels)

    def _unit_axis(self, z: torch.Tensor) -> int:
        if self.unit_dim == "channels":
            return 1
        if self.unit_dim == "last":
            return z.dim() - 1
        # auto: channels first for images/volumes; a 3-D input is (n, channels, length) in a
        # model with Conv1d, else (n, positions, units) as in a sequence model's linear layers
        if z.dim() == 3 and not self.has_conv1d:
            return 2
        return 1

    def _labels(self, device: torch.device | None) -> np.ndarray | torch.Tensor:
        """This batch's labels: a NumPy array (device None) or a tensor on `device`."""
        batch = self.batch
        where = str(device)
        cached = self._batch_labels.get(where)
        if cached is None or cached[0] is not batch:
            labels = batch.labels.cpu().numpy() if device is None else batch.labels.to(device)
            cached = self._batch_labels[where] = (batch, labels)
        return cached[1]

    def __call__(self, name: str, z: torch.Tensor, breakpoints: tuple, kind: str) -> None:
        if name not in self.layer_order:
            self.layer_order.append(name)
        if self.selection is not None and name not in self.selection:
            return
        if z.dim() < 2:
            z = z.reshape(-1, 1)
        if not bool(torch.isfinite(z.sum())) and not bool(torch.isfinite(z).all()):
            bad = int((~torch.isfinite(z)).sum())
            raise NonFiniteActivationError(name, self.step, bad, z.numel())
        axis = self._unit_axis(z)
        counter = self.counters.get(name)
        if counter is None:
            layout = PatternLayout(int(z.shape[axis]), tuple(breakpoints))
            settings = dict(labelled=self.labelled, mode=self.mode, table_size=self.table_size)
            if resolved_backend(self.backend, z.device) == "torch":
                counter = DevicePatternCounter(layout, device=z.device, **settings)
            else:
                counter = PatternCounter(layout, **settings)
            self.counters[name] = counter
        on_device = isinstance(counter, DevicePatternCounter)
        keys = pack_keys(z.detach(), counter.layout, axis, self.workspace)
        if not on_device:
            keys = keys.cpu().numpy()
        labels = None
        if self.labelled:
            batch_labels = self._labels(keys.device if on_device else None)
            per_sample = keys.shape[0] // batch_labels.shape[0]
            labels = (batch_labels.repeat_interleave(per_sample) if on_device
                      else np.repeat(batch_labels, per_sample))
        self._backlog.append(self._worker.submit(counter.add, keys, labels))
        while len(self._backlog) > MAX_QUEUED_BATCHES:
            self._backlog.popleft().result()

    def close(self) -> None:
        """Wait for all queued counting (re-raising its errors), stop the worker, and make the
        counters' results the state's accumulators."""
        try:
            while self._backlog:
                self._backlog.popleft().result()
        finally:
            self._worker.shutdown(wait=True, cancel_futures=True)
        self.accumulators = {}
        for name, counter in self.counters.items():
            counts = counter.result()
            counts.rank_merge = self.merge  # how the pass reduces it across ranks
            self.accumulators[name] = counts

    def agreement(self) -> list[str]:
        return self.layer_order


class _ActivationInstrument:
    """The pass instrument tapping every activation's input into a `_PatternState`."""

    def __init__(self) -> None:
        self.tap: ActivationTap | None = None

    @contextmanager
    def attach(self, model: nn.Module, state: PassState) -> Iterator[None]:
        with ActivationTap(model, state) as tap:
            self.tap = tap
            yield

    def after_batch(self) -> None:
        # a model whose first forward pass made no functional activation call (the usual
        # static graph) is not intercepted any further: it only costs time
        self.tap.stop_functional_if_unused()


def count_layers(
    model: nn.Module,
    data: MeasurementData,
    *,
    batch_size: int = 256,
    batchnorm: str = "train",
    labels: bool = False,
    mode: str = "exact",
    table_size: int = DEFAULT_TABLE_SIZE,
    layers: Sequence[nn.Module | str] | None = None,
    unit_dim: str = "auto",
    step: int | None = None,
    backend: str = "auto",
    merge: str = "partition",
) -> tuple[dict[str, PatternCounts], dict[str, int]]:
    """Like `count`, but also returns each layer's forward-order index among all activations."""
    check_counting_mode(mode, table_size)
    check_backend(backend)
    check_merge(merge)
    if unit_dim not in UNIT_DIMS:
        raise ValueError(f"unit_dim must be one of {UNIT_DIMS}, got {unit_dim!r}")
    selection = resolve_layer_selection(model, layers)
    state = _PatternState(
        selection,
        labelled=labels,
        mode=mode,
        table_size=table_size,
        unit_dim=unit_dim,
        has_conv1d=any(isinstance(m, nn.Conv1d) for m in model.modules()),
        step=step,
        backend=backend,
        merge=merge,
    )
    taps = Taps(data, batch_size=batch_size, batchnorm=batchnorm, labels=labels,
                instruments=(_ActivationInstrument(),))
    what = "count patterns" + ("" if step is None else f" at step {step}")
    state = run_pass(model, taps, state, description=what)
    layer_order = state.agreed or []
    if not layer_order:
        raise ValueError(no_layers_message(model))
    if selection is not None and selection - set(layer_order):
        raise ValueError(unknown_layer_message(selection - set(layer_order), layer_order))
    local = state.accumulators
    counts = {name: local[name] for name in layer_order if name in local}
    index = {name: i for i, name in enumerate(layer_order)}
    return counts, {name: index[name] for name in counts}


def count(
    model: nn.Module,
    data: MeasurementData,
    *,
    batch_size: int = 256,
    batchnorm: str = "train",
    labels: bool = False,
    mode: str = "exact",
    table_size: int = DEFAULT_TABLE_SIZE,
    layers: Sequence[nn.Module | str] | None = None,
    unit_dim: str = "auto",
    backend: str = "auto",
    merge: str = "partition",
) -> dict[str, PatternCounts]:
    """Count every activation pattern of every activation layer over `data`.

    The pass runs on a frozen copy of the model and leaves the model, its BatchNorm statistics
    and all random states exactly as they were. Inside `learnscope.distributed.sharded()` with
    several ranks (torchrun) it is collective: each rank counts its share of the batches, and
    the counts merge across ranks as `merge` says.

    Args:
        model: any nn.Module; ReLU-like modules and functional calls are found automatically.
        data: inputs tensor, (inputs, labels) pair, Dataset, or non-shuffling DataLoader.
        batch_size: samples per forward pass (ignored for a DataLoader). With BatchNorm in train
            mode the batch size changes the statistics, so keep it fixed across measurements.
        batchnorm: "train" (batch statistics, as in the paper) or "eval" (running statistics).
        labels: also count joint (pattern, label) occurrences (needs labelled data).
        mode: "exact" (default) or "hashlist" (the paper's fixed-size hash table).
        table_size: counters per layer in hash-list mode.
        layers: restrict to these modules or layer names (default: all).
        unit_dim: where the units are: "auto", "channels" (axis 1) or "last".
        backend: where keys are counted: "numpy" (on the host), "torch" (on the activations'
            device, only the final tables cross to the host; on the CPU too) or "auto" (NumPy
            for CPU activations, torch for any other device). Every backend gives identical
            counts.
        merge: how counts merge across the ranks of a sharded pass: "partition" (default;
            exact mode) sends each pattern to the rank hash(pattern) mod world, so each rank
            returns *its partition* of every layer's counts (`PatternCounts.partition`; the
            functions of `learnscope.patterns.measures` give the whole's values from it, on
            every rank together), or "gather": every rank gets every pattern (the whole
            counts, as one process counts them). Hash-list counts (bounded tables) are always
            gathered. Without several ranks both give the whole counts.

    Returns:
        {layer name: PatternCounts}, in forward order.
    """
    counts, _ = count_layers(
        model,
        data,
        batch_size=batch_size,
        batchnorm=batchnorm,
        labels=labels,
        mode=mode,
        table_size=table_size,
        layers=layers,
        unit_dim=unit_dim,
        backend=backend,
        merge=merge,
    )
    return counts


REFERENCES = ("init", "last")


def cpu_weights(model: nn.Module) -> dict[str, Any]:
    """A copy of `model`'s state dict (parameters and buffers, BatchNorm statistics included)
    on the CPU: what a reference is kept by."""
    return {name: value.detach().to("cpu", copy=True) if isinstance(value, torch.Tensor)
            else copy.deepcopy(value)
            for name, value in unwrap_model(model).state_dict().items()}


def same_weights(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two state dicts hold the same names and equal tensors."""
    if a is None or b is None:
        return False
    if a is b:
        return True
    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor)
               and isinstance(b[k], torch.Tensor) else a[k] is b[k] for k in a)


class ActivationPatterns(Probe):
    """Probe: counts the activation patterns of every layer and reports their measures.

    Each measurement reports, per layer, the single-measurement measures (`evaluations`,
    `distinct`, `distinct_frac`, `max_count`, `max_frac`, `entropy`, `rel_entropy`), with labels
    `joint_entropy`, `conditional_entropy`, `mutual_information`, in hash-list mode `occupancy`,
    and comparisons against the first measurement ("init") and the previous one ("last"):
    `<added|removed|jaccard|jaccard_t|weighted_jaccard>_since_<init|last>`. At the first
    measurement `*_since_init` compares the state with itself and `*_since_last` is NaN.

    The references are carried (`state_dict`, the trainer's checkpoints) by the weights of the
    model they were measured on, never by their counts, so a checkpoint does not grow with the
    data; a resumed probe counts them again at its next measurement (docs/store.md,
    "Checkpoints").

    Args:
        data: the measurement dataset (see `count`), typically the whole training set.
        labels: count joint pattern-label occurrences and report the label measures.
        batch_size, batchnorm, mode, table_size, layers, unit_dim, backend, merge: as in
            `count` (`backend` and `merge` are recorded in the config only when they are not
            the defaults "auto" and "partition": they never change the results, and runs
            measured before they existed keep their fingerprints). With merge="partition"
            under torchrun, each rank keeps its partition of the counts and of the init / last
            references, and every measurement's measures are combined from per-partition terms
            with one collective.
        measures: report only these measures (default: all available).
        compare_to: references to compare with, subset of ("init", "last").
        jaccard_threshold: T of `jaccard_t` (patterns with count > T).
        save_counts: also return the counts as artifacts, for the store to keep.
        name: the probe's name in the store.
    """

    def __init__(
        self,
        data: MeasurementData,
        *,
        labels: bool = False,
        batch_size: int = 256,
        batchnorm: str = "train",
        mode: str = "exact",
        table_size: int = DEFAULT_TABLE_SIZE,
        layers: Sequence[nn.Module | str] | None = None,
        measures: Sequence[str] | None = None,
        compare_to: Sequence[str] = REFERENCES,
        jaccard_threshold: int = M.DEFAULT_JACCARD_THRESHOLD,
        save_counts: bool = False,
        unit_dim: str = "auto",
        backend: str = "auto",
        merge: str = "partition",
        name: str = "patterns",
    ) -> None:
        unknown_refs = set(compare_to) - set(REFERENCES)
        if unknown_refs:
            raise ValueError(f"unknown references {sorted(unknown_refs)}; use {REFERENCES}")
        check_counting_mode(mode, table_size)
        check_backend(backend)
        check_merge(merge)
        if batchnorm not in ("train", "eval"):
            raise ValueError(f"batchnorm must be 'train' or 'eval', got {batchnorm!r}")
        self.data = data
        self.labels = labels
        self.batch_size = batch_size
        self.batchnorm = batchnorm
        self.mode = mode
        self.table_size = table_size
        self.layers = layers
        self.compare_to = tuple(compare_to)
        self.jaccard_threshold = jaccard_threshold
        self.save_counts = save_counts
        self.unit_dim = unit_dim
        self.backend = backend
        self.merge = merge
        self.name = name
        available = self.available_measures()
        if measures is not None:
            unknown = [m for m in measures if m not in available]
            if unknown:
                raise ValueError(f"unknown measure(s) {unknown}; available: {available}")
        self.measures = list(measures) if measures is not None else available
        # Each reference (init, last) is known by the weights of the model it was measured on
        # (a CPU state dict: what a checkpoint keeps, a few times smaller than the model
        # whatever the data size) and, in memory, by its counts (as large as the data makes
        # them). After a resume only the weights are known; the counts are recounted from them
        # at the next measurement (the measurement pass is deterministic).
        self.init_counts: dict[str, PatternCounts] | None = None
        self.last_counts: dict[str, PatternCounts] | None = None
        self.init_weights: dict[str, Any] | None = None
        self.last_weights: dict[str, Any] | None = None
        self._init_lost = False  # resumed with neither counts nor weights: since-init is NaN

    def available_measures(self) -> list[str]:
        """Names of every measure this probe can report with its settings."""
        names = list(M.SINGLE)
        if self.labels:
            names += list(M.LABELLED)
        if self.mode == "hashlist":
            names.append("occupancy")
        for reference in self.compare_to:
            names += [f"{c}_since_{reference}" for c in M.COMPARISONS]
        return names

    unrecorded_parameters = ("save_counts",)

    def config_value(self, key: str, value: Any) -> Any:
        """The table size is recorded in hash-list mode only (exact mode has no table)."""
        if key == "table_size" and self.mode != "hashlist":
            return None
        return super().config_value(key, value)

    def config(self) -> dict[str, Any]:
        """The settings stored with the run; `backend` only when not the default "auto" (it
        never changes the counts, and earlier runs' fingerprints stay valid)."""
        config = super().config()
        for key, default in (("backend", "auto"), ("merge", "partition")):
            if config.get(key) == default:
                del config[key]
        return config

    def count(self, model: nn.Module, step: int | None = None, *,
              layers: Sequence[str] | None = None) -> tuple[dict, dict]:
        """Count the patterns of `model` on the probe's data: (counts, layer indexes).
        `layers` (names) replaces the probe's own selection, e.g. for a copy of the model."""
        return count_layers(
            model,
            self.data,
            batch_size=self.batch_size,
            batchnorm=self.batchnorm,
            labels=self.labels,
            mode=self.mode,
            table_size=self.table_size,
            layers=self.layers if layers is None else layers,
            unit_dim=self.unit_dim,
            step=step,
            backend=self.backend,
            merge=self.merge,
        )

    def _layer_terms(self, counts: PatternCounts, references: dict[str, PatternCounts | None],
                     singles: bool) -> dict[str, Any]:
        """This rank's partial terms of one layer's measures (the whole's when not
        partitioned): single and label terms, and the comparisons with each reference."""
        terms: dict[str, Any] = {}
        if singles:
            terms["single"] = M.single_terms(counts)
            if self.labels:
                terms["labels"] = M.label_terms(counts)
        terms["since"] = {
            name: M.comparison_terms(M.aligned_reference(ref, counts), counts,
                                     threshold=self.jaccard_threshold)
            for name, ref in references.items() if ref is not None
        }
        return terms

    def _direct(self, name: str, fn: Any, counts: PatternCounts) -> float:
        """A measure of the tables without partial terms: computed on whole counts only."""
        if counts.is_partition:
            raise ValueError(
                f"measure {name!r} has no partial terms (measures.measures_from_terms), so it "
                "cannot be computed from partitioned counts; use merge='gather', or define its "
                "terms in learnscope.patterns.measures"
            )
        return float(fn(counts))

    def rows_for(
        self,
        counts: dict[str, PatternCounts],
        index: dict[str, int],
        references: dict[str, dict[str, PatternCounts] | None],
        *,
        singles: bool = True,
    ) -> list[MetricRow]:
        """Measure rows for counts by layer, comparing with reference counts by layer
        (`singles=False`: the comparisons only, all of them).

        Every layer's terms are computed on this rank's partition and combined with those of
        the other ranks in one collective (none for whole counts): collective when `counts`
        are partitions.
        """
        wanted = set(self.measures)
        compared = [r for r in references if not singles
                    or any(f"{name}_since_{r}" in wanted for name in M.COMPARISONS)]
        by_reference = {layer: {r: (references[r].get(layer) if references[r] is not None
                                    else None) for r in compared} for layer in counts}
        whole = M.across_partitions(list(counts.values()), lambda: {
            layer: self._layer_terms(c, by_reference[layer], singles)
            for layer, c in counts.items()})
        rows: list[MetricRow] = []
        for layer, layer_counts in counts.items():
            i, terms = index[layer], whole[layer]
            if singles:
                values = M.measures_from_terms(
                    {**terms["single"], **terms.get("labels", {})}, width=layer_counts.width,
                    states=layer_counts.states, evaluations=layer_counts.evaluations)
                table = dict(M.SINGLE, **(M.LABELLED if self.labels else {}))
                for name, fn in table.items():
                    if name in wanted:
                        value = (float(values[name]) if name in values
                                 else self._direct(name, fn, layer_counts))
                        rows.append((layer, i, name, value))
                if "occupancy" in wanted:
                    rows.append((layer, i, "occupancy", float(layer_counts.occupancy)))
            for reference in references:
                since = terms["since"].get(reference)
                values = M.comparison_measures(since) if since is not None else {}
                for name in M.COMPARISONS:
                    measure = f"{name}_since_{reference}"
                    if measure in wanted or not singles:
                        rows.append((layer, i, measure, float(values.get(name, math.nan))))
        return rows

    def measure(self, model: nn.Module, step: int) -> ProbeResult:
        """Count the patterns of `model` and report the measures (see the class docstring)."""
        model = unwrap_model(model)  # the weights kept are the inner module's
        self._recount_references(model)
        counts, index = self.count(model, step)
        weights = cpu_weights(model) if self.compare_to else None
        first = self.init_counts is None and self.init_weights is None and not self._init_lost
        if first and "init" in self.compare_to:
            self.init_counts, self.init_weights = counts, weights
        references = {"init": self.init_counts, "last": self.last_counts}
        rows = self.rows_for(counts, index, {r: references[r] for r in self.compare_to})
        if "last" in self.compare_to:
            self.last_counts, self.last_weights = counts, weights
        return ProbeResult(rows=rows, artifacts=self._artifacts(counts))

    def _recount_references(self, model: nn.Module) -> None:
        """Count the references known only by their weights (after a resume): a copy of
        `model` with those weights, measured as every state is (same data, same order)."""
        if "init" in self.compare_to and self.init_counts is None \
                and self.init_weights is not None:
            self.init_counts = self._count_weights(model, self.init_weights)
        if "last" in self.compare_to and self.last_counts is None \
                and self.last_weights is not None:
            if self.init_counts is not None and same_weights(self.last_weights,
                                                             self.init_weights):
                self.last_counts = self.init_counts
            else:
                self.last_counts = self._count_weights(model, self.last_weights)

    def _count_weights(self, model: nn.Module, weights: dict[str, Any]) -> dict:
        reference = measurement_copy(model, self.batchnorm)
        reference.load_state_dict(weights)
        # modules given as `layers` are the model's, not the copy's: select by name
        names = resolve_layer_selection(model, self.layers)
        return self.count(reference, layers=None if names is None else sorted(names))[0]

    def state_dict(self) -> dict[str, Any]:
        """The init and last references, by the weights of the model they were measured on
        (for checkpoints: their size does not grow with the data). A reference whose weights
        are unknown (restored from saved counts alone) is kept by its counts instead."""
        return {
            "init_weights": self.init_weights,
            "last_weights": self.last_weights,
            "init_counts": self.init_counts if self.init_weights is None else None,
            "last_counts": self.last_counts if self.last_weights is None else None,
            "init_lost": self._init_lost,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore references saved by `state_dict`; references known by their weights are
        counted again at the next measurement. A checkpoint written before references were
        kept by their weights (counts under "init" and "last") is read too."""
        if "init" in state:  # written before references were kept by their weights
            state = {"init_counts": state["init"], "last_counts": state["last"],
                     "init_weights": None, "last_weights": None, "init_lost": state["init_lost"]}
        self.init_weights, self.last_weights = state["init_weights"], state["last_weights"]
        self.init_counts, self.last_counts = state["init_counts"], state["last_counts"]
        self._init_lost = state["init_lost"]

    def reset(self) -> None:
        """No reference yet: the next measurement is the run's first ("init")."""
        self.init_counts, self.last_counts, self._init_lost = None, None, False
        self.init_weights, self.last_weights = None, None

    def state_from_results(self, first: ProbeResult, last: ProbeResult) -> dict[str, Any]:
        """References from what the store kept of the first and last stored measurements: the
        weights (kept with `save_weights=True`), else the counts (`save_counts=True`).

        With neither, the since-init and since-last comparisons of the resumed part are NaN
        rather than silently relative to the wrong state.
        """
        state = {"init_weights": first.weights, "last_weights": last.weights,
                 "init_counts": None, "last_counts": None}
        if first.weights is None and first.artifacts:
            state["init_counts"] = dict(first.artifacts)
        if last.weights is None and last.artifacts:
            state["last_counts"] = dict(last.artifacts)
        state["init_lost"] = state["init_weights"] is None and state["init_counts"] is None
        return state

    def _artifacts(self, counts: dict[str, PatternCounts]) -> dict[str, Any]:
        """The counts to save (`save_counts=True`): whole counts as they are; partitions
        (merge="partition" under torchrun) as one file per partition, collected on rank 0 one
        partition at a time (collective; the other ranks return nothing to save)."""
        if not self.save_counts:
            return {}
        if not any(c.is_partition for c in counts.values()):
            return dict(counts)
        artifacts = {}
        for layer, layer_counts in counts.items():
            part = PartitionedCounts.collect(layer_counts, distributed.send_arrays_to_main)
            if part is not None:
                artifacts[layer] = part
        return artifacts

    def load_artifact(self, path: Path) -> PatternCounts:
        """One layer's counts saved by a measurement (`save_counts=True`), whole."""
        return PatternCounts.load(path)

    def final_reference(self, model: nn.Module) -> dict[str, PatternCounts]:
        """The final network's counts, which `since_final_rows` compares states with."""
        return self.count(model)[0]

    def since_final_rows(
        self, model: nn.Module, final_counts: dict[str, PatternCounts], step: int
    ) -> list[MetricRow]:
        """Count `model` and compare it with the final network's counts: `*_since_final` rows
        (with merge="partition" under torchrun, each rank compares its partitions)."""
        counts, index = self.count(model, step)
        return self.rows_for(counts, index, {"final": final_counts}, singles=False)

    @staticmethod
    def load_counts(folder: str | Path,
                    partition: tuple[int, int] | None = None) -> dict[str, PatternCounts]:
        """Read counts saved for one measurement (a folder of `<layer>.npz` files + manifest;
        a layer measured partitioned over several ranks is an index file and one file per
        partition), whole, or with `partition=(rank, world)` that partition of them, for any
        world size; a convenience for users, not used when a run resumes (the Scope hands the
        counts)."""
        from learnscope.store.artifacts import load_artifacts

        return load_artifacts(folder, lambda path: PatternCounts.load(path, partition))
