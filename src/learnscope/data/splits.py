"""From what a dataset reader found (a Source) to the splits an experiment uses (DataSplits).

Order of the steps, the same for every dataset:
  1. `classes`: keep a subset of classes (train and test), relabelled 0..k-1;
  2. `val_fraction`: hold out a stratified, seeded validation split of the training set;
  3. `per_class` / `class_counts` / `imbalance`: subsample what is left for training;
  4. raw values to float (uint8 images to [0, 1]), `resize`;
  5. `normalize` with per-channel statistics of the final training split (applied to all splits);
  6. `augment` (training split only, at access time), `flatten`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from learnscope.data import transforms as T


@dataclass
class Source:
    """A dataset as its reader found it, before the common options are applied.

    Inputs are (N, *sample_shape) tensors: (C, H, W) images, (C, L) signals or (d,) vectors;
    uint8 or float. Dividing them by `scale` maps them to [0, 1] (255 for 8-bit images).
    """

    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    test_inputs: torch.Tensor | None
    test_labels: torch.Tensor | None
    num_classes: int
    scale: float = 1.0
    class_names: tuple[str, ...] | None = None


@dataclass
class DataSplits:
    """The splits of one dataset, ready for training and measurement.

    Attributes:
        train: training set; yields (input, label). Random crop + flip when augment=True
            (an AugmentedDataset), otherwise a TensorDataset.
        val: stratified validation split held out of the training set (TensorDataset), or None
            when val_fraction=0 (or when it rounds to no sample on a tiny set).
        test: test set (TensorDataset), or None if the dataset has none.
        measure: the training samples of `train`, same order, never augmented (TensorDataset):
            what activation-pattern and separation passes go over.
        num_classes: classes after the class selection (labels are 0..num_classes-1).
        input_shape: shape of one input as the splits yield it, e.g. (3, 32, 32) or (3072,).
        name: registry name of the dataset.
        class_names: names of the classes in label order, where the dataset has them.
        normalization: (mean, std) per channel subtracted and divided, or None.
        config: every option the splits were built with, defaults included (for run configs).
    """

    train: Dataset
    val: TensorDataset | None
    test: TensorDataset | None
    measure: TensorDataset
    num_classes: int
    input_shape: tuple[int, ...]
    name: str
    class_names: tuple[str, ...] | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    config: dict[str, Any] = field(default_factory=dict)


def make_splits(
    source: Source,
    name: str,
    *,
    per_class: int | None = None,
    class_counts: Sequence[int] | None = None,
    imbalance: float | None = None,
    classes: Sequence[int] | None = None,
    resize: int | Sequence[int] | None = None,
    normalize: bool = True,
    augment: bool = False,
    val_fraction: float = 0.01,
    flatten: bool = False,
    seed: int = 0,
    config: dict[str, Any] | None = None,
) -> DataSplits:
    """Apply the common options (see `learnscope.data.load`) to a Source."""
    train_x, train_y = source.train_inputs, source.train_labels
    test_x, test_y = source.test_inputs, source.test_labels
    num_classes, names = source.num_classes, source.class_names
    if augment and train_x.dim() != 4:
        raise ValueError(
            f"augment=True applies a random crop and flip to images of shape (C, H, W); "
            f"{name} samples have shape {tuple(train_x.shape[1:])}; leave augment off"
        )

    if classes is not None:
        keep, train_y = T.select_classes(train_y, classes, num_classes)
        train_x = train_x[keep]
        if test_y is not None:
            keep, test_y = T.select_classes(test_y, classes, num_classes)
            test_x = test_x[keep]
        names = tuple(names[c] for c in classes) if names else None
        num_classes = len(classes)

    # Independent streams: changing the subsample request never moves the validation split.
    val_rng, sample_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    val_x = val_y = None
    if val_fraction:
        kept, held = T.stratified_split(train_y.numpy(), val_fraction, val_rng)
        if held.size:  # a tiny set can round to no validation sample: then val is None
            val_x, val_y = train_x[held], train_y[held]
            train_x, train_y = train_x[kept], train_y[kept]

    available = np.bincount(train_y.numpy(), minlength=num_classes)
    counts = T.class_sample_counts(
        available, per_class=per_class, class_counts=class_counts, imbalance=imbalance
    )
    if counts is not None:
        chosen = torch.as_tensor(T.subsample(train_y.numpy(), counts, sample_rng))
        train_x, train_y = train_x[chosen], train_y[chosen]

    def to_float(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        x = x.to(torch.float32, copy=True)  # normalised in place below: never touch the source
        if source.scale != 1.0:
            x /= source.scale
        return T.resize(x, resize) if resize is not None else x

    train_x, val_x, test_x = to_float(train_x), to_float(val_x), to_float(test_x)

    normalization = None
    fill: float | torch.Tensor = 0.0
    if normalize:
        mean, std = T.channel_stats(train_x)
        for x in (train_x, val_x, test_x):
            if x is not None:
                T.normalize_(x, mean, std)
        normalization = (tuple(mean.tolist()), tuple(std.tolist()))
        fill = -mean / std  # where raw black (0) lands: augmentation pads with it

    def vectors(x: torch.Tensor | None) -> torch.Tensor | None:
        return x.reshape(x.shape[0], math.prod(x.shape[1:])) if flatten and x is not None else x

    measure = TensorDataset(vectors(train_x), train_y)
    if augment:
        train: Dataset = T.AugmentedDataset(
            train_x, train_y, padding=4, flip=True, fill=fill, flatten=flatten
        )
    else:
        train = TensorDataset(*measure.tensors)
    return DataSplits(
        train=train,
        val=TensorDataset(vectors(val_x), val_y) if val_x is not None else None,
        test=TensorDataset(vectors(test_x), test_y) if test_x is not None else None,
        measure=measure,
        num_classes=num_classes,
        input_shape=tuple(measure.tensors[0].shape[1:]),
        name=name,
        class_names=names,
        normalization=normalization,
        config=dict(config or {}),
    )

