"""Projections of weight snapshots to two dimensions, as scikit-learn estimators.

Input everywhere is a 2-D array ``X`` of shape ``(n_snapshots, n_parameters)``: one flattened
parameter vector per row (float16, float32, float64 or integer; a ``np.memmap`` works). Rows are
read in chunks of about 64 MiB and cast to float32 chunk by chunk, so a float16 or float64 input
is never copied whole to float64. Every projection is a scikit-learn transformer (``fit`` returns
``self``, ``transform``, ``fit_transform``, ``get_params`` / ``clone`` / ``Pipeline`` work, fitted
attributes end with ``_``), returns float32 arrays, and is deterministic: the same input and the
same ``random_state`` (an int, default 0) give bit-identical output on the same machine and
thread count. Global RNGs (torch, NumPy) are neither read nor changed.

Which projection when
---------------------
``"pca"`` (:class:`PCAProjection`)
    The first thing to look at. Linear, exact, seconds for 500 snapshots of 100k parameters,
    invertible, and the axes mean something (the two directions of weight space along which the
    snapshots vary most), so distances are comparable across networks and across runs.
    ``explained_variance_ratio_`` says how much of the picture two axes show; when it is small the
    nonlinear projections below may show more. ``solver="incremental"`` streams a memmap in
    batches for snapshot files larger than memory.
``"autoencoder"`` (:class:`AutoencoderProjection`)
    A nonlinear map that still generalises to new snapshots and has an inverse (decode a 2-D
    point back to weights). Needs training, early-stopped (about 2.6 s per epoch for 500
    snapshots of 100k parameters on 2 CPU cores, so minutes to tens of minutes; ``device="cuda"``
    helps), and its picture depends on hyperparameters; use when PCA's two components explain
    little.
``"som"`` (:class:`SOMProjection`)
    A self-organising map: a grid of prototype weight vectors that follows the snapshots
    (MiniSom, extra ``som``). Shows which regions of weight space the networks visit and in what
    order; coordinates are positions on the grid (topology-preserving, not metric), and the
    inverse is an interpolated prototype.
``"tsne"`` (:class:`TSNEProjection`)
    t-SNE (openTSNE, extra ``tsne``): keeps local neighbourhoods, so trajectories that pass
    through similar weights end up close; distances between far-apart groups and the global
    layout carry no meaning. Fit on all networks at once (``fit_on="all"``); new points are
    placed against the fixed map.
``"umap"`` (:class:`UMAPProjection`)
    UMAP (umap-learn, extra ``umap``): like t-SNE, with somewhat more global structure. The first
    call in a process compiles numba code (about 20 s).
``"autoencoder-som"``, ``"autoencoder-tsne"``
    The seed project's two-stage options: an autoencoder compresses to 32 dimensions first
    (which also denoises), then a SOM or t-SNE maps those to 2-D (:func:`chain`).

Use :func:`make_projection` to build one by name, :func:`project_trajectories` to project the
trajectories of several networks into one common map, and :func:`save_projection` /
:func:`load_projection` to keep a fitted projection.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted

from learnscope.registry import Registry

__all__ = [
    "PROJECTIONS",
    "AutoencoderProjection",
    "PCAProjection",
    "SOMProjection",
    "TSNEProjection",
    "UMAPProjection",
    "chain",
    "load_projection",
    "make_projection",
    "project_trajectories",
    "save_projection",
]

# Rows are processed in chunks of about this many values (64 MiB as float32).
_CHUNK_VALUES = 1 << 24


# ------------------------------------------------------------------------------------------------
# Input handling shared by all projections


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


# ------------------------------------------------------------------------------------------------
# PCA


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


# ------------------------------------------------------------------------------------------------
# Autoencoder


def _autoencoder_module(d: int, hidden: Sequence[int], k: int) -> Any:
    """encoder Linear(d, h1)-ReLU-...-Linear(h_last, k), decoder mirrored, created on 'meta'.

    Meta tensors take no memory and no random numbers: the caller assigns real weights.
    """
    import torch
    from torch import nn

    def mlp(sizes: list[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    with torch.device("meta"):
        return nn.Sequential(OrderedDict(
            encoder=mlp([d, *hidden, k]), decoder=mlp([k, *reversed(hidden), d])
        ))


def _initial_state(net: Any, generator: Any) -> dict[str, Any]:
    """PyTorch's default Linear init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from a local generator."""
    import torch
    from torch import nn

    state = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            shapes = {"weight": (module.out_features, module.in_features),
                      "bias": (module.out_features,)}
            for param, shape in shapes.items():
                uniform = torch.rand(shape, generator=generator, dtype=torch.float32)
                state[f"{name}.{param}"] = (uniform * 2 - 1) * bound
    return state


