"""The measurement pass, shared by every probe: a side-effect-free walk over a fixed dataset.

Measuring must never change training. So a pass runs on a *copy* of the model (BatchNorm in train
mode uses batch statistics and would otherwise update the trained model's running statistics),
without gradients, over the data in a fixed order and batch size, and restores the torch, CUDA,
NumPy and Python random states afterwards (a DataLoader draws a seed from torch's RNG, for one).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

BATCHNORM_MODES = ("train", "eval")
RANDOM_SAMPLERS = (RandomSampler, SubsetRandomSampler, WeightedRandomSampler)

MeasurementData = torch.Tensor | tuple | list | Dataset | DataLoader | np.ndarray


class EmptyDatasetError(ValueError):
    """The measurement dataset has no samples."""


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


def measurement_copy(model: nn.Module, batchnorm: str = "train") -> nn.Module:
    """A frozen copy of `model` for measuring: eval mode (no dropout), BatchNorm as requested.

    Args:
        model: the trained model; it is not modified.
        batchnorm: "train" (normalise with each batch's statistics, as the activation-pattern
            paper does) or "eval" (use the running statistics).
    """
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be 'train' or 'eval', got {batchnorm!r}")
    try:
        clone = copy.deepcopy(model)
    except Exception as error:  # noqa: BLE001 - report any copy failure with the fix
        raise TypeError(
            f"cannot copy {type(model).__name__} for a side-effect-free measurement pass "
            f"({error}); make the model deep-copyable (copy.deepcopy(model) must work)"
        ) from error
    clone.eval()
    if batchnorm == "train":
        for module in clone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train()
    for parameter in clone.parameters():
        parameter.requires_grad_(False)
    return clone


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


def _slices(inputs: torch.Tensor, labels: torch.Tensor | None, batch_size: int) -> Iterator:
    for start in range(0, inputs.shape[0], batch_size):
        stop = start + batch_size
        yield inputs[start:stop] if labels is None else (inputs[start:stop], labels[start:stop])


def iter_batches(
    data: MeasurementData, batch_size: int, progress: str | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (inputs, labels or None) in a fixed order.

    `data` may be a tensor or array of inputs, an (inputs, labels) pair, a Dataset (items are
    inputs or (inputs, label)), or a DataLoader that does not shuffle (its batch size is used).
    With a `progress` description, the samples done are reported to the active progress display
    of the job (learnscope.progress.current()), if there is one.
    """
    from learnscope import progress as progress_display

    reporter = progress_display.current() if progress else None
    if reporter is None:
        yield from _batches(data, batch_size)
        return
    try:
        total = len(data[0]) if isinstance(data, (tuple, list)) else len(data)
        if isinstance(data, DataLoader):
            total = len(data.dataset)
    except TypeError:
        total = None
    task = reporter.task(progress, total, transient=True)
    try:
        for inputs, labels in _batches(data, batch_size):
            yield inputs, labels
            task.advance(inputs.shape[0])
    finally:
        task.finish()


def _batches(
    data: MeasurementData, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(data, DataLoader):
        samplers = [data.sampler, getattr(data.batch_sampler, "sampler", None)]
        random_order = [s for s in samplers if isinstance(s, RANDOM_SAMPLERS)]
        if random_order:
            raise ValueError(
                f"the measurement DataLoader draws a random order "
                f"({type(random_order[0]).__name__}): a measurement needs a fixed order; pass "
                "the dataset itself or a DataLoader with shuffle=False"
            )
        batches = iter(data)
    elif isinstance(data, Dataset):
        batches = iter(DataLoader(data, batch_size=batch_size, shuffle=False))
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
        batches = _slices(all_inputs, all_labels, batch_size)
    else:
        batches = _slices(_as_tensor(data), None, batch_size)
    seen = 0
    for batch in batches:
        inputs, labels = _split_batch(batch)
        if inputs.shape[0] == 0:
            continue
        seen += inputs.shape[0]
        yield inputs, labels
    if seen == 0:
        raise EmptyDatasetError(
            "the measurement dataset is empty (0 samples); pass the training set (or the part "
            "of it you want measured)"
        )


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


def evaluate(model: nn.Module, data: MeasurementData | None, batch_size: int = 512,
             ) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of `model` on labelled `data` (eval mode).

    The model is switched to eval mode for the pass (running BatchNorm statistics, no dropout)
    and every module back to its own mode afterwards; nothing else about it changes and the RNG
    states are restored, so a training run is unaffected. Returns {} for None or an empty
    dataset.
    """
    if data is None:
        return {}
    device = model_device(model)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        with torch.no_grad(), preserved_rng():
            for inputs, labels in iter_batches(data, batch_size):
                if labels is None:
                    raise ValueError(
                        "evaluating accuracy and loss needs labels: pass (inputs, labels) or a "
                        "Dataset of (input, label) items"
                    )
                inputs, labels = inputs.to(device), labels.to(device).long()
                logits = model(inputs)
                total_loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
                correct += int((logits.argmax(1) == labels).sum())
                count += labels.shape[0]
    except EmptyDatasetError:
        return {}
    finally:
        for module, training in modes:
            module.training = training
    if count == 0:
        return {}
    return {"loss": total_loss / count, "accuracy": correct / count}
