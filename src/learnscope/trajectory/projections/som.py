"""A self-organising map (MiniSom, extra ``som``) whose grid positions are the projection
(:class:`SOMProjection`). MiniSom is imported when a map is fitted."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from learnscope.trajectory.projections.base import (
    _CHUNK_VALUES,
    _check_input,
    _check_int,
    _fit_standardisation,
    _import_extra,
    _Projection,
    _row_slices,
    _rows32,
    _seed,
)


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

        Z, self.mean_, self.scale_ = _fit_standardisation(X, self.standardize)
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
