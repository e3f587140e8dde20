"""The trajectories of several networks projected into one common map
(:func:`project_trajectories`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from learnscope.trajectory.projections.base import _check_input, _row_slices
from learnscope.trajectory.projections.registry import make_projection


def project_trajectories(
    projection: BaseEstimator | str,
    trajectories: Sequence[Any],
    fit_on: str = "all",
) -> list[np.ndarray]:
    """Project the weight trajectories of several networks into one common map.

    trajectories: one (n_i, d) array per network (same d). fit_on="all" fits on all snapshots
    of all networks together (``fit_transform`` of their row concatenation, split back per
    network: t-SNE and UMAP are optimised once, with every point in the map); fit_on="first"
    fits on ``trajectories[0]`` only (the seed's ``train_projection_model_on_first_only``) and
    transforms each network, so the other networks are placed into the first one's map without
    influencing it. ``projection`` (an estimator, fitted in place so that it can be saved
    afterwards, or a name for :func:`make_projection`). Returns one (n_i, n_components) float32
    array per network. The concatenation for fit_on="all" is one float32 copy of all snapshots.
    """
    if fit_on not in ("all", "first"):
        raise ValueError(f"fit_on must be 'all' or 'first', got {fit_on!r}")
    if isinstance(projection, str):
        projection = make_projection(projection)
    if isinstance(trajectories, np.ndarray) and trajectories.ndim != 3:
        raise TypeError("trajectories must be a list of (n_i, d) arrays, one per network")
    arrays = [_check_input(t, what=f"network {i}") for i, t in enumerate(trajectories)]
    if not arrays:
        raise ValueError("trajectories is empty: pass one (n_snapshots, n_parameters) per network")
    d = arrays[0].shape[1]
    for i, a in enumerate(arrays[1:], start=1):
        if a.shape[1] != d:
            raise ValueError(
                f"network {i} has {a.shape[1]} parameters per snapshot, network 0 has {d}; "
                "a common map needs networks of the same architecture"
            )
    if fit_on == "first":
        projection.fit(arrays[0])
        return [np.asarray(projection.transform(a), dtype=np.float32) for a in arrays]
    sizes = [len(a) for a in arrays]
    if len(arrays) == 1:
        joined = arrays[0]
    else:
        joined = np.empty((sum(sizes), d), dtype=np.float32)
        for a, start in zip(arrays, np.cumsum([0, *sizes[:-1]]), strict=True):
            for rows in _row_slices(*a.shape):
                joined[start + rows.start:start + rows.stop] = a[rows]
    out = np.asarray(projection.fit_transform(joined), dtype=np.float32)
    return np.split(out, np.cumsum(sizes)[:-1])
