"""Weight-snapshot projections (learnscope.trajectory.projections) against independent references.

References: scikit-learn's exact PCA in float64, a MiniSom trained directly on the full vectors,
a linear PCA baseline for the autoencoder, and geometric facts about well-separated clusters.
Data are small so that the whole file runs in well under a minute on two cores; UMAP's numba
compilation (~20 s once per process) is most of it.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA, IncrementalPCA
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

from learnscope.trajectory import projections as P
from learnscope.trajectory.projections import (
    AutoencoderProjection,
    PCAProjection,
    SOMProjection,
    TSNEProjection,
    UMAPProjection,
    chain,
    load_projection,
    make_projection,
    project_trajectories,
    save_projection,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------
# Data


def low_rank(n: int = 150, d: int = 2500, seed: int = 0) -> np.ndarray:
    """Three latent directions (std 10, 5, 2) plus noise 0.01: well-separated top components."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, 3)))[0].T
    latent = rng.normal(size=(n, 3)) * [10.0, 5.0, 2.0]
    return latent @ basis + 0.01 * rng.normal(size=(n, d)) + rng.normal(size=d)


def clusters(n_each: int = 30, d: int = 100, gap: float = 6.0, seed: int = 0,
             noise_seed: int | None = None):
    """Two isotropic Gaussian clusters (std 1) whose centres are `gap` apart; labels 0/1.

    The centres depend on `seed` only; `noise_seed` draws new points around the same centres.
    """
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    centre = rng.normal(size=d)
    noise = rng if noise_seed is None else np.random.default_rng(noise_seed)
    a = centre + gap / 2 * direction + noise.normal(size=(n_each, d))
    b = centre - gap / 2 * direction + noise.normal(size=(n_each, d))
    return np.vstack([a, b]).astype(np.float32), np.repeat([0, 1], n_each)


def manifold(n: int = 300, d: int = 50, seed: int = 0) -> np.ndarray:
    """A smooth nonlinear image of two latent variables (u, v) in R^d, plus noise 0.01."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(-1, 1, (2, n))
    features = np.stack([np.sin(np.pi * u), np.cos(np.pi * u), v, u * v, v**2,
                         np.sin(np.pi * v), np.exp(u)], axis=1)
    mixing = rng.normal(size=(features.shape[1], d))
    return (features @ mixing + 0.01 * rng.normal(size=(n, d))).astype(np.float32)


def assert_equal_up_to_sign(ours: np.ndarray, reference: np.ndarray, rtol: float) -> None:
    """Columns equal up to a sign each, within rtol * the reference's largest magnitude."""
    assert ours.shape == reference.shape
    for j in range(reference.shape[1]):
        sign = np.sign(ours[:, j] @ reference[:, j])
        np.testing.assert_allclose(sign * ours[:, j], reference[:, j],
                                   atol=rtol * np.abs(reference[:, j]).max())


def assert_separated(points: np.ndarray, labels: np.ndarray, ratio: float = 3.0) -> None:
    """Every point is nearer its own cluster's centroid, and centroids are far apart."""
    centroids = np.stack([points[labels == k].mean(axis=0) for k in (0, 1)])
    distance = np.linalg.norm(points[:, None, :] - centroids[None], axis=-1)
    assert np.array_equal(distance.argmin(axis=1), labels)
    spread = max(np.linalg.norm(points[labels == k] - centroids[k], axis=1).mean() for k in (0, 1))
    assert np.linalg.norm(centroids[0] - centroids[1]) > ratio * spread


FAST_AE = {"hidden": (32, 16), "epochs": 30, "batch_size": 32, "learning_rate": 3e-3}


@pytest.fixture(scope="module")
def cluster_data():
    return clusters()


@pytest.fixture(scope="module")
def fitted_umap(cluster_data):
    """One UMAP fit per module: the first one in a process pays numba's compilation."""
    X, _ = cluster_data
    umap = UMAPProjection(n_neighbors=10)
    return umap, umap.fit_transform(X)