def _adam(params: Any, learning_rate: float) -> Any:
    """Adam, fused where this torch supports it for the device (CPU: torch >= 2.4).

    The fused kernel updates all parameters in one pass: on a 100k-parameter input layer it
    makes an optimiser step about 4x faster than the default per-tensor loop.
    """
    import torch

    params = list(params)
    try:
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=learning_rate)


class AutoencoderProjection(_Projection):
    """A PyTorch MLP autoencoder whose bottleneck is the projection.

    Encoder ``Linear(d, h1)-ReLU-...-Linear(h_last, n_components)``, decoder mirrored, MSE loss,
    Adam (fused where available). With ``standardize=True`` each parameter is standardised with
    the mean and standard deviation of the fitted rows (std 0 -> 1), so parameters with large
    values do not dominate the loss; the loss is then a fraction of the total variance (1 per
    feature).

    Early stopping: ``validation_fraction`` of the rows (a seeded random split; with fewer than
    10 rows, or validation_fraction=0, all rows serve for both) are held out; training stops
    after ``patience`` epochs without a lower validation loss (``patience=None``: run all
    ``epochs``), and the weights of the best validation epoch are kept.

    Determinism: initial weights (PyTorch's default U(+-1/sqrt(fan_in))) and the shuffling come
    from a local ``torch.Generator`` seeded with random_state; the global torch RNG is not used.
    Torch's thread settings are left as they are (the result is bit-identical for the same
    thread count). ``device`` is where training runs ("cpu", "cuda", ...); the fitted weights
    are stored as CPU tensors (``state_dict_``), so the estimator pickles and loads anywhere.

    Span coordinates (``span=True``, the default, used when there are more parameters than
    snapshots, d > n): n snapshots lie in an affine subspace of at most n - 1 dimensions, so the
    network is trained on the snapshots' coordinates in an orthonormal basis of that subspace (their
    principal coordinates, all directions with non-negligible variance kept) instead of on the
    d raw values. This is a rotation: squared reconstruction errors are the same in both, and a
    new snapshot is first projected onto the subspace (the part outside it is a direction no
    training snapshot varied in). It makes the first layer n x h1 instead of d x h1 - for 500
    snapshots of 100k parameters about 200 times less work per epoch - at the price of storing
    the basis (``span_basis_``, r x d float32, orthonormal rows; computed from the n x n Gram
    matrix in float64) with the fitted projection. ``span=False`` trains on the raw values.

    Memory: the standardised snapshots are held once as float32 (n x d), plus the network, its
    gradients and Adam's two moments (4 x (2 d h1 + ...) floats, d replaced by r <= n - 1 in
    span coordinates).

    Fitted: ``state_dict_``, ``mean_`` / ``scale_`` (None without standardisation),
    ``history_`` ({"train_loss": [...], "val_loss": [...]} per epoch), ``n_epochs_``,
    ``best_epoch_`` (1-based), ``validation_indices_``, ``reconstruction_error_`` (MSE in the
    standardised space over all fitted rows and all d parameters, best weights),
    ``span_mean_`` / ``span_basis_`` (None when not in span coordinates), ``n_features_in_``.
    """

    def __init__(
        self,
        n_components: int = 2,
        hidden: Sequence[int] = (256, 64),
        epochs: int = 1000,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        patience: int | None = 50,
        validation_fraction: float = 0.2,
        standardize: bool = True,
        random_state: int | None = 0,
        device: str = "cpu",
        span: bool = True,
    ) -> None:
        self.n_components = n_components
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.span = span

    def _check_params(self) -> tuple[list[int], int, int, int | None]:
        if not isinstance(self.span, bool):
            raise ValueError(f"span must be True or False, got {self.span!r}")
        hidden = [_check_int("hidden sizes", h, 1) for h in self.hidden]
        epochs = _check_int("epochs", self.epochs, 1)
        batch = _check_int("batch_size", self.batch_size, 1)
        patience = None if self.patience is None else _check_int("patience", self.patience, 1)
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        return hidden, epochs, batch, patience

    def _split(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if n < 10 or self.validation_fraction == 0:
            every = np.arange(n)
            return every, every
        order = np.random.default_rng(seed).permutation(n)
        n_val = min(n - 1, max(1, round(self.validation_fraction * n)))
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    def fit(self, X: Any, y: Any = None) -> AutoencoderProjection:
        import torch

        X = self._validate_fit(X)
        n, d = X.shape
        k = self._check_n_components(n, d, upper=False)
        hidden, epochs, batch, patience = self._check_params()
        seed = _seed(self.random_state)
        device = torch.device(self.device)

        if self.standardize:
            self.mean_, self.scale_ = _standardisation(X)
        else:
            self.mean_ = self.scale_ = None
        standardised = _standardised(X, self.mean_, self.scale_)
        self.span_mean_ = self.span_basis_ = None
        if self.span and d > n:
            standardised = self._fit_span(standardised)
        data = torch.from_numpy(standardised).to(device)
        train_idx, val_idx = self._split(n, seed)
        train_rows = torch.from_numpy(train_idx).to(device)

        generator = torch.Generator().manual_seed(seed)
        net = _autoencoder_module(data.shape[1], hidden, k)
        net.load_state_dict(_initial_state(net, generator), assign=True)
        net.to(device)
        optimizer = _adam(net.parameters(), self.learning_rate)
        loss_fn = torch.nn.MSELoss()

        history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
        best_val, best_epoch, best_state, waited = math.inf, 0, None, 0
        for epoch in range(1, epochs + 1):
            net.train()
            order = train_rows[torch.randperm(len(train_rows), generator=generator).to(device)]
            total = 0.0
            for start in range(0, len(order), batch):
                xb = data[order[start:start + batch]]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(xb), xb)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(xb)
            history["train_loss"].append(total / len(order))
            val = self._mse(net, data, val_idx, batch)
            history["val_loss"].append(val)
            if not math.isfinite(val) or not math.isfinite(history["train_loss"][-1]):
                raise RuntimeError(
                    f"autoencoder training diverged at epoch {epoch} (loss {val}); "
                    f"lower learning_rate (now {self.learning_rate})"
                )
            if val < best_val:
                best_val, best_epoch, waited = val, epoch, 0
                if best_state is None:
                    best_state = {key: v.detach().clone() for key, v in net.state_dict().items()}
                else:  # in place: no second copy of the weights, even for a moment
                    for key, v in net.state_dict().items():
                        best_state[key].copy_(v)
            else:
                waited += 1
                if patience is not None and waited >= patience:
                    break
        assert best_state is not None  # the first epoch always improves on inf
        net.load_state_dict(best_state)
        self.state_dict_ = {key: v.cpu() for key, v in best_state.items()}  # already copies
        self.history_ = history
        self.n_epochs_ = len(history["val_loss"])
        self.best_epoch_ = best_epoch
        self.validation_indices_ = val_idx
        # per parameter: in span coordinates the squared error is the same, spread over d values
        self.reconstruction_error_ = (self._mse(net, data, np.arange(n), batch)
                                      * data.shape[1] / d)
        self.hidden_ = tuple(hidden)
        self.n_features_in_ = d
        return self

    def _fit_span(self, Z: np.ndarray) -> np.ndarray:
        """Coordinates of the n rows of Z (n < d) in an orthonormal basis of their affine span;
        keeps the basis (rows, float32) and the mean. Z is centred in place.

        The n x n Gram matrix is accumulated in float64 over column blocks, so the basis is
        orthonormal to float64 accuracy before it is stored as float32 (a float32 Gram matrix
        loses the weakest directions to rounding)."""
        n, d = Z.shape
        mean = Z.mean(axis=0, dtype=np.float64).astype(np.float32)
        Z -= mean
        block = max(1, _CHUNK_VALUES // (8 * n))
        gram = np.zeros((n, n))
        for start in range(0, d, block):
            part = Z[:, start:start + block].astype(np.float64)
            gram += part @ part.T
        values, vectors = np.linalg.eigh(gram)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        keep = values > max(values[0], 0.0) * 1e-10
        if not keep.any():  # all rows identical: keep one (zero-variance) direction
            keep[0] = True
        root = np.sqrt(np.maximum(values[keep], np.finfo(np.float64).tiny))
        mixing = vectors[:, keep] / root  # (n, r): basis rows are mixing.T @ Z
        basis = np.empty((len(root), d), dtype=np.float32)
        for start in range(0, d, block):
            basis[:, start:start + block] = mixing.T @ Z[:, start:start + block].astype(
                np.float64)
        self.span_mean_, self.span_basis_ = mean, basis
        return np.ascontiguousarray(vectors[:, keep] * root, dtype=np.float32)

    def _to_span(self, chunk: np.ndarray) -> np.ndarray:
        if self.span_basis_ is None:
            return chunk
        return (chunk - self.span_mean_) @ self.span_basis_.T

    def _from_span(self, values: np.ndarray) -> np.ndarray:
        if self.span_basis_ is None:
            return values
        return values @ self.span_basis_ + self.span_mean_

    @staticmethod
    def _mse(net: Any, data: Any, rows: np.ndarray, batch: int) -> float:
        """Mean squared reconstruction error over `rows` (no gradients, eval mode)."""
        import torch

        net.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(rows), max(batch, 256)):
                xb = data[torch.from_numpy(rows[start:start + max(batch, 256)]).to(data.device)]
                total += torch.sum((net(xb) - xb) ** 2).item()
        return total / (len(rows) * data.shape[1])

    def _network(self) -> Any:
        """The fitted network on `device`, built around the stored weights (no init cost)."""
        import torch

        check_is_fitted(self, "state_dict_")
        inputs = int(self.state_dict_["encoder.0.weight"].shape[1])
        net = _autoencoder_module(inputs, self.hidden_, self._bottleneck())
        net.load_state_dict(self.state_dict_, assign=True)
        return net.to(torch.device(self.device)).eval()

    def _bottleneck(self) -> int:
        return int(self.state_dict_["decoder.0.weight"].shape[1])

    def transform(self, X: Any) -> np.ndarray:
        """Encoder output, (n, n_components) float32."""
        import torch

        X = self._validate_transform(X)
        net = self._network()
        device = torch.device(self.device)
        out = np.empty((len(X), self._bottleneck()), dtype=np.float32)
        with torch.no_grad():
            for rows in _row_slices(*X.shape):
                chunk = _rows32(X, rows)
                if self.mean_ is not None:
                    chunk = (chunk - self.mean_) / self.scale_
                chunk = self._to_span(chunk)
                code = net.encoder(torch.from_numpy(np.ascontiguousarray(chunk)).to(device))
                out[rows] = code.cpu().numpy()
        return out

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decoder output mapped back to the original scale, (n, n_parameters) float32."""
        import torch

        check_is_fitted(self, "state_dict_")
        Y = _check_input(X, what="the coordinates", n_features=self._bottleneck())
        net = self._network()
        device = torch.device(self.device)
        out = np.empty((len(Y), self.n_features_in_), dtype=np.float32)
        with torch.no_grad():
            for rows in _row_slices(len(Y), self.n_features_in_):
                code = torch.from_numpy(np.ascontiguousarray(_rows32(Y, rows))).to(device)
                decoded = self._from_span(net.decoder(code).cpu().numpy())
                out[rows] = decoded if self.mean_ is None else decoded * self.scale_ + self.mean_
        return out


# ------------------------------------------------------------------------------------------------
# Self-organising map


def _span_coordinates(
    Z: np.ndarray, tolerance: float = 1e-7
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Principal coordinates of the rows of Z in their own span, and the map back to d dims.

    A rotation, not a reduction: all directions are kept except those whose variance is below
    `tolerance` times the largest (float32 rounding noise). Z (float32, owned by the caller) is
    centred in place. With n <= d the n x n Gram matrix is eigendecomposed (n^2 d work, much less
    than an SVD of the n x d matrix), otherwise the d x d covariance. Column signs are fixed
    (largest entry of each eigenvector positive), so the result does not depend on LAPACK's sign
    choices. `to_full(W)` maps coordinates (k, r) back to (k, d) float32 rows, mean included.
    """
    n, d = Z.shape
    mean = Z.mean(axis=0, dtype=np.float64).astype(np.float32)
    Z -= mean
    small = Z @ Z.T if n <= d else Z.T @ Z
    values, vectors = np.linalg.eigh(small.astype(np.float64))
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    keep = values > max(values[0], 0.0) * tolerance
    if not keep.any():  # all rows identical: one (zero-variance) direction
        keep[0] = True
    values, vectors = values[keep], vectors[:, keep]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    vectors = vectors * np.where(signs == 0, 1.0, signs)
    if n <= d:
        root = np.sqrt(np.maximum(values, np.finfo(np.float64).tiny))
        coords = vectors * root

        def to_full(W: np.ndarray) -> np.ndarray:
            mixing = ((W / root) @ vectors.T).astype(np.float32)  # (k, n) weights of the rows
            return mixing @ Z + mean
    else:
        coords = (Z @ vectors.astype(np.float32)).astype(np.float64)

        def to_full(W: np.ndarray) -> np.ndarray:
            return (W @ vectors.T).astype(np.float32) + mean
    return coords, to_full


