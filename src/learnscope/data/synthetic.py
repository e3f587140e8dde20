"""Gaussian class clusters of any input shape and class count, seeded: for tests and benchmarks.

Class c has mean `separation * u_c`, with u_c a random unit vector, and unit isotropic noise:
x = separation * u_c + N(0, I). Two class means are about separation * sqrt(2) apart in units of
the noise, so `separation` sets how easy the classes are to tell apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from learnscope.data.splits import Source
from learnscope.data.transforms import stratified_split


def read_synthetic(
    *,
    num_samples: int = 1000,
    num_classes: int = 10,
    shape: Sequence[int] = (3, 32, 32),
    separation: float = 4.0,
    test_fraction: float = 0.2,
    data_seed: int = 0,
) -> Source:
    """Generate Gaussian clusters as float inputs of the given shape.

    Args:
        num_samples: total samples (train + test), spread evenly over the classes (the first
            num_samples % num_classes classes get one more).
        num_classes: number of clusters (classes), >= 1.
        shape: shape of one input, e.g. (3, 32, 32) images, (1, 40) signals or (20,) vectors.
        separation: distance of each class mean from the origin, in noise standard deviations.
        test_fraction: stratified share of the samples kept for testing, in [0, 1); 0 gives no
            test split.
        data_seed: seed of the means, the noise, the sample order and the test split.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ValueError(f"shape must be positive ints, e.g. (3, 32, 32), got {shape!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if not isinstance(num_samples, int) or num_samples < num_classes:
        raise ValueError(
            f"num_samples must be an int >= num_classes ({num_classes}) so every class has a "
            f"sample, got {num_samples!r}"
        )
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(data_seed)
    dim = math.prod(shape)
    directions = rng.standard_normal((num_classes, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    labels = rng.permutation(np.arange(num_samples) % num_classes)
    inputs = separation * directions[labels] + rng.standard_normal((num_samples, dim))
    x = torch.as_tensor(inputs, dtype=torch.float32).reshape(num_samples, *shape)
    y = torch.as_tensor(labels, dtype=torch.int64)
    if test_fraction == 0.0:
        return Source(x, y, None, None, num_classes=num_classes)
    train, test = (torch.as_tensor(i) for i in stratified_split(labels, test_fraction, rng))
    return Source(x[train], y[train], x[test], y[test], num_classes=num_classes)
