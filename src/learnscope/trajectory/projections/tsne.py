"""t-SNE (openTSNE, extra ``tsne``), new snapshots placed against the fitted map
(:class:`TSNEProjection`). openTSNE is imported when a map is fitted."""

from __future__ import annotations

from typing import Any

import numpy as np

from learnscope.trajectory.projections.base import (
    _FittedEmbedding,
    _import_extra,
    _seed,
    _to_float32,
)


class TSNEProjection(_FittedEmbedding):
    """t-SNE (openTSNE), with new snapshots placed against the fitted map.

    perplexity: the effective number of neighbours; clipped to (n - 1) / 3 for small n (openTSNE
    needs 3 * perplexity < n), the value used is ``perplexity_``. The other parameters are
    openTSNE's (``n_iter`` optimisation steps after ``early_exaggeration_iter`` exaggerated ones,
    ``initialization="pca"`` for a reproducible, globally sensible start). The embedding is
    deterministic for a given random_state with ``n_jobs=1``.

    ``fit_transform(X)`` and ``transform(X)`` of the very data used in ``fit`` (recognised by a
    hash of its float32 values) return the fitted embedding ``embedding_``. Other snapshots go
    through openTSNE's ``TSNEEmbedding.transform``: each is placed by optimising only its own
    position against the fixed embedding (perplexity min(5, (n_fit - 1) / 3), as openTSNE
    recommends), so new points never move the map.

    Fitted: ``embedding_`` (n_fit, n_components) float32, ``tsne_embedding_`` (openTSNE's
    object, which keeps the fitted data for the neighbour search of ``transform``: a saved
    projection contains the fitted snapshots), ``perplexity_``, ``n_features_in_``.
    """

    def __init__(
        self,
        n_components: int = 2,
        perplexity: float = 30.0,
        learning_rate: float | str = "auto",
        n_iter: int = 500,
        early_exaggeration_iter: int = 250,
        initialization: str = "pca",
        metric: str = "euclidean",
        random_state: int | None = 0,
        n_jobs: int = 1,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.perplexity = perplexity
        self.learning_rate = learning_rate
        self.n_iter = n_iter
        self.early_exaggeration_iter = early_exaggeration_iter
        self.initialization = initialization
        self.metric = metric
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> TSNEProjection:
        openTSNE = _import_extra("openTSNE", "TSNEProjection", "tsne")
        X = self._validate_fit(X)
        n, d = X.shape
        k = self._check_n_components(n, d, upper=False)
        if not self.perplexity > 0:
            raise ValueError(f"perplexity must be > 0, got {self.perplexity!r}")
        self.perplexity_ = float(min(self.perplexity, (n - 1) / 3))
        X32, _ = _to_float32(X)
        tsne = openTSNE.TSNE(
            n_components=k, perplexity=self.perplexity_, learning_rate=self.learning_rate,
            n_iter=self.n_iter, early_exaggeration_iter=self.early_exaggeration_iter,
            initialization=self.initialization, metric=self.metric, n_jobs=self.n_jobs,
            random_state=_seed(self.random_state), verbose=self.verbose,
        )
        self.tsne_embedding_ = tsne.fit(X32)
        self._remember_fit(self.tsne_embedding_, X32)
        return self

    def _place(self, X: np.ndarray) -> np.ndarray:
        """Place rows other than the fitted ones against the fitted embedding."""
        n_fit = len(self.embedding_)
        X32, _ = _to_float32(X)
        placed = self.tsne_embedding_.transform(
            X32, perplexity=min(5.0, (n_fit - 1) / 3), k=min(25, n_fit)
        )
        return np.array(placed, dtype=np.float32)
