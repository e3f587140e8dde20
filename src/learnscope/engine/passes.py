"""The measurement pass: one function that every probe's measurement goes through.

`run_pass(model, taps, state)` owns what makes a measurement exact and side-effect free:

- a frozen copy of the model (eval mode, BatchNorm in the mode the taps ask: "train" uses batch
  statistics, as the activation-pattern paper does), so the trained model never changes;
- the data in fixed batches and a fixed order (`learnscope.engine.batches`), no gradients;
- every random state (torch, CUDA, NumPy, Python) restored afterwards;
- sharding: inside `learnscope.distributed.sharded()` with several ranks, batch i is rank
  i % world's, so every batch (and BatchNorm's statistics in train mode) is the single-process
  one;
- failure coordination: if any rank fails during the pass, every rank raises
  (`distributed.fail_together`), before any reduction;
- the cross-process reduction of the state's accumulators, in one place and one order on every
  rank (`learnscope.engine.reduction`, whose docstring states the rule);
- progress, through the observers of `learnscope.engine.observers` (no display here).

What a probe needs from the pass is declared as `Taps`; what it accumulates is a `PassState`
of `Accumulator`s, filled by the `update(state, batch)` function given to the pass (and by any
instrument the taps name, such as the activation-pattern tap). Pass timings are logged at DEBUG
on the ``learnscope.engine.passes`` logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from learnscope import distributed
from learnscope.engine.accumulators import Accumulator
from learnscope.engine.batches import (
    MeasurementData,
    check_batch_statistics,
    check_labels,
    iter_batches,
    measurement_copy,
    model_device,
    preserved_rng,
    unwrap_model,
)
from learnscope.engine.reduction import reduce_across_ranks

log = logging.getLogger("learnscope.engine.passes")


class Instrument(Protocol):
    """Something a pass installs on the model copy besides feature taps (e.g. the activation
    tap of `learnscope.patterns`): `attach(model, state)` is entered for the pass and
    `after_batch()` is called after each forward."""

    def attach(self, model: nn.Module, state: PassState) -> AbstractContextManager: ...

    def after_batch(self) -> None: ...


@dataclass(frozen=True)
class Taps:
    """What a probe needs from one pass.

    Attributes:
        data: the measurement data (tensor, (inputs, labels), Dataset or non-shuffling
            DataLoader).
        batch_size: samples per forward pass (ignored for a DataLoader).
        batchnorm: "train" (batch statistics) or "eval" (running statistics) on the copy.
        labels: the batches must carry valid class labels (checked, given as `batch.labels`).
        features: modules (or qualified names) whose outputs each batch carries, in forward
            order, as `batch.features[name]`.
        outputs: each batch carries the model's output (`batch.outputs`).
        instruments: other taps, installed for the pass (see `Instrument`).
    """

    data: MeasurementData
    batch_size: int = 256
    batchnorm: str = "train"
    labels: bool = False
    features: Sequence[nn.Module | str] = ()
    outputs: bool = False
    instruments: Sequence[Instrument] = ()


@dataclass
class Batch:
    """One batch of a pass, as the probe's `update` sees it (after the forward)."""

    index: int  # global batch number (the same with or without sharding)
    inputs: torch.Tensor  # as the data gave them (not moved to the model's device)
    labels: torch.Tensor | None
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: Any = None


class PassState:
    """What one pass accumulates: named accumulators, reduced across ranks after the pass.

    `PassState(total=Sum(), count=Sum())`; `state["total"]` is the accumulator. Subclasses may
    create accumulators while the pass runs (e.g. one per layer, once its width is known), keep
    an `agreement()` that every rank that saw data must share (e.g. the layer order; after the
    pass `agreed` holds the common one) and finish work in `close()` (called once the last
    batch is done, before the reduction).
    """

    def __init__(self, **accumulators: Accumulator) -> None:
        self.accumulators: dict[str, Accumulator] = dict(accumulators)
        self.batch: Batch | None = None  # the batch being measured
        self.agreed: Any = None

    def __getitem__(self, key: str) -> Accumulator:
        return self.accumulators[key]

    def agreement(self) -> Any:
        return None

    def close(self) -> None:
        """Finish accumulating (e.g. wait for background work); default: nothing."""


