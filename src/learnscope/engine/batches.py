"""The batches of a measurement pass: a side-effect-free walk over a fixed dataset.

Measuring must never change training. So a pass runs on a *copy* of the model (BatchNorm in train
mode uses batch statistics and would otherwise update the trained model's running statistics),
without gradients, over the data in a fixed order and batch size, and restores the torch, CUDA,
NumPy and Python random states afterwards (a DataLoader draws a seed from torch's RNG, for one).

Several processes can share one pass (learnscope.distributed): the data is cut into batches
exactly as one process would cut it, and batch i goes to rank i % world (a `Shard`), so every
batch, and hence BatchNorm's batch statistics in train mode, is the single-process one.

This module imports neither the display nor the process group: progress goes to the observers
registered in `learnscope.engine.observers` (the job's display registers itself there).
"""

from __future__ import annotations

import copy
import random
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from learnscope.engine import observers

BATCHNORM_MODES = ("train", "eval")
RANDOM_SAMPLERS = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)

MeasurementData = torch.Tensor | tuple | list | Dataset | DataLoader | np.ndarray


class EmptyDatasetError(ValueError):
    """The measurement dataset has no samples."""


@dataclass(frozen=True)
class Shard:
    """One rank's share of a measurement pass: batch i belongs to rank i % world.

    Batches are whole: the set is cut exactly as in a single-process pass (same order, same
    batch size) before they are dealt out, so each batch holds the same samples as there.
    """

    rank: int
    world: int

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"a shard needs 0 <= rank < world, got rank {self.rank} of "
                             f"{self.world}")

    def owns(self, batch: int) -> bool:
        """Whether global batch number `batch` (0-based) is this rank's."""
        return batch % self.world == self.rank

    def global_index(self, local: int) -> int:
        """The global batch number of this rank's `local`-th batch."""
        return local * self.world + self.rank

    def samples(self, n: int, batch_size: int) -> int:
        """How many of `n` samples, cut into batches of `batch_size`, this rank gets."""
        starts = range(self.rank * batch_size, n, self.world * batch_size)
        return sum(min(batch_size, n - start) for start in starts)


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the torch (CPU and CUDA), NumPy and Python RNG states on exit."""
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module a wrapper runs: `torch.compile`'s OptimizedModule (`_orig_mod`),
    DistributedDataParallel and DataParallel (`.module`), nested wrappers unwrapped fully.

    The same object the wrapper holds (same parameters, no copy), so measuring it measures the
    wrapped model, under the inner module's layer and parameter names; any other module is
    returned as it is.
    """
    # torch.compile's wrapper class exists only once torch._dynamo is loaded (not by importing
    # torch): without it no model can be compiled, and it is not loaded here
    dynamo = sys.modules.get("torch._dynamo.eval_frame")
    compiled = getattr(dynamo, "OptimizedModule", ())
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(model, compiled):
            model = model._orig_mod
        else:
            return model


def measurement_copy(model: nn.Module, batchnorm: str = "train") -> nn.Module:
    """A frozen copy of `model` for measuring: eval mode (no dropout), BatchNorm as requested.

    Args:
        model: the trained model; it is not modified.
        batchnorm: "train" (normalise with each batch's statistics, as the activation-pattern
            paper does) or "eval" (use the running statistics).
    """
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be 'train' or 'eval', got {batchnorm!r}")
    model = unwrap_model(model)
    try:
        clone = copy.deepcopy(model)
    except Exception as error:  # noqa: BLE001 - report any copy failure with the fix
        raise TypeError(
            f"cannot copy {type(model).__name__} for a side-effect-free measurement pass "
            f"({error}); make the model deep-copyable (copy.deepcopy(model) must work)"
        ) from error
    _rebind_wrapped_forward(clone, model)
    clone.eval()
    if batchnorm == "train":
        for module in clone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone


