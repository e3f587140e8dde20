"""UMAP (umap-learn, extra ``umap``), new snapshots placed against the fitted map
(:class:`UMAPProjection`). umap-learn is imported when a map is fitted."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from learnscope.trajectory.projections.base import (
    _check_int,
    _FittedEmbedding,
    _import_extra,
    _seed,
    _to_float32,
)


class UMAPProjection(_FittedEmbedding):
    """UMAP (umap-learn).

    n_neighbors is clipped to n - 1 for small n (value used: ``n_neighbors_``); with fewer than
    n_components + 3 snapshots the spectral initialisation is impossible and a random one (from
    random_state) is used. UMAP needs at least 3 snapshots. A fixed random_state makes UMAP run
    single-threaded and deterministic. ``transform`` of the fitted data returns ``embedding_``;
    other snapshots go through ``UMAP.transform`` (placed against the fixed map). The first fit
    and the first transform of new data in a process compile numba code (~10-20 s each).

    Fitted: ``embedding_`` (float32), ``umap_`` (the umap-learn estimator, which keeps the
    fitted data), ``n_neighbors_``, ``n_features_in_``.
    """

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        random_state: int | None = 0,
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> UMAPProjection:
        umap = _import_extra("umap", "UMAPProjection", "umap")
        X = self._validate_fit(X, min_samples=3)
        n, d = X.shape
        k = self._check_n_components(n, d, upper=False)
        self.n_neighbors_ = min(_check_int("n_neighbors", self.n_neighbors, 2), n - 1)
        X32, _ = _to_float32(X)
        seed = _seed(self.random_state)
        model = umap.UMAP(
            n_components=k, n_neighbors=self.n_neighbors_, min_dist=self.min_dist,
            init="spectral" if n >= k + 3 else "random", random_state=seed,
            transform_seed=seed, n_jobs=1,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
            model.fit(X32)
        self.umap_ = model
        self._remember_fit(model.embedding_, X32)
        return self

    def _place(self, X: np.ndarray) -> np.ndarray:
        """Place rows other than the fitted ones against the fitted embedding."""
        X32, _ = _to_float32(X)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
            return np.array(self.umap_.transform(X32), dtype=np.float32)