def _presentation_order(n: int, iterations: int, seed: int) -> np.ndarray:
    """Sample indices for online SOM training: a fresh permutation of the n rows per epoch."""
    rng = np.random.default_rng(seed)
    epochs = -(-iterations // n)
    return np.concatenate([rng.permutation(n) for _ in range(epochs)])[:iterations]


class SOMProjection(_Projection):
    """A self-organising map (MiniSom) whose grid coordinates are the projection.

    Defaults:
        ``grid=None``: a square grid of about 5 * sqrt(n) nodes (Vesanto's rule of thumb), at
        least 5 x 5; an int g gives g x g, a pair (rows, cols) a rectangle. ``sigma=None``: a
        quarter of the longer side, at least 1 (the initial Gaussian neighbourhood radius).
        ``iterations=None``: ``max(500 * sqrt(nodes), 2 * n)`` single-sample updates, so that
        every snapshot is presented at least twice; with the PCA initialisation the map is
        already ordered, so this is the convergence phase only.
        The learning rate decays linearly to zero and sigma linearly to 1 (MiniSom's
        ``linear_decay_to_zero`` / ``linear_decay_to_one``, MiniSom >= 2.3.3): the codebook
        converges instead of jittering with the last samples, and the neighbourhood never
        shrinks below one node.
        Samples are presented in a fresh random permutation per epoch, drawn from a NumPy
        generator seeded with random_state (:func:`_presentation_order`); MiniSom's own
        ``random_seed`` is set to random_state too but not used for the order.

    Initialisation: linear along the first two principal components, spanning +-1 standard
    deviation along each (SOM Toolbox ``som_lininit``). MiniSom's own ``pca_weights_init`` uses
    unit-length components, a tiny patch next to standardised high-dimensional snapshots whose
    spread grows with sqrt(n_parameters), and needs a d x d covariance matrix.

    High dimensions: the SOM is trained in the principal coordinates of the data's own span (a
    rotation to at most min(n, d) dimensions, from the eigendecomposition of the n x n Gram
    matrix: :func:`_span_coordinates`). Online SOM updates move codebook vectors towards samples
    and the initialisation lies in that span, so the codebook never leaves it, and Euclidean
    distances are preserved by the rotation: the map is the one trained on the full
    d-dimensional vectors (up to rounding), at a cost of min(n, d) instead of d per node and
    update (seconds instead of minutes for 500 snapshots of 100k parameters). The codebook is
    stored back in the full standardised space (``codebook_``, rows x cols x d float32).

    transform: the winning node (i, j) refined to a continuous position. Along each grid axis the
    codebook is interpolated linearly between the winner and its two neighbours, and the offset
    (at most half a cell) is the point of that line closest to the snapshot; with squared
    distances D to the winner and D' to the neighbour and the squared edge length e, it is
    ``(D - D' + e) / (2 e)`` towards the nearer-projecting neighbour. It uses only differences
    of squared distances, so the part of a new snapshot outside the fitted span cancels, and the
    winner stays the nearest node to the reported position. Coordinates are (row, column) floats
    in [0, rows - 1] x [0, cols - 1].

    inverse_transform: bilinear interpolation of the codebook at the coordinates, mapped back to
    the original scale.

    Fitted: ``codebook_``, ``grid_`` (rows, cols), ``sigma_``, ``iterations_``, ``mean_`` /
    ``scale_``, ``quantization_error_`` (mean distance of the fitted snapshots to their winner,
    standardised space), ``n_features_in_``.
    """

    def __init__(
        self,
        grid: int | tuple[int, int] | None = None,
        sigma: float | None = None,
        learning_rate: float = 0.5,
        iterations: int | None = None,
        standardize: bool = True,
        random_state: int | None = 0,
    ) -> None:
        self.grid = grid
        self.sigma = sigma
        self.learning_rate = learning_rate
        self.iterations = iterations
        self.standardize = standardize
        self.random_state = random_state

    def _grid_shape(self, n: int) -> tuple[int, int]:
        if self.grid is None:
            side = max(5, math.ceil(math.sqrt(5 * math.sqrt(n))))
            return side, side
        if isinstance(self.grid, int | np.integer):
            side = _check_int("grid", self.grid, 2)
            return side, side
        rows, cols = self.grid
        return _check_int("grid rows", rows, 2), _check_int("grid columns", cols, 2)

    def fit(self, X: Any, y: Any = None) -> SOMProjection:
        minisom = _import_extra("minisom", "SOMProjection", "som")
        X = self._validate_fit(X)
        n, d = X.shape
        rows, cols = self._grid_shape(n)
        nodes = rows * cols
        sigma = self.sigma if self.sigma is not None else max(1.0, max(rows, cols) / 4)
        iterations = self.iterations
        if iterations is None:
            iterations = max(round(500 * math.sqrt(nodes)), 2 * n)
        iterations = _check_int("iterations", iterations, 1)
        seed = _seed(self.random_state)

        if self.standardize:
            self.mean_, self.scale_ = _standardisation(X)
        else:
            self.mean_ = self.scale_ = None
        Z = _standardised(X, self.mean_, self.scale_)
        coords, to_full = _span_coordinates(Z)
        m = coords.shape[1]
        spread = coords[:, :2].std(axis=0)
        weights = np.zeros((rows, cols, m))
        weights[:, :, 0] = np.linspace(-1, 1, rows)[:, None] * spread[0]
        if m > 1:
            weights[:, :, 1] = np.linspace(-1, 1, cols)[None, :] * spread[1]

        try:
            som = minisom.MiniSom(
                rows, cols, m, sigma=sigma, learning_rate=self.learning_rate,
                decay_function="linear_decay_to_zero", sigma_decay_function="linear_decay_to_one",
                neighborhood_function="gaussian", random_seed=seed,
            )
        except (TypeError, ValueError) as error:  # the decay names arrived in MiniSom 2.3.3
            raise ImportError(
                f"SOMProjection needs MiniSom >= 2.3.3 ({error}): pip install -U 'minisom>=2.3.3'"
            ) from error
        som.get_weights()[...] = weights
        # MiniSom.train's random order depends on how many numbers its constructor drew (one
        # per node and dimension); a shuffled pass per epoch from our own generator does not.
        for t, i in enumerate(_presentation_order(n, iterations, seed)):
            som.update(coords[i], som.winner(coords[i]), t, iterations)
        self.quantization_error_ = float(som.quantization_error(coords))
        codebook = to_full(som.get_weights().reshape(nodes, m))
        del Z
        self.codebook_ = codebook.astype(np.float32).reshape(rows, cols, d)
        self.grid_ = (rows, cols)
        self.sigma_ = float(sigma)
        self.iterations_ = iterations
        self.n_features_in_ = d
        return self

    def _squared_distances(self, X: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        """Squared distances (chunk, rows, cols) of standardised X to the codebook, float64."""
        rows, cols = self.grid_
        W = self.codebook_.reshape(rows * cols, -1).astype(np.float64)
        w2 = np.einsum("ij,ij->i", W, W)
        for sl in _row_slices(*X.shape, values=_CHUNK_VALUES // 2):
            chunk = _rows32(X, sl)
            if self.mean_ is not None:
                chunk = (chunk - self.mean_) / self.scale_
            chunk = chunk.astype(np.float64)
            D = np.einsum("ij,ij->i", chunk, chunk)[:, None] - 2 * chunk @ W.T + w2
            yield sl, np.maximum(D, 0).reshape(len(chunk), rows, cols)

    def transform(self, X: Any) -> np.ndarray:
        """Continuous (row, column) positions on the map, (n, 2) float32."""
        X = self._validate_transform(X)
        rows, cols = self.grid_
        W = self.codebook_.astype(np.float64)
        edges = (np.sum(np.diff(W, axis=0) ** 2, axis=-1),   # (rows-1, cols): (i, j)-(i+1, j)
                 np.sum(np.diff(W, axis=1) ** 2, axis=-1))   # (rows, cols-1): (i, j)-(i, j+1)
        out = np.empty((len(X), 2), dtype=np.float32)
        for sl, D in self._squared_distances(X):
            b = np.arange(len(D))
            flat = D.reshape(len(D), -1).argmin(axis=1)
            win = np.unravel_index(flat, (rows, cols))
            here = D[b, win[0], win[1]]
            position = []
            for axis, size in enumerate((rows, cols)):
                best_t = np.zeros(len(D))
                best_gain = np.zeros(len(D))
                for step in (-1, 1):
                    nb = win[axis] + step
                    ok = (nb >= 0) & (nb < size)
                    nbc = np.clip(nb, 0, size - 1)
                    lower = np.minimum(win[axis], nbc)
                    if axis == 0:
                        there = D[b, nbc, win[1]]
                        e = edges[0][np.minimum(lower, rows - 2), win[1]]
                    else:
                        there = D[b, win[0], nbc]
                        e = edges[1][win[0], np.minimum(lower, cols - 2)]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        t = np.where(e > 0, (here - there + e) / (2 * e), 0.0)
                    t = np.where(ok, np.clip(t, 0.0, 0.5), 0.0)
                    gain = t * (here - there + e) - t * t * e  # decrease of squared distance
                    better = gain > best_gain
                    best_t = np.where(better, step * t, best_t)
                    best_gain = np.where(better, gain, best_gain)
                position.append(win[axis] + best_t)
            out[sl, 0], out[sl, 1] = position
        return out

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Bilinearly interpolated codebook vectors in the original scale, (n, d) float32."""
        check_is_fitted(self, "codebook_")
        Y = _check_input(X, what="the coordinates", n_features=2).astype(np.float64)
        rows, cols = self.grid_
        r = np.clip(Y[:, 0], 0, rows - 1)
        c = np.clip(Y[:, 1], 0, cols - 1)
        r0 = np.minimum(np.floor(r).astype(int), rows - 2)
        c0 = np.minimum(np.floor(c).astype(int), cols - 2)
        fr, fc = (r - r0)[:, None], (c - c0)[:, None]
        W = self.codebook_
        out = ((1 - fr) * (1 - fc) * W[r0, c0] + (1 - fr) * fc * W[r0, c0 + 1]
               + fr * (1 - fc) * W[r0 + 1, c0] + fr * fc * W[r0 + 1, c0 + 1])
        out = out.astype(np.float32)
        return out if self.mean_ is None else out * self.scale_ + self.mean_


# ------------------------------------------------------------------------------------------------
# t-SNE and UMAP


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


# ------------------------------------------------------------------------------------------------
# Chains, registry, several networks, persistence


def chain(*steps: BaseEstimator) -> Pipeline:
    """A scikit-learn Pipeline applying the projections in turn.

    ``chain(AutoencoderProjection(n_components=32), SOMProjection())`` compresses to 32
    dimensions, then maps those onto a SOM. Every step keeps the number of snapshots.
    ``fit_transform`` of a chain ending in t-SNE or UMAP returns their fitted embedding.
    """
    if not steps:
        raise ValueError("chain needs at least one projection")
    for step in steps:
        if not (hasattr(step, "fit") and hasattr(step, "transform")):
            raise TypeError(f"every step must have fit and transform, got {step!r}")
    return make_pipeline(*steps)


def _autoencoder_som(random_state: int | None) -> Pipeline:
    return chain(AutoencoderProjection(n_components=32, random_state=random_state),
                 SOMProjection(random_state=random_state))


def _autoencoder_tsne(random_state: int | None) -> Pipeline:
    return chain(AutoencoderProjection(n_components=32, random_state=random_state),
                 TSNEProjection(random_state=random_state))


#: Projection names -> factories taking random_state (see :func:`make_projection`); the seed
#: project's class names are aliases. ``@PROJECTIONS.register("name")`` adds one.
PROJECTIONS: Registry[Callable[[int | None], BaseEstimator]] = Registry("projection")
PROJECTIONS.add("pca", lambda random_state: PCAProjection(random_state=random_state))
PROJECTIONS.add("autoencoder",
                lambda random_state: AutoencoderProjection(random_state=random_state))
PROJECTIONS.add("som", lambda random_state: SOMProjection(random_state=random_state),
                "SelfOrganisingMap", "SelfOrganizingMap")
PROJECTIONS.add("tsne", lambda random_state: TSNEProjection(random_state=random_state))
PROJECTIONS.add("umap", lambda random_state: UMAPProjection(random_state=random_state))
PROJECTIONS.add("autoencoder-som", _autoencoder_som, "AutoencoderWithSOM")
PROJECTIONS.add("autoencoder-tsne", _autoencoder_tsne, "AutoencoderWithTsne")


def make_projection(name: str, random_state: int | None = 0, **options: Any) -> BaseEstimator:
    """A new, unfitted projection by name.

    Names: ``pca``, ``autoencoder``, ``som``, ``tsne``, ``umap``, ``autoencoder-som`` (an
    autoencoder to 32 dimensions, then a SOM), ``autoencoder-tsne`` (the same, then t-SNE).
    The seed project's class names are accepted too (names compare without case, "-", "_"):
    ``PCA``, ``SelfOrganisingMap`` (or ``SelfOrganizingMap``), ``Autoencoder``,
    ``AutoencoderWithSOM`` / ``AutoencoderSOM``, ``AutoencoderWithTsne`` / ``AutoencoderTSNE``.

    random_state goes to every step. ``options`` set parameters of the (last) estimator, e.g.
    ``make_projection("autoencoder-som", grid=8)``; for a chain, ``"<step>__<param>"`` reaches
    an earlier step, e.g. ``autoencoderprojection__epochs=200``. An unknown name raises
    ValueError, an unknown option TypeError; both list what is valid.
    """
    key = PROJECTIONS.canonical(name)
    estimator = PROJECTIONS[key](random_state)
    if not options:
        return estimator
    last = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    valid = sorted(last.get_params(deep=False))
    plain = {k: v for k, v in options.items() if "__" not in k}
    nested = {k: v for k, v in options.items() if "__" in k}
    unknown = [k for k in plain if k not in valid]
    valid_nested: list[str] = []
    if isinstance(estimator, Pipeline):
        valid_nested = sorted(k for k in estimator.get_params(deep=True) if "__" in k)
    unknown += [k for k in nested if k not in valid_nested]
    if unknown:
        hint = f"; for an earlier step: {', '.join(valid_nested)}" if valid_nested else ""
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for projection {key!r}; "
            f"valid: {', '.join(valid)}{hint}"
        )
    last.set_params(**plain)
    if nested:
        estimator.set_params(**nested)
    return estimator


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


def save_projection(estimator: BaseEstimator, path: str | os.PathLike) -> Path:
    """Write a (fitted) projection with joblib, atomically: a temporary file, then os.replace.

    A crash never leaves a half-written file at `path`. t-SNE and UMAP projections contain the
    snapshots they were fitted on (their transform needs them).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            joblib.dump(estimator, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_projection(path: str | os.PathLike) -> BaseEstimator:
    """A projection written by :func:`save_projection`; transform gives identical output."""
    estimator = joblib.load(Path(path))
    if not hasattr(estimator, "transform"):
        raise TypeError(f"{path} does not hold a projection (got {type(estimator).__name__})")
    return estimator