# ------------------------------------------------------------------------------------------------
# PCA


@pytest.mark.parametrize("solver", ["full", "randomized", "incremental", "auto"])
def test_pca_solvers_match_exact_float64_pca(solver):
    # Three components of rank-3-plus-noise data: IncrementalPCA truncates to n_components after
    # every batch, which is exact only when what it drops is noise (with 2 components on these
    # data its error is ~1e-3 relative, an approximation of the method, not of learnscope).
    X = low_rank()
    reference = PCA(n_components=3, svd_solver="full").fit(X)
    ours = PCAProjection(n_components=3, solver=solver, batch_size=40).fit(X)
    assert ours.solver_ == ("randomized" if solver == "auto" else solver)  # d = 2500 > 2000
    assert_equal_up_to_sign(ours.transform(X), reference.transform(X), rtol=1e-4)
    assert_equal_up_to_sign(ours.components_.T, reference.components_.T, rtol=1e-4)
    np.testing.assert_allclose(ours.explained_variance_ratio_,
                               reference.explained_variance_ratio_, rtol=1e-4)
    out = ours.transform(X)
    assert out.dtype == np.float32 and out.shape == (len(X), 3)
    back = ours.inverse_transform(out)
    assert back.dtype == np.float32 and back.shape == X.shape
    np.testing.assert_allclose(back, reference.inverse_transform(reference.transform(X)),
                               atol=1e-3 * np.abs(X).max())


def test_pca_auto_is_full_for_few_features():
    assert PCAProjection().fit(low_rank(d=300)).solver_ == "full"


def test_incremental_pca_streams_a_float16_memmap(tmp_path, monkeypatch):
    X = low_rank(n=129, d=600)
    path = tmp_path / "snapshots.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    snapshots = np.memmap(path, dtype=np.float16, mode="r", shape=X.shape)
    batches = []
    original = IncrementalPCA.partial_fit

    def recording(self, batch, *args, **kwargs):
        batches.append((batch.shape, batch.dtype))
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(IncrementalPCA, "partial_fit", recording)
    ours = PCAProjection(n_components=3, solver="incremental", batch_size=32).fit(snapshots)
    # 129 rows in batches of 32: the tail (1 row < 3 components) joins the batch before it.
    assert [shape for shape, _ in batches] == [(32, 600)] * 3 + [(33, 600)]
    assert all(dtype == np.float32 for _, dtype in batches)
    exact = np.asarray(snapshots, dtype=np.float64)
    reference = PCA(n_components=3, svd_solver="full").fit(exact)
    assert_equal_up_to_sign(ours.transform(snapshots), reference.transform(exact), rtol=1e-4)


def test_pca_reads_float16_and_float64_like_their_float32_values():
    X = low_rank(d=300).astype(np.float16)
    as32 = PCAProjection(solver="full").fit(X.astype(np.float32))
    as16 = PCAProjection(solver="full").fit(X)
    np.testing.assert_array_equal(as16.transform(X), as32.transform(X.astype(np.float32)))
    assert as16.transform(X.astype(np.float64)).dtype == np.float32


# ------------------------------------------------------------------------------------------------
# Autoencoder


def test_autoencoder_learns_a_two_dimensional_manifold():
    X = manifold()
    ae = AutoencoderProjection(hidden=(64, 32), batch_size=32, learning_rate=3e-3, patience=30)
    ae.fit(X)
    # Standardised features have total variance 1 each; the data are a 2-D manifold with noise
    # 0.005 in standardised units, so a good 2-D code leaves little. A linear 2-D code (PCA)
    # leaves about 45% here: the manifold is curved, and only a nonlinear map gets below 5%.
    z = (X - X.mean(axis=0)) / X.std(axis=0)
    linear = PCA(n_components=2).fit(z)
    linear_error = np.mean((linear.inverse_transform(linear.transform(z)) - z) ** 2)
    assert linear_error > 0.3
    assert ae.reconstruction_error_ < 0.05
    assert min(ae.history_["val_loss"]) < 0.05
    independent = np.mean(((ae.inverse_transform(ae.transform(X)) - X) / X.std(axis=0)) ** 2)
    np.testing.assert_allclose(independent, ae.reconstruction_error_, rtol=1e-3)
    code = ae.transform(X)
    assert code.shape == (len(X), 2) and code.dtype == np.float32


