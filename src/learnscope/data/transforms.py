"""The operations every dataset shares: class subsets, stratified splits, subsampling, resizing,
normalisation, and the random crop + flip augmentation.

Index choices are seeded NumPy draws and always returned in ascending order, so the samples kept
stay in the dataset's own order (a fixed order for measurement passes).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

_RESIZE_CHUNK = 4096  # samples per interpolate call: bounds the temporary memory
_STATS_CHUNK = 2048  # samples per float64 chunk when computing statistics
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def select_classes(
    labels: torch.Tensor, classes: Sequence[int], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the samples whose label is in `classes`, and their new labels.

    New labels follow the order of `classes`: classes=(5, 7) maps 5 -> 0 and 7 -> 1.

    Args:
        labels: int64 labels in [0, num_classes).
        classes: original class indices to keep, unique, in the order of their new labels.
        num_classes: number of classes of the dataset.

    Returns:
        (indices in ascending order, relabelled labels of those samples).
    """
    check_classes(classes, num_classes)
    mapping = torch.full((num_classes,), -1, dtype=torch.int64)
    mapping[torch.as_tensor(list(classes), dtype=torch.int64)] = torch.arange(len(classes))
    new = mapping[labels]
    keep = torch.nonzero(new >= 0).flatten()
    return keep, new[keep]


def check_classes(classes: Sequence[int], num_classes: int) -> None:
    """Fail unless `classes` is a non-empty sequence of distinct class indices of the dataset."""
    values = list(classes) if not isinstance(classes, (str, bytes)) else None
    if not values or not all(isinstance(c, (int, np.integer)) for c in values):
        raise ValueError(
            f"classes must be a non-empty sequence of class indices, got {classes!r}; e.g. "
            "classes=[0, 1, 2, 3, 4]"
        )
    bad = [c for c in values if not 0 <= c < num_classes]
    if bad:
        raise ValueError(
            f"classes {bad} do not exist: the dataset has classes 0..{num_classes - 1}; "
            "pick class indices from that range"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"classes {values} lists a class twice; list each class once")


def stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held out), holding out `fraction` of the samples of every class.

    The held-out total is round(fraction * n) (halves up); it is shared among the classes in
    proportion to their sizes, the remainder going to the classes with the largest fractional
    shares, so each class gives floor or ceil of fraction * n_c samples.

    Args:
        labels: class label of each sample.
        fraction: share to hold out, in [0, 1).
        rng: generator that picks which samples of each class are held out.

    Returns:
        (kept indices, held-out indices), both ascending and disjoint.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"a split fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    ideal = fraction * counts
    take = np.floor(ideal).astype(np.int64)
    short = _round_half_up(fraction * len(labels)) - int(take.sum())
    take[np.argsort(-(ideal - take), kind="stable")[:short]] += 1
    held = [
        rng.permutation(np.flatnonzero(labels == c))[:k]
        for c, k in zip(classes, take, strict=True)
    ]
    held_idx = np.sort(np.concatenate(held)) if held else np.empty(0, dtype=np.int64)
    kept_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
    return kept_idx, held_idx


def geometric_counts(head: int, ratio: float, num_classes: int) -> np.ndarray:
    """Long-tailed class sizes: n_c = round(head * ratio ** (-c / (C - 1))), at least 1.

    Class 0 keeps `head` samples, the last class head / ratio, and the sizes in between fall
    geometrically (the profile of the long-tailed CIFAR benchmarks, imbalance factor = ratio).
    """
    if num_classes == 1:
        return np.array([head], dtype=np.int64)
    steps = np.arange(num_classes) / (num_classes - 1)
    return np.maximum(1, np.floor(head * float(ratio) ** -steps + 0.5)).astype(np.int64)


