"""scikit-learn's handwritten digits: 1,797 8x8 images, 10 classes, embedded (no download)."""

from __future__ import annotations

import numpy as np
import torch

from learnscope.data.splits import Source


def read_digits(*, test_fraction: float = 0.2, split_seed: int = 0) -> Source:
    """The digits as (N, 1, 8, 8) images with values 0..16, split into train and test.

    The split is scikit-learn's stratified train_test_split; it depends on `split_seed` only,
    so the test set stays the same whatever the common `seed` option.

    Args:
        test_fraction: share of the samples held out for testing, in (0, 1).
        split_seed: seed of the train/test split.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = sklearn_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.data, bunch.target, test_size=test_fraction, random_state=split_seed,
        stratify=bunch.target,
    )

    def images(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(y, dtype=torch.int64)

    return Source(
        train_inputs=images(x_train),
        train_labels=labels(y_train),
        test_inputs=images(x_test),
        test_labels=labels(y_test),
        num_classes=10,
        scale=16.0,
        class_names=tuple(str(d) for d in range(10)),
    )