def test_autoencoder_in_span_coordinates_when_parameters_outnumber_snapshots(tmp_path):
    # the manifold's 50 features lifted to 2,000 by a random orthonormal map: more parameters
    # than snapshots, so the network trains on the snapshots' coordinates in their own span
    X = manifold()
    lift = np.linalg.qr(np.random.default_rng(3).normal(size=(2000, 50)))[0].T  # (50, 2000)
    wide = (X @ lift).astype(np.float32)
    ae = AutoencoderProjection(hidden=(64, 32), batch_size=32, learning_rate=3e-3, patience=30,
                               standardize=False).fit(wide)
    assert wide.shape[1] > len(wide) and ae.span_basis_ is not None
    r = ae.span_basis_.shape[0]
    assert r < len(wide) and ae.state_dict_["encoder.0.weight"].shape[1] == r
    np.testing.assert_allclose(ae.span_basis_ @ ae.span_basis_.T, np.eye(r), atol=1e-4)
    # reconstruction error per parameter, recomputed from the full-space output
    independent = np.mean((ae.inverse_transform(ae.transform(wide)) - wide) ** 2)
    np.testing.assert_allclose(independent, ae.reconstruction_error_, rtol=1e-3)
    assert independent < 0.05 * np.mean((wide - wide.mean(axis=0)) ** 2)
    # a new point is placed by its part inside the span: a component outside changes nothing
    outside = np.random.default_rng(4).normal(size=2000).astype(np.float32)
    outside -= ae.span_basis_.T @ (ae.span_basis_ @ outside)
    np.testing.assert_allclose(ae.transform(wide[:5] + outside), ae.transform(wide[:5]),
                               atol=1e-4)
    path = P.save_projection(ae, tmp_path / "ae.joblib")
    np.testing.assert_array_equal(P.load_projection(path).transform(wide), ae.transform(wide))
    raw = AutoencoderProjection(hidden=(8,), epochs=2, span=False, standardize=False).fit(wide)
    assert raw.span_basis_ is None and raw.state_dict_["encoder.0.weight"].shape[1] == 2000
    tall = AutoencoderProjection(hidden=(8,), epochs=2).fit(wide[:, :100])  # n > d: no span
    assert tall.span_basis_ is None
    with pytest.raises(ValueError, match="span must be"):
        AutoencoderProjection(span="yes").fit(wide)


def test_autoencoder_early_stopping_keeps_the_best_weights():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 40)).astype(np.float32)  # noise: validation loss soon rises
    ae = AutoencoderProjection(hidden=(64,), epochs=1000, patience=5, batch_size=16,
                               learning_rate=1e-2).fit(X)
    val = ae.history_["val_loss"]
    assert ae.n_epochs_ < 1000 and ae.n_epochs_ == len(val) == len(ae.history_["train_loss"])
    assert ae.best_epoch_ == int(np.argmin(val)) + 1
    assert ae.n_epochs_ == ae.best_epoch_ + 5
    assert len(ae.validation_indices_) == 12  # 20% of 60
    rows = ae.validation_indices_
    z = (X - ae.mean_) / ae.scale_
    recon = (ae.inverse_transform(ae.transform(X)) - ae.mean_) / ae.scale_
    np.testing.assert_allclose(np.mean((recon[rows] - z[rows]) ** 2), min(val), rtol=1e-4)
    assert min(val) < val[-1]


