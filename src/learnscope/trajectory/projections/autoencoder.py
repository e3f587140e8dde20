"""A PyTorch MLP autoencoder whose bottleneck is the projection (:class:`AutoencoderProjection`).

torch is imported inside the functions that train or run the network, so importing the
projections package does not load it."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from learnscope.trajectory.projections.base import (
    _CHUNK_VALUES,
    _check_input,
    _check_int,
    _fit_standardisation,
    _Projection,
    _row_slices,
    _rows32,
    _seed,
)


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

        standardised, self.mean_, self.scale_ = _fit_standardisation(X, self.standardize)
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