def class_sample_counts(
    available: np.ndarray,
    *,
    per_class: int | None = None,
    class_counts: Sequence[int] | None = None,
    imbalance: float | None = None,
) -> np.ndarray | None:
    """How many training samples to keep of each class (None: keep them all).

    Args:
        available: samples available per class.
        per_class: the same number for every class (with `imbalance`: the size of class 0).
        class_counts: an explicit number per class (exclusive with the other two).
        imbalance: ratio >= 1 of the largest to the smallest class; sizes fall geometrically
            from class 0 (`per_class`, or the smallest available class size) to the last.

    Raises:
        ValueError: a request is malformed or asks for more samples than a class has.
    """
    num_classes = len(available)
    if class_counts is not None:
        if per_class is not None or imbalance is not None:
            raise ValueError(
                "class_counts gives every class size itself; do not combine it with per_class "
                "or imbalance"
            )
        counts = np.asarray(list(class_counts))
        if counts.shape != (num_classes,) or not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(
                f"class_counts must list one integer per class ({num_classes} after the class "
                f"selection), got {list(class_counts)!r}"
            )
        if (counts < 0).any():
            raise ValueError(f"class_counts must be >= 0, got {counts.tolist()}")
    elif imbalance is not None:
        if not isinstance(imbalance, numbers.Real) or not imbalance >= 1.0:
            raise ValueError(
                f"imbalance is the ratio of the largest to the smallest class and must be a "
                f"number >= 1, got {imbalance!r}; e.g. imbalance=100"
            )
        head = _check_per_class(per_class) if per_class is not None else int(available.min())
        counts = geometric_counts(head, imbalance, num_classes)
    elif per_class is not None:
        counts = np.full(num_classes, _check_per_class(per_class), dtype=np.int64)
    else:
        return None
    short = np.flatnonzero(counts > available)
    if short.size:
        detail = ", ".join(
            f"class {c}: {int(counts[c])} requested, {int(available[c])} available" for c in short
        )
        raise ValueError(
            f"not enough training samples ({detail}). Available counts are what is left after "
            "the class selection and the validation split; ask for fewer samples, or lower "
            "val_fraction"
        )
    return counts.astype(np.int64)


def _check_per_class(per_class: int) -> int:
    if not isinstance(per_class, (int, np.integer)) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    return int(per_class)


