"""Principal component analysis of weight snapshots (:class:`PCAProjection`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.utils.validation import check_is_fitted

from learnscope.trajectory.projections.base import (
    _check_input,
    _check_int,
    _Projection,
    _row_slices,
    _rows32,
    _seed,
    _to_float32,
)


class PCAProjection(_Projection):
    """Principal component analysis of the snapshots (scikit-learn's PCA / IncrementalPCA).

    solver:
        ``"full"``: exact SVD (``PCA(svd_solver="full")``); ``"randomized"``: randomized SVD
        (Halko et al.; accurate to float32 precision when the top components are separated from
        the rest, and much faster when n_parameters is large); ``"incremental"``:
        ``IncrementalPCA`` fed ``batch_size`` rows at a time (cast to float32 per batch), so a
        memmap is never loaded whole; ``"auto"``: randomized when n_parameters > 2000 and
        n_components < 0.8 * min(n_snapshots, n_parameters) (scikit-learn's own meaning of
        "small"), else full.
    batch_size:
        Rows per ``partial_fit`` for the incremental solver; default ``max(5 * n_components,
        256)``. A short last batch is merged into the one before (every batch needs at least
        n_components rows).

    Fitted: ``pca_`` (the scikit-learn estimator), ``solver_``, ``components_``, ``mean_``,
    ``explained_variance_``, ``explained_variance_ratio_``, ``singular_values_``,
    ``n_features_in_``. The full and randomized solvers need the snapshots in memory as float32
    (a float32 input, or a float32 memmap, is used without a copy).
    """

    _SOLVERS = ("auto", "full", "randomized", "incremental")

    def __init__(
        self,
        n_components: int = 2,
        solver: str = "auto",
        batch_size: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.n_components = n_components
        self.solver = solver
        self.batch_size = batch_size
        self.random_state = random_state

    def _resolve_solver(self, n: int, d: int, k: int) -> str:
        if self.solver not in self._SOLVERS:
            raise ValueError(f"solver must be one of {self._SOLVERS}, got {self.solver!r}")
        if self.solver != "auto":
            return self.solver
        return "randomized" if d > 2000 and k < 0.8 * min(n, d) else "full"

    def fit(self, X: Any, y: Any = None) -> PCAProjection:
        X = self._validate_fit(X)
        n, d = X.shape
        k = self._check_n_components(n, d)
        solver = self._resolve_solver(n, d, k)
        if solver == "incremental":
            batch = self.batch_size if self.batch_size is not None else max(5 * k, 256)
            batch = _check_int("batch_size", batch, k)
            model: PCA | IncrementalPCA = IncrementalPCA(n_components=k, batch_size=batch)
            starts = list(range(0, n, batch))
            if len(starts) > 1 and n - starts[-1] < k:
                starts.pop()  # the short tail joins the batch before it
            for start, stop in zip(starts, starts[1:] + [n], strict=True):
                model.partial_fit(_rows32(X, slice(start, stop)))
        else:
            X32, owned = _to_float32(X)
            model = PCA(n_components=k, svd_solver=solver, copy=not owned,
                        random_state=_seed(self.random_state))
            model.fit(X32)
        self.pca_ = model
        self.solver_ = solver
        self.n_features_in_ = d
        self.components_ = model.components_
        self.mean_ = model.mean_
        self.explained_variance_ = model.explained_variance_
        self.explained_variance_ratio_ = model.explained_variance_ratio_
        self.singular_values_ = model.singular_values_
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Coordinates along the principal components, (n, n_components) float32."""
        X = self._validate_transform(X)
        out = np.empty((len(X), self.components_.shape[0]), dtype=np.float32)
        for rows in _row_slices(*X.shape):
            out[rows] = self.pca_.transform(_rows32(X, rows))
        return out

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Snapshots (n, n_parameters) float32 reconstructed from principal coordinates."""
        check_is_fitted(self, "n_features_in_")
        Y = _check_input(X, what="the coordinates", n_features=self.components_.shape[0])
        return np.asarray(self.pca_.inverse_transform(Y.astype(np.float32)), dtype=np.float32)
