"""scikit-learn's handwritten digits: 1,797 8x8 images, 10 classes, embedded (no download)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset


def load_digits(
    *, test_fraction: float = 0.2, seed: int = 0, flatten: bool = False
) -> tuple[TensorDataset, TensorDataset]:
    """Stratified train/test split of the digits, standardised with the training statistics.

    Args:
        test_fraction: share of samples held out for testing.
        seed: seed of the split.
        flatten: inputs as (n, 64) vectors instead of (n, 1, 8, 8) images.

    Returns:
        (train, test) TensorDatasets of float32 inputs and int64 labels.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    bunch = sklearn_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        bunch.data, bunch.target, test_size=test_fraction, random_state=seed, stratify=bunch.target
    )
    mean, std = x_train.mean(), x_train.std()
    shape = (-1, 64) if flatten else (-1, 1, 8, 8)

    def tensors(x, y) -> TensorDataset:
        inputs = torch.as_tensor((x - mean) / std, dtype=torch.float32).reshape(shape)
        return TensorDataset(inputs, torch.as_tensor(y, dtype=torch.int64))

    return tensors(x_train, y_train), tensors(x_test, y_test)