def test_autoencoder_is_deterministic_and_leaves_global_rngs_alone():
    X = manifold(n=80, d=20)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first = AutoencoderProjection(**FAST_AE).fit(X)
    second = AutoencoderProjection(**FAST_AE).fit(X)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    np.testing.assert_array_equal(first.transform(X), second.transform(X))
    assert first.history_ == second.history_
    other = AutoencoderProjection(**FAST_AE, random_state=1).fit(X)
    assert not np.array_equal(other.transform(X), first.transform(X))


def test_autoencoder_divergence_is_reported():
    X = manifold(n=40, d=10) * 1e3
    with pytest.raises(RuntimeError, match="diverged at epoch 1.*lower learning_rate"):
        AutoencoderProjection(learning_rate=1e6, standardize=False, epochs=5).fit(X)


def test_autoencoder_small_data_uses_all_rows_for_both_and_no_standardisation():
    X = manifold(n=8, d=6)
    ae = AutoencoderProjection(standardize=False, **FAST_AE).fit(X)
    assert ae.mean_ is None and len(ae.validation_indices_) == 8
    np.testing.assert_allclose(ae.history_["val_loss"][ae.best_epoch_ - 1],
                               ae.reconstruction_error_, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# Self-organising map


def test_som_maps_two_clusters_to_distinct_regions(cluster_data):
    X, labels = cluster_data
    som = SOMProjection(random_state=0).fit(X)
    assert som.grid_ == (7, 7)  # about 5 * sqrt(60) = 39 nodes: side ceil(6.2)
    coords = som.transform(X)
    assert coords.shape == (len(X), 2) and coords.dtype == np.float32
    assert coords.min() >= 0 and coords.max() <= 6
    # A SOM spreads the snapshots over the whole grid, each cluster over its own part: the
    # clusters share no winning node and a straight line separates their map coordinates.
    winners = {k: {tuple(w) for w in np.round(coords[labels == k]).astype(int)} for k in (0, 1)}
    assert not winners[0] & winners[1]
    separator = LinearSVC(C=1e3, max_iter=100_000).fit(coords, labels)
    assert separator.score(coords, labels) == 1.0
    centroids = np.stack([coords[labels == k].mean(axis=0) for k in (0, 1)])
    spread = max(np.linalg.norm(coords[labels == k] - centroids[k], axis=1).mean() for k in (0, 1))
    assert np.linalg.norm(centroids[0] - centroids[1]) > 1.5 * spread
    # New snapshots from the same clusters land in their cluster's region.
    fresh, fresh_labels = clusters(n_each=10, noise_seed=5)
    placed = som.transform(fresh)
    assert np.array_equal(separator.predict(placed), fresh_labels)
    # The inverse of a cluster's map position is a prototype near that cluster's mean.
    prototypes = som.inverse_transform(centroids)
    for k in (0, 1):
        own = np.linalg.norm(prototypes[k] - X[labels == k].mean(axis=0))
        other = np.linalg.norm(prototypes[k] - X[labels != k].mean(axis=0))
        assert own < other / 2


def test_som_in_the_data_span_equals_a_minisom_on_the_full_vectors():
    """Training in principal coordinates (d = 200 > n = 40) is an isometry: same codebook."""
    minisom = pytest.importorskip("minisom")
    rng = np.random.default_rng(3)
    X = (rng.normal(size=(40, 200)) * np.linspace(3, 0.1, 200)).astype(np.float32)
    ours = SOMProjection(grid=(5, 4), iterations=400, standardize=False).fit(X)

    exact = X.astype(np.float64)
    pca = PCA(n_components=2, svd_solver="full").fit(exact)
    spread = np.sqrt(pca.explained_variance_ * (len(X) - 1) / len(X))
    init = np.empty((5, 4, 200))
    for i, c1 in enumerate(np.linspace(-1, 1, 5)):
        for j, c2 in enumerate(np.linspace(-1, 1, 4)):
            init[i, j] = pca.mean_ + c1 * spread[0] * pca.components_[0] \
                + c2 * spread[1] * pca.components_[1]
    order = P.som._presentation_order(len(X), 400, seed=0)  # one permutation per epoch, seeded
    # Principal directions have arbitrary signs; a flipped axis mirrors the trained map.
    best = np.inf
    for flip_rows in (False, True):
        for flip_cols in (False, True):
            som = minisom.MiniSom(5, 4, 200, sigma=ours.sigma_, learning_rate=0.5,
                                  decay_function="linear_decay_to_zero",
                                  sigma_decay_function="linear_decay_to_one", random_seed=0)
            start = init[::-1] if flip_rows else init
            start = start[:, ::-1] if flip_cols else start
            som.get_weights()[...] = start
            som.train(exact[order], 400)  # in the given order
            best = min(best, np.abs(som.get_weights() - ours.codebook_).max())
    assert best < 1e-3 * np.abs(X).max()


def test_som_continuous_position_stays_within_half_a_cell_of_the_winner(cluster_data):
    X, _ = cluster_data
    som = SOMProjection(grid=7).fit(X)
    coords = som.transform(X)
    z = (X - som.mean_) / som.scale_
    dist = ((z[:, None, None, :] - som.codebook_[None]) ** 2).sum(axis=-1)
    winners = np.stack(np.unravel_index(dist.reshape(len(X), -1).argmin(axis=1), (7, 7)), 1)
    assert np.abs(coords - winners).max() <= 0.5 + 1e-6
    on_node = som.inverse_transform(winners.astype(np.float32))
    np.testing.assert_allclose((on_node - som.mean_) / som.scale_,
                               som.codebook_[winners[:, 0], winners[:, 1]], atol=1e-4)


# ------------------------------------------------------------------------------------------------
# t-SNE and UMAP


def test_tsne_keeps_clusters_apart_and_places_new_points(cluster_data):
    X, labels = cluster_data
    tsne = TSNEProjection(perplexity=15)
    embedding = tsne.fit_transform(X)
    assert embedding.shape == (60, 2) and embedding.dtype == np.float32
    np.testing.assert_array_equal(tsne.transform(X), embedding)  # the fitted map itself
    assert_separated(embedding, labels, ratio=2.0)
    np.testing.assert_array_equal(TSNEProjection(perplexity=15).fit_transform(X), embedding)
    fresh, fresh_labels = clusters(n_each=5, noise_seed=5)
    placed = tsne.transform(fresh)
    centroids = np.stack([embedding[labels == k].mean(axis=0) for k in (0, 1)])
    nearest = np.linalg.norm(placed[:, None] - centroids[None], axis=-1).argmin(axis=1)
    assert np.array_equal(nearest, fresh_labels)
    small = TSNEProjection().fit(X[:10])
    assert small.perplexity_ == pytest.approx(3.0)  # (10 - 1) / 3
    assert small.embedding_.shape == (10, 2)


def test_umap_keeps_clusters_apart_and_is_deterministic(cluster_data, fitted_umap):
    X, labels = cluster_data
    umap, embedding = fitted_umap
    assert embedding.shape == (60, 2) and embedding.dtype == np.float32
    assert_separated(embedding, labels, ratio=2.0)
    np.testing.assert_array_equal(umap.transform(X), embedding)
    numpy_state = np.random.get_state()
    np.testing.assert_array_equal(UMAPProjection(n_neighbors=10).fit_transform(X), embedding)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    small = UMAPProjection().fit(X[:6])
    assert small.n_neighbors_ == 5 and small.embedding_.shape == (6, 2)
    with pytest.raises(ValueError, match="at least 3"):
        UMAPProjection().fit(X[:2])


# ------------------------------------------------------------------------------------------------
# Determinism, chains, registry


@pytest.mark.parametrize("make", [
    lambda seed: PCAProjection(solver="randomized", random_state=seed),
    lambda seed: AutoencoderProjection(random_state=seed, **FAST_AE),
    lambda seed: SOMProjection(random_state=seed),
    lambda seed: TSNEProjection(perplexity=10, random_state=seed),
], ids=["pca", "autoencoder", "som", "tsne"])
def test_same_random_state_gives_identical_output(make, cluster_data):
    X, _ = cluster_data
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first, second = make(7).fit(X), make(7).fit(X)
    new = X[:7] + 0.2
    np.testing.assert_array_equal(first.transform(X), second.transform(X))
    np.testing.assert_array_equal(first.transform(new), second.transform(new))
    assert torch.equal(torch.get_rng_state(), torch_state)  # global RNGs neither used nor moved
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()


def test_chains_keep_the_sample_count(cluster_data):
    X, _ = cluster_data
    for name in ("autoencoder-som", "autoencoder-tsne"):
        pipeline = make_projection(name, autoencoderprojection__epochs=20,
                                   autoencoderprojection__hidden=(32,))
        assert isinstance(pipeline, Pipeline)
        assert pipeline.steps[0][1].n_components == 32
        out = pipeline.fit_transform(X)
        assert out.shape == (60, 2)
        np.testing.assert_array_equal(pipeline.transform(X), out)  # same codes, same map
        assert pipeline.fit(X) is pipeline
        assert pipeline.transform(X[:9]).shape == (9, 2)
    manual = chain(AutoencoderProjection(n_components=4, **FAST_AE), SOMProjection(grid=5))
    assert manual.fit_transform(X).shape == (60, 2)
    np.testing.assert_array_equal(manual.transform(X), manual.fit(X).transform(X))
    with pytest.raises(ValueError):
        chain()


@pytest.mark.parametrize(("name", "last", "steps"), [
    ("pca", PCAProjection, 1), ("PCA", PCAProjection, 1),
    ("autoencoder", AutoencoderProjection, 1), ("Autoencoder", AutoencoderProjection, 1),
    ("som", SOMProjection, 1), ("SelfOrganisingMap", SOMProjection, 1),
    ("tsne", TSNEProjection, 1), ("umap", UMAPProjection, 1),
    ("autoencoder-som", SOMProjection, 2), ("AutoencoderWithSOM", SOMProjection, 2),
    ("AutoencoderSOM", SOMProjection, 2), ("autoencoder-tsne", TSNEProjection, 2),
    ("AutoencoderWithTsne", TSNEProjection, 2), ("AutoencoderTSNE", TSNEProjection, 2),
])
def test_make_projection_names_and_aliases(name, last, steps):
    estimator = make_projection(name, random_state=3)
    chain_steps = [s for _, s in estimator.steps] if isinstance(estimator, Pipeline) \
        else [estimator]
    assert len(chain_steps) == steps and isinstance(chain_steps[-1], last)
    assert all(s.random_state == 3 for s in chain_steps)


def test_make_projection_options_and_errors():
    som = make_projection("autoencoder-som", grid=7, sigma=2.0)
    assert som.steps[-1][1].grid == 7 and som.steps[-1][1].sigma == 2.0
    assert make_projection("pca", solver="full").solver == "full"
    with pytest.raises(ValueError, match="unknown projection 'isomap': known ones are pca, "
                                         "autoencoder, som, tsne, umap"):
        make_projection("isomap")
    with pytest.raises(TypeError, match="perplexity.*valid: .*grid"):
        make_projection("som", perplexity=5)
    with pytest.raises(TypeError, match="valid: .*n_neighbors"):
        make_projection("umap", neighbours=5)
    with pytest.raises(TypeError, match="nosuchstep__epochs"):
        make_projection("autoencoder-tsne", nosuchstep__epochs=5)
    assert set(P.PROJECTIONS) == {"pca", "autoencoder", "som", "tsne", "umap",
                                  "autoencoder-som", "autoencoder-tsne"}


@pytest.mark.parametrize("estimator", [
    PCAProjection(n_components=3, solver="full"), AutoencoderProjection(hidden=(8,)),
    SOMProjection(grid=(3, 4)), TSNEProjection(perplexity=5.0), UMAPProjection(n_neighbors=4),
], ids=lambda e: type(e).__name__)
def test_sklearn_clone_and_params(estimator):
    twin = clone(estimator)
    assert type(twin) is type(estimator) and twin is not estimator
    assert twin.get_params() == estimator.get_params()
    with pytest.raises(NotFittedError):
        twin.transform(np.zeros((2, 5)))


# ------------------------------------------------------------------------------------------------
# Several networks


def networks(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.cumsum(rng.normal(size=(n, 30)), axis=0).astype(np.float32) for n in (25, 18, 30)]


def test_fit_on_first_ignores_the_other_networks():
    trajectories = networks()
    pca = PCAProjection(solver="full")
    out = project_trajectories(pca, trajectories, fit_on="first")
    alone = PCAProjection(solver="full").fit(trajectories[0])
    np.testing.assert_array_equal(pca.components_, alone.components_)
    reference = PCA(n_components=2, svd_solver="full").fit(trajectories[0].astype(np.float64))
    assert_equal_up_to_sign(pca.components_.T, reference.components_.T, rtol=1e-4)
    assert [o.shape for o in out] == [(25, 2), (18, 2), (30, 2)]
    for o, t in zip(out, trajectories, strict=True):
        np.testing.assert_array_equal(o, alone.transform(t))
    wild = [trajectories[0]] + [t * 1000 + 50 for t in trajectories[1:]]
    again = PCAProjection(solver="full")
    out_wild = project_trajectories(again, wild, fit_on="first")
    np.testing.assert_array_equal(again.components_, pca.components_)
    np.testing.assert_array_equal(out_wild[0], out[0])
    pooled = PCAProjection(solver="full")
    project_trajectories(pooled, wild, fit_on="all")
    assert not np.allclose(np.abs(pooled.components_), np.abs(pca.components_), atol=1e-3)


def test_fit_on_all_splits_one_fit_transform():
    trajectories = networks()
    tsne = TSNEProjection(perplexity=10)
    out = project_trajectories(tsne, trajectories, fit_on="all")
    np.testing.assert_array_equal(np.vstack(out), tsne.embedding_)
    assert [len(o) for o in out] == [25, 18, 30]
    pca = PCAProjection(solver="full")
    out = project_trajectories(pca, trajectories)
    joined = np.vstack(trajectories)
    np.testing.assert_allclose(np.vstack(out), pca.transform(joined))
    reference = PCA(n_components=2, svd_solver="full").fit(joined.astype(np.float64))
    assert_equal_up_to_sign(np.vstack(out), reference.transform(joined), rtol=1e-4)
    first = TSNEProjection(perplexity=5)
    out = project_trajectories(first, trajectories, fit_on="first")
    np.testing.assert_array_equal(out[0], first.embedding_)
    assert [o.shape for o in out] == [(25, 2), (18, 2), (30, 2)]
    by_name = project_trajectories("pca", trajectories)
    assert [o.shape for o in by_name] == [(25, 2), (18, 2), (30, 2)]


def test_project_trajectories_errors():
    trajectories = networks()
    with pytest.raises(ValueError, match="empty"):
        project_trajectories(PCAProjection(), [])
    with pytest.raises(ValueError, match="network 1 has 29 parameters.*network 0 has 30"):
        project_trajectories(PCAProjection(), [trajectories[0], trajectories[1][:, :29]])
    with pytest.raises(ValueError, match="fit_on"):
        project_trajectories(PCAProjection(), trajectories, fit_on="last")
    broken = [t.copy() for t in trajectories]
    broken[2][4, 7] = np.nan
    with pytest.raises(ValueError, match="network 2 contains 1 NaN"):
        project_trajectories(PCAProjection(), broken)
    with pytest.raises(ValueError, match="network 1 must be a 2-D"):
        project_trajectories(PCAProjection(), [trajectories[0], trajectories[1][0]])


# ------------------------------------------------------------------------------------------------
# Persistence and errors


def test_save_and_load_give_identical_transforms(tmp_path, cluster_data, fitted_umap):
    X, _ = cluster_data
    new = X[:6] + 0.3
    fitted = [
        PCAProjection().fit(X),
        AutoencoderProjection(**FAST_AE).fit(X),
        SOMProjection().fit(X),
        TSNEProjection(perplexity=10).fit(X),
        fitted_umap[0],
        chain(AutoencoderProjection(n_components=4, **FAST_AE), SOMProjection(grid=5)).fit(X),
    ]
    for i, estimator in enumerate(fitted):
        path = save_projection(estimator, tmp_path / "models" / f"p{i}.joblib")
        loaded = load_projection(path)
        np.testing.assert_array_equal(loaded.transform(X), estimator.transform(X))
        if not isinstance(estimator, UMAPProjection):  # UMAP's new-point path compiles slowly
            np.testing.assert_array_equal(loaded.transform(new), estimator.transform(new))
    save_projection(fitted[0], tmp_path / "models" / "p1.joblib")  # overwrite in place
    assert isinstance(load_projection(tmp_path / "models" / "p1.joblib"), PCAProjection)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == \
        [f"p{i}.joblib" for i in range(6)]  # no temporary files left behind
    np.testing.assert_array_equal(load_projection(tmp_path / "models" / "p1.joblib")
                                  .transform(X), fitted[0].transform(X))


def test_saved_files_name_the_public_package(tmp_path):
    """A saved projection refers to learnscope.trajectory.projections.<Class> (as before the
    package was split into modules), not to the module that defines the class."""
    path = save_projection(PCAProjection().fit(low_rank(n=20, d=10)), tmp_path / "p.joblib")
    data = path.read_bytes()  # a pickle with raw array bytes: search the module name as bytes
    assert b"learnscope.trajectory.projections" in data
    assert b"learnscope.trajectory.projections." not in data


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = save_projection(PCAProjection().fit(low_rank(n=20, d=10)), tmp_path / "p.joblib")
    before = path.read_bytes()

    def failing_dump(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(P.io.joblib, "dump", failing_dump)
    with pytest.raises(RuntimeError, match="disk full"):
        save_projection(PCAProjection(), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["p.joblib"]


@pytest.mark.parametrize("make", [
    PCAProjection, lambda: AutoencoderProjection(**FAST_AE), SOMProjection, TSNEProjection,
    UMAPProjection,
], ids=["pca", "autoencoder", "som", "tsne", "umap"])
def test_bad_input_is_explained(make):
    X = low_rank(n=20, d=10).astype(np.float32)
    bad = X.copy()
    bad[3, 2], bad[5, 1], bad[6, 0] = np.nan, np.inf, -np.inf
    with pytest.raises(ValueError, match=r"1 NaN and 2 infinite.*snapshot 3, parameter 2.*drop"):
        make().fit(bad)
    with pytest.raises(ValueError, match=r"2-D array.*shape \(200,\).*reshape"):
        make().fit(X.ravel())
    with pytest.raises(ValueError, match="1 snapshot"):
        make().fit(X[:1])
    with pytest.raises(NotFittedError):
        make().transform(X)


def test_transform_checks_the_feature_count(cluster_data):
    X, _ = cluster_data
    for estimator in (PCAProjection().fit(X), SOMProjection(grid=5).fit(X),
                      AutoencoderProjection(**FAST_AE).fit(X)):
        with pytest.raises(ValueError, match="99 features per snapshot.*fitted on 100"):
            estimator.transform(X[:, :99])
        with pytest.raises(ValueError, match="NaN"):
            estimator.transform(np.full((2, 100), np.nan, dtype=np.float32))


@pytest.mark.parametrize(("module", "make", "extra"), [
    ("minisom", SOMProjection, "som"),
    ("openTSNE", TSNEProjection, "tsne"),
    ("umap", UMAPProjection, "umap"),
])
def test_missing_extra_names_it(monkeypatch, module, make, extra):
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=rf"pip install 'learnscope\[{extra}\]'"):
        make().fit(low_rank(n=20, d=10))