def subsample(labels: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ascending indices of `counts[c]` random samples of each class c.

    Each class is drawn as a prefix of one seeded permutation, so for a fixed generator state a
    smaller request is a subset of a larger one.
    """
    labels = np.asarray(labels)
    chosen = [
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(counts.tolist())
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def resize(inputs: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Resize (N, C, *spatial) float inputs to `size` with torch's interpolate.

    Images use bilinear interpolation with antialiasing (so downsampling averages instead of
    aliasing, like PIL's resize); 1-D signals use linear interpolation (torch has no antialias
    there); corners are not aligned.

    Args:
        inputs: float tensor with a channel axis and 1 to 3 spatial axes.
        size: an int for every spatial axis, or one size per spatial axis.
    """
    spatial = inputs.shape[2:]
    if inputs.dim() < 3 or len(spatial) > 3:
        raise ValueError(
            f"resize needs inputs with a channel axis and 1-3 spatial axes, e.g. (3, 32, 32) "
            f"images or (1, 40) signals; these samples have shape {tuple(inputs.shape[1:])}"
        )
    target = (size,) * len(spatial) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(target) != len(spatial) or not all(
        isinstance(s, (int, np.integer)) and s >= 1 for s in target
    ):
        raise ValueError(
            f"resize must be a positive int or {len(spatial)} positive ints (one per spatial "
            f"axis of samples of shape {tuple(inputs.shape[1:])}), got {size!r}"
        )
    target = tuple(int(s) for s in target)
    if target == tuple(spatial):
        return inputs
    mode = _MODES[len(spatial)]
    chunks = [
        F.interpolate(
            inputs[start:start + _RESIZE_CHUNK], size=target, mode=mode, align_corners=False,
            antialias=mode == "bilinear",
        )
        for start in range(0, inputs.shape[0], _RESIZE_CHUNK)
    ]
    if not chunks:
        return inputs.new_empty((0, inputs.shape[1], *target))
    return torch.cat(chunks)


def channel_stats(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) standard deviation of (N, C, ...) inputs, in float64.

    The channel is axis 1: the colour channel of images, the feature of (N, d) vectors. A
    channel without spread gets std 1, so normalising leaves it centred instead of dividing by 0.
    """
    if inputs.shape[0] == 0:
        raise ValueError("cannot compute normalisation statistics of an empty training set")
    axes = [0, *range(2, inputs.dim())]
    shape = (1, -1) + (1,) * (inputs.dim() - 2)
    count = inputs.numel() // inputs.shape[1]
    chunks = inputs.split(_STATS_CHUNK)  # two passes in float64, chunked to bound memory
    mean = sum(chunk.double().sum(axes) for chunk in chunks) / count
    square = sum((chunk.double() - mean.view(shape)).square().sum(axes) for chunk in chunks)
    std = (square / count).sqrt()
    std[std == 0] = 1.0
    return mean, std


def normalize_(inputs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(inputs - mean) / std per channel (axis 1), in place; returns `inputs`."""
    shape = (1, -1) + (1,) * (inputs.dim() - 2)
    inputs.sub_(mean.to(inputs.dtype).view(shape)).div_(std.to(inputs.dtype).view(shape))
    return inputs


def crop_flip(
    image: torch.Tensor,
    top: int,
    left: int,
    flip: bool,
    padding: int,
    fill: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """The (H, W) window at (top, left) of `image` padded by `padding`, mirrored if `flip`.

    Pads the (C, H, W) image on every side with `fill` (a number, or one value per channel),
    crops H x W starting at row `top`, column `left` of the padded image
    (0 <= top, left <= 2 * padding), then flips it left-right if `flip`.
    """
    return crop_flip_batch(image[None], [top], [left], [flip], padding, fill)[0]


def crop_flip_batch(
    images: torch.Tensor,
    tops: Sequence[int],
    lefts: Sequence[int],
    flips: Sequence[bool],
    padding: int,
    fill: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """`crop_flip` for a batch of (N, C, H, W) images, one (top, left, flip) per image."""
    n, channels, height, width = images.shape
    tops, lefts = [int(t) for t in tops], [int(v) for v in lefts]
    if not all(0 <= v <= 2 * padding for v in tops + lefts) or not len(tops) == len(lefts) == n:
        raise ValueError(
            f"need one top and one left offset in 0..{2 * padding} per image ({n}), got "
            f"tops={tops}, lefts={lefts}"
        )
    padded = images.new_empty((n, channels, height + 2 * padding, width + 2 * padding))
    fill = torch.as_tensor(fill, dtype=images.dtype).reshape(1, -1, 1, 1)
    padded.copy_(fill.expand_as(padded))
    padded[:, :, padding:padding + height, padding:padding + width] = images
    out = torch.stack([
        padded[i, :, top:top + height, left:left + width]
        for i, (top, left) in enumerate(zip(tops, lefts, strict=True))
    ])
    mirror = torch.as_tensor(flips, dtype=torch.bool).reshape(n)
    if mirror.any():
        out[mirror] = out[mirror].flip(-1)
    return out


class AugmentedDataset(Dataset):
    """Images with a fresh random crop (zero-padded by `padding`) and horizontal flip per access.

    The standard CIFAR augmentation (random crop with padding 4, then flip with probability
    1/2). Offsets and flips are drawn from `generator`, or from torch's global RNG when it is
    None: then torch.manual_seed makes a run repeatable and each DataLoader worker process draws
    its own stream (a generator object would be copied into every worker, repeating the same
    augmentations). A DataLoader fetches whole batches through `__getitems__`, which crops the
    batch in one go (about 2x faster than item by item).

    Args:
        images: (N, C, H, W) float tensor.
        labels: (N,) int64 tensor.
        padding: pixels of padding on each side before cropping back to H x W.
        flip: mirror left-right with probability 1/2.
        fill: value of the padding, a number or one per channel. For normalised images pass
            the normalised value of black, -mean / std, so the padding is what padding the raw
            image with zeros would give (as torchvision's RandomCrop before Normalize).
        flatten: return each image as a vector of C*H*W values.
        generator: source of randomness (None: torch's global RNG).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        padding: int = 4,
        flip: bool = True,
        fill: float | Sequence[float] | torch.Tensor = 0.0,
        flatten: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if images.dim() != 4:
            raise ValueError(
                f"augmentation (random crop + flip) needs images of shape (N, C, H, W), got "
                f"{tuple(images.shape)}; do not pass augment=True for non-image data"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}; expected "
                f"({images.shape[0]},)"
            )
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.images = images
        self.labels = labels
        self.padding = int(padding)
        self.flip = flip
        self.fill = torch.as_tensor(fill, dtype=images.dtype)
        if self.fill.numel() not in (1, images.shape[1]):
            raise ValueError(
                f"fill must be one number or one per channel ({images.shape[1]}), got "
                f"{self.fill.numel()} values"
            )
        self.flatten = flatten
        self.generator = generator

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Augmented (input, label) pairs of several samples, each with its own draw."""
        n = len(indices)
        offsets = torch.randint(0, 2 * self.padding + 1, (2, n), generator=self.generator)
        if self.flip:
            flips = torch.randint(0, 2, (n,), generator=self.generator).bool()
        else:
            flips = torch.zeros(n, dtype=torch.bool)
        index = torch.as_tensor(indices, dtype=torch.int64)
        images = crop_flip_batch(
            self.images[index], offsets[0].tolist(), offsets[1].tolist(), flips, self.padding,
            self.fill,
        )
        if self.flatten:
            images = images.reshape(n, -1)
        return list(zip(images.unbind(0), self.labels[index].unbind(0), strict=True))