def module_names(model: nn.Module, layers: Sequence[nn.Module | str]) -> list[str]:
    """Qualified names of `layers` (modules of `model` or their names), in the given order;
    names are those inside any wrapper (`unwrap_model`), as the measurement copy has them."""
    model = unwrap_model(model)
    names = dict(model.named_modules())
    paths = {id(m): n for n, m in model.named_modules()}
    resolved = []
    for layer in layers:
        if isinstance(layer, nn.Module):
            if id(layer) not in paths:
                raise ValueError(f"module {type(layer).__name__} is not part of the model")
            resolved.append(paths[id(layer)])
        elif layer in names:
            resolved.append(layer)
        else:
            raise ValueError(
                f"unknown layer {layer!r}; modules of the model: {[n for n in names if n]}"
            )
    return resolved


class _FeatureCapture:
    """Forward hooks keeping each selected module's output of the current batch."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.names = names
        self.outputs: dict[str, torch.Tensor] = {}
        self.order: list[str] | None = None
        modules = dict(model.named_modules())
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def hook(module, args, output) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            if name in self.outputs:
                raise ValueError(
                    f"layer {name!r} ran twice in one forward pass; pick modules applied once"
                )
            self.outputs[name] = output.detach()

        return hook

    def take(self) -> dict[str, torch.Tensor]:
        """This batch's outputs in forward order (that of the first batch); then forget them."""
        if self.order is None:
            self.order = list(self.outputs)
        missing = [n for n in self.names if n not in self.outputs]
        if missing:
            raise ValueError(f"layers {missing} did not run in the forward pass")
        outputs, self.outputs = self.outputs, {}
        return {n: outputs[n] for n in self.order}

    def __enter__(self) -> _FeatureCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def run_pass(
    model: nn.Module,
    taps: Taps,
    state: PassState,
    update: Callable[[PassState, Batch], None] | None = None,
    *,
    description: str | None = "measure",
) -> PassState:
    """One measurement pass of `model` over `taps.data`, accumulating into `state`.

    `update(state, batch)` is called after each forward. Progress is reported under
    `description` (None: not reported). Returns `state` with its accumulators
    reduced across ranks (inside `distributed.sharded()` with several ranks: collective, every
    rank must run the same passes in the same order) and `state.agreed` set. The model, its
    BatchNorm statistics and every random state are left exactly as they were.
    """
    shard = distributed.current_shard()
    device = model_device(model)
    started = time.perf_counter()
    batches = 0
    with preserved_rng():
        frozen = measurement_copy(model, taps.batchnorm)
        names = module_names(frozen, taps.features)  # names resolve alike on the copy
        with distributed.fail_together(shard is not None):
            try:
                with torch.no_grad(), ExitStack() as stack:
                    capture = stack.enter_context(_FeatureCapture(frozen, names))
                    for instrument in taps.instruments:
                        stack.enter_context(instrument.attach(frozen, state))
                    for local, (inputs, labels) in enumerate(_batches(taps, description, shard)):
                        check_batch_statistics(frozen, inputs.shape[0], taps.batch_size)
                        if taps.labels:
                            labels = check_labels(labels, inputs.shape[0])
                        index = local if shard is None else shard.global_index(local)
                        batch = state.batch = Batch(index, inputs, labels)
                        outputs = frozen(inputs.to(device))
                        batch.features = capture.take()
                        batch.outputs = outputs if taps.outputs else None
                        if update is not None:
                            update(state, batch)
                        for instrument in taps.instruments:
                            instrument.after_batch()
                        batches += 1
            finally:
                state.batch = None
                state.close()
    passed = time.perf_counter()
    state.agreed = state.agreement()
    if shard is not None:
        state.agreed, state.accumulators = reduce_across_ranks(
            state.accumulators, state.agreed, shard)
    log.debug("pass %r: %d batches in %.3f s, reduction %.3f s%s", description, batches,
              passed - started, time.perf_counter() - passed,
              "" if shard is None else f" (rank {shard.rank} of {shard.world})")
    return state


def _batches(taps: Taps, description: str | None, shard) -> Iterator:
    return iter_batches(taps.data, taps.batch_size, progress=description, shard=shard)
