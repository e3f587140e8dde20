"""What every projection shares: snapshot-matrix checks, chunked float32 access, seeds, optional
imports, and the two base classes (:class:`_Projection`, :class:`_FittedEmbedding`)."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

# Rows are processed in chunks of about this many values (64 MiB as float32).
_CHUNK_VALUES = 1 << 24


def _row_slices(n_rows: int, n_cols: int, values: int = _CHUNK_VALUES) -> Iterator[slice]:
    """Consecutive row slices of about `values` values each (at least one row)."""
    step = max(1, values // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def _as_array(X: Any, what: str) -> np.ndarray:
    """X as a NumPy array without copying arrays and memmaps; torch tensors are moved to CPU."""
    if hasattr(X, "detach") and hasattr(X, "cpu"):
        X = X.detach().cpu().numpy()
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"{what} must hold real numbers, got dtype {X.dtype}")
    return X


def _check_input(
    X: Any, *, what: str = "X", min_samples: int = 1, n_features: int | None = None
) -> np.ndarray:
    """Validate a snapshot matrix (shape, size, feature count, finiteness) without copying it."""
    X = _as_array(X, what)
    if X.ndim != 2:
        raise ValueError(
            f"{what} must be a 2-D array (n_snapshots, n_parameters), got shape {X.shape}; "
            "flatten each snapshot first, e.g. X.reshape(len(X), -1)"
        )
    n, d = X.shape
    if n < min_samples:
        raise ValueError(
            f"{what} has {n} snapshot(s), at least {min_samples} are needed; "
            "record more snapshots along the trajectory"
        )
    if d < 1:
        raise ValueError(f"{what} has no features (shape {X.shape})")
    if n_features is not None and d != n_features:
        raise ValueError(
            f"{what} has {d} features per snapshot but the projection was fitted on {n_features}; "
            "pass snapshots of the same architecture, flattened the same way"
        )
    if X.dtype.kind == "f":
        n_nan = n_inf = 0
        first: tuple[int, int] | None = None
        for rows in _row_slices(n, d):
            chunk = np.asarray(X[rows])
            bad = ~np.isfinite(chunk)
            if bad.any():
                nan = int(np.isnan(chunk).sum())
                n_nan += nan
                n_inf += int(bad.sum()) - nan
                if first is None:
                    r, c = np.argwhere(bad)[0]
                    first = (rows.start + int(r), int(c))
        if first is not None:
            raise ValueError(
                f"{what} contains {n_nan} NaN and {n_inf} infinite value(s) (first at snapshot "
                f"{first[0]}, parameter {first[1]}); snapshots of a diverged run cannot be "
                "projected: drop those snapshots (rows) or fix the training run"
            )
    return X


def _rows32(X: np.ndarray, rows: slice) -> np.ndarray:
    """Rows of X as a float32 array (a view when X already is float32)."""
    return np.asarray(X[rows], dtype=np.float32)


def _to_float32(X: np.ndarray) -> tuple[np.ndarray, bool]:
    """X as float32, cast chunk-wise; also says whether a copy was made (the caller owns it)."""
    if X.dtype == np.float32:
        return np.asarray(X), False
    out = np.empty(X.shape, dtype=np.float32)
    for rows in _row_slices(*X.shape):
        out[rows] = X[rows]
    return out, True


def _fingerprint(X: np.ndarray) -> str:
    """Hash of the float32 values and the shape: recognises the data a projection was fitted on."""
    digest = hashlib.sha256(repr(X.shape).encode())  # SHA-NI: ~2 GB/s
    for rows in _row_slices(*X.shape):
        digest.update(memoryview(np.ascontiguousarray(_rows32(X, rows))).cast("B"))
    return digest.hexdigest()


def _standardisation(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (float64 sums, float32 result; std 0 -> 1)."""
    n, d = X.shape
    total = np.zeros(d, dtype=np.float64)
    for rows in _row_slices(n, d):
        total += _rows32(X, rows).sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(d, dtype=np.float64)
    for rows in _row_slices(n, d):
        squares += np.square(_rows32(X, rows) - mean).sum(axis=0)
    std = np.sqrt(squares / n)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _standardised(
    X: np.ndarray, mean: np.ndarray | None, scale: np.ndarray | None
) -> np.ndarray:
    """A new float32 array (X - mean) / scale built chunk-wise (mean None: a float32 copy)."""
    out = np.empty(X.shape, dtype=np.float32)
    for rows in _row_slices(*X.shape):
        chunk = _rows32(X, rows)
        out[rows] = chunk if mean is None else (chunk - mean) / scale
    return out


def _fit_standardisation(
    X: np.ndarray, standardize: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(standardised float32 copy of X, mean, scale) for a fit; mean and scale are None (and the
    copy is plain float32) when `standardize` is false."""
    mean, scale = _standardisation(X) if standardize else (None, None)
    return _standardised(X, mean, scale), mean, scale


def _seed(random_state: Any) -> int:
    """An int seed from `random_state` (int, or None for a fresh, non-reproducible one)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise TypeError(f"random_state must be an int or None, got {random_state!r}")
    return int(random_state) % (2**32)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _import_extra(module: str, what: str, extra: str) -> Any:
    """Import an optional dependency or raise ImportError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{what} needs the optional package {module!r}, which is not installed: "
            f"pip install 'learnscope[{extra}]'"
        ) from error


class _Projection(TransformerMixin, BaseEstimator):
    """Shared input checks: fit needs >= 2 finite snapshots, transform the fitted feature count."""

    def _validate_fit(self, X: Any, min_samples: int = 2) -> np.ndarray:
        """The checked input; each fit sets n_features_in_ last, once everything succeeded."""
        return _check_input(X, min_samples=min_samples)

    def _validate_transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "n_features_in_")
        return _check_input(X, n_features=self.n_features_in_)

    def _check_n_components(self, n: int, d: int, upper: bool = True) -> int:
        k = _check_int("n_components", self.n_components, 1)
        if upper and k > min(n, d):
            raise ValueError(
                f"n_components={k} is more than min(n_snapshots, n_parameters) = {min(n, d)}"
            )
        return k


class _FittedEmbedding(_Projection):
    """t-SNE and UMAP: the fit produces an embedding of the fitted rows themselves.

    `fit_transform` returns that embedding, and `transform` of the very rows that were fitted
    (recognised by shape and a hash) returns it too; other rows are placed by `_place`.
    """

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        """Fit and return the fitted embedding itself (not a re-placement of the same points)."""
        return self.fit(X).embedding_.copy()

    def transform(self, X: Any) -> np.ndarray:
        X = self._validate_transform(X)
        if X.shape == self.embedding_.shape[:1] + (self.n_features_in_,) and (
            _fingerprint(X) == self._fit_fingerprint
        ):
            return self.embedding_.copy()
        return self._place(X)

    def _remember_fit(self, embedding: Any, X32: np.ndarray) -> None:
        """Keep the fitted embedding and what identifies the fitted rows."""
        self.embedding_ = np.array(embedding, dtype=np.float32)
        self._fit_fingerprint = _fingerprint(X32)
        self.n_features_in_ = X32.shape[1]