def _rebind_wrapped_forward(clone: nn.Module, model: nn.Module) -> None:
    """A forward set on the instance that wraps the model's own bound forward (Lightning's
    `trainer.fit(torch.compile(module))` sets `module.forward = torch.compile(module.forward)`)
    would, once copied, still run the original model: the copy runs that forward's function
    bound to the copy instead, uncompiled."""
    forward = clone.__dict__.get("forward")
    while forward is not None and not isinstance(forward, types.MethodType):
        forward = getattr(forward, "__wrapped__", None)
    if forward is not None and forward.__self__ is model:
        clone.forward = types.MethodType(forward.__func__, clone)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameterless model)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _as_tensor(value) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def _split_batch(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ValueError("the data yielded an empty batch tuple; expected (inputs, labels)")
        return _as_tensor(batch[0]), (_as_tensor(batch[1]) if len(batch) > 1 else None)
    if isinstance(batch, dict):
        raise TypeError(
            "dict batches are not supported; pass (inputs, labels) tuples or a tensor of inputs"
        )
    return _as_tensor(batch), None


def _slices(inputs: torch.Tensor, labels: torch.Tensor | None, batch_size: int,
            shard: Shard | None) -> Iterator:
    for batch, start in enumerate(range(0, inputs.shape[0], batch_size)):
        if shard is not None and not shard.owns(batch):
            continue
        stop = start + batch_size
        yield inputs[start:stop] if labels is None else (inputs[start:stop], labels[start:stop])


def iter_batches(
    data: MeasurementData,
    batch_size: int,
    progress: str | None = None,
    shard: Shard | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (inputs, labels or None) in a fixed order.

    `data` may be a tensor or array of inputs, an (inputs, labels) pair, a Dataset (items are
    inputs or (inputs, label)), or a DataLoader that does not shuffle (its batch size is used).
    With a `progress` description, the samples done are reported to the innermost pass observer
    (`learnscope.engine.observers.current()`: the job's progress display, if one is active).

    With a `shard`, only that rank's batches are yielded (batch i when i % world == rank, the
    batches cut as without a shard); its progress reports the rank's share, and only rank 0
    reports. Tensors and Datasets load only the rank's batches; a DataLoader's batches are all
    loaded (a loader cannot skip one without loading it) and the others' dropped. The set is
    empty (EmptyDatasetError) only when it is empty as a whole, not when a rank's share is.
    """
    show = progress and (shard is None or shard.rank == 0)
    observer = observers.current() if show else None
    if observer is None:
        yield from _batches(data, batch_size, shard)
        return
    total = _samples(data, batch_size, shard)
    if shard is not None and shard.world > 1:
        progress = f"{progress} (rank 0's share of {shard.world})"
    task = observer(progress, total)
    try:
        for inputs, labels in _batches(data, batch_size, shard):
            yield inputs, labels
            task.advance(inputs.shape[0])
    finally:
        task.finish()


def _samples(data: MeasurementData, batch_size: int, shard: Shard | None) -> int | None:
    """Samples a pass over `data` yields (the shard's share), None when unknown."""
    try:
        total = len(data[0]) if isinstance(data, (tuple, list)) else len(data)
        if isinstance(data, DataLoader):
            total = len(data.dataset)
            batch_size = data.batch_size
    except TypeError:
        return None
    if shard is None:
        return total
    if batch_size is None or (isinstance(data, DataLoader) and data.drop_last):
        return None
    return shard.samples(total, batch_size)


def _check_fixed_order(data: DataLoader) -> None:
    samplers = [data.sampler, getattr(data.batch_sampler, "sampler", None)]
    random_order = [s for s in samplers if isinstance(s, RANDOM_SAMPLERS)]
    if random_order:
        raise ValueError(
            f"the measurement DataLoader draws a random order "
            f"({type(random_order[0]).__name__}): a measurement needs a fixed order; pass "
            "the dataset itself or a DataLoader with shuffle=False"
        )


def _batches(
    data: MeasurementData, batch_size: int, shard: Shard | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    whole = None  # samples in the whole set (all ranks), when known without loading it
    anything = [False]  # when streamed: did any batch (this rank's or not) hold samples
    if isinstance(data, DataLoader):
        _check_fixed_order(data)
        batches = _owned(iter(data), shard, anything)
    elif isinstance(data, Dataset) and shard is not None and not isinstance(
            data, IterableDataset):
        whole = len(data)
        plan = BatchSampler(SequentialSampler(range(whole)), batch_size, drop_last=False)
        mine = [indices for batch, indices in enumerate(plan) if shard.owns(batch)]
        batches = iter(DataLoader(data, batch_sampler=mine)) if mine else iter(())
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
        batches = _owned(iter(loader), shard, anything)
    elif isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(
                f"expected an (inputs, labels) pair, got a {type(data).__name__} of "
                f"{len(data)} items"
            )
        all_inputs, all_labels = _as_tensor(data[0]), _as_tensor(data[1])
        if all_labels.shape[:1] != all_inputs.shape[:1]:
            raise ValueError(
                f"labels do not match inputs: {tuple(all_inputs.shape)} inputs but labels of "
                f"shape {tuple(all_labels.shape)}; expected one label per sample, shape "
                f"({all_inputs.shape[0]},)"
            )
        whole = all_inputs.shape[0]
        batches = _slices(all_inputs, all_labels, batch_size, shard)
    else:
        all_inputs = _as_tensor(data)
        whole = all_inputs.shape[0]
        batches = _slices(all_inputs, None, batch_size, shard)
    seen = 0
    for batch in batches:
        inputs, labels = _split_batch(batch)
        if inputs.shape[0] == 0:
            continue
        seen += inputs.shape[0]
        yield inputs, labels
    if seen == 0 and (shard is None or whole == 0 or (whole is None and not anything[0])):
        raise EmptyDatasetError(
            "the measurement dataset is empty (0 samples); pass the training set (or the part "
            "of it you want measured)"
        )


def _owned(batches: Iterator, shard: Shard | None, anything: list[bool]) -> Iterator:
    """The shard's batches of an iterator over every batch (all of them without a shard);
    sets anything[0] when any batch, the shard's or not, holds samples."""
    for batch, item in enumerate(batches):
        if shard is None:
            yield item
            continue
        anything[0] = anything[0] or _split_batch(item)[0].shape[0] > 0
        if shard.owns(batch):
            yield item


def check_batch_statistics(model: nn.Module, batch_samples: int, batch_size: int) -> None:
    """BatchNorm in train mode cannot normalise a batch of one sample: say how to avoid it."""
    if batch_samples > 1:
        return
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()):
        raise ValueError(
            f"a measurement batch has a single sample (batch_size={batch_size}; the dataset "
            "leaves one sample for the last batch), and BatchNorm in train mode needs at least "
            "two; choose a batch_size that does not leave a remainder of 1, or batchnorm='eval'"
        )


def check_labels(labels: torch.Tensor | None, n: int) -> torch.Tensor:
    """Validate a batch's labels: one non-negative integer class index per sample."""
    if labels is None:
        raise ValueError(
            "labels were requested but the data has none; pass (inputs, labels) or a dataset "
            "whose items are (input, label)"
        )
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(
            f"labels of shape {tuple(labels.shape)} do not match a batch of {n} samples; "
            f"expected integer class indices of shape ({n},)"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"labels must be >= 0 class indices, found {int(labels.min())}")
    return labels
