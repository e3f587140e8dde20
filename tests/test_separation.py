"""Separation fuzziness, the law fit and the Separation probe against float64 NumPy references."""

from __future__ import annotations

import random
import sqlite3

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

import learnscope as ls
from learnscope import separation as S

pytestmark = pytest.mark.usefixtures("one_thread")


def reference(x, y, balanced=True, max_dim=None):
    """D = Tr(Σ_W Σ_B⁺) written out from the definitions (DESIGN.md), float64."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y)
    if max_dim is not None and x.shape[1] > max_dim:
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        x = x @ vt[:max_dim].T
    classes = np.unique(y)
    n, c, p = len(x), len(classes), x.shape[1]
    mu = x.mean(axis=0)
    sigma_b, sigma_w = np.zeros((p, p)), np.zeros((p, p))
    for k in classes:
        xc = x[y == k]
        mc = xc.mean(axis=0)
        scatter = (xc - mc).T @ (xc - mc)
        if balanced:
            sigma_b += np.outer(mc - mu, mc - mu) / c
            sigma_w += scatter / len(xc) / c
        else:
            sigma_b += len(xc) * np.outer(mc - mu, mc - mu) / n
            sigma_w += scatter / n
    # rank <= C - 1: rcond well above rounding noise, well below the real eigenvalues
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-9, hermitian=True)))


def blobs(n, p, c, seed=0, imbalanced=False, offset=0.0):
    rng = np.random.default_rng(seed)
    if imbalanced:
        y = np.concatenate([np.full(3 + 5 * k, k) for k in range(c)])
        rng.shuffle(y)
    else:
        y = np.arange(n) % c
    centres = rng.normal(size=(c, p)) * 2.0
    x = centres[y] + rng.normal(size=(len(y), p)) * rng.uniform(0.5, 2.0, size=p) + offset
    return x, y


@pytest.mark.parametrize("n,p,c", [(60, 2, 5), (90, 7, 3), (30, 50, 4), (200, 20, 10)])
@pytest.mark.parametrize("balanced", [True, False])
@pytest.mark.parametrize("imbalanced", [False, True])
def test_fuzziness_equals_the_definition(n, p, c, balanced, imbalanced):
    x, y = blobs(n, p, c, seed=n + p, imbalanced=imbalanced)
    got = S.fuzziness(x, y, balanced=balanced)
    assert got == pytest.approx(reference(x, y, balanced), rel=1e-8)
    assert S.fuzziness(torch.tensor(x).reshape(len(x), 1, -1), torch.tensor(y),
                       balanced=balanced) == pytest.approx(got, rel=1e-12)


def test_streamed_equals_all_at_once_and_far_from_origin():
    x, y = blobs(0, 12, 4, imbalanced=True, seed=3, offset=1e4)
    moments = S.ClassMoments(12)
    for start in range(0, len(x), 7):
        moments.update(x[start:start + 7], y[start:start + 7])
    for balanced in (True, False):
        whole = S.fuzziness(x, y, balanced=balanced)
        assert moments.fuzziness(balanced) == pytest.approx(whole, rel=1e-10)
        # the shifted moments keep the 1e4 offset from cancelling: same as the centred data
        assert whole == pytest.approx(reference(x - 1e4, y, balanced), rel=1e-8)


def test_invariances_and_balanced_equals_imbalanced_on_balanced_classes():
    x, y = blobs(120, 9, 4, seed=5)
    d = S.fuzziness(x, y)
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(9, 9)))
    assert S.fuzziness(x @ q, y) == pytest.approx(d, rel=1e-9)
    assert S.fuzziness(37.5 * x, y) == pytest.approx(d, rel=1e-9)
    assert S.fuzziness(x, y, balanced=False) == pytest.approx(d, rel=1e-10)


def test_max_dim_equals_the_reference_on_pca_projected_features():
    x, y = blobs(80, 30, 5, seed=9, imbalanced=True)
    for balanced in (True, False):
        got = S.fuzziness(x, y, balanced=balanced, max_dim=6)
        assert got == pytest.approx(reference(x, y, balanced, max_dim=6), rel=1e-8)
    assert S.fuzziness(x, y, max_dim=30) == pytest.approx(S.fuzziness(x, y), rel=1e-12)


def test_errors():
    x, y = blobs(40, 5, 4)
    with pytest.raises(ValueError, match="at least 2 classes"):
        S.fuzziness(x, np.zeros(40, dtype=int))
    with pytest.raises(ValueError, match="more samples than classes"):
        S.fuzziness(x[:3], np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"classes \[4\] have no sample"):
        S.ClassMoments(5, num_classes=5).update(x, y).fuzziness()
    with pytest.raises(ValueError, match="do not match"):
        S.fuzziness(x, y[:-1])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        S.fuzziness(bad, y)
    with pytest.raises(ValueError, match="integer"):
        S.fuzziness(x, y.astype(float))


def _mlp(depth=4, width=12, features=10, classes=3, seed=0):
    torch.manual_seed(seed)
    return ls.models.create("mlp", in_features=features, hidden=[width] * depth,
                            num_classes=classes, batchnorm=True)


def _data(n=90, features=10, classes=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g), torch.arange(n) % classes


def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {k: m.training for k, m in model.named_modules()})


def test_measure_mlp_equals_a_manual_forward_and_has_no_side_effects():
    model = _mlp()
    x, y = _data()
    model.train()
    state, training = _snapshot(model)
    torch.manual_seed(123)
    rng_before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    values = S.measure(model, (x, y), batch_size=30)
    after = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    assert torch.equal(rng_before[0], after[0]) and np.array_equal(rng_before[1], after[1])
    assert rng_before[2] == after[2]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert {k: m.training for k, m in model.named_modules()} == training
    assert list(values) == ["input", "features.2", "features.5", "features.8", "features.11"]
    # manual forward: each batch of 30 through Linear -> BatchNorm (batch statistics) -> ReLU
    layers = list(model.features)
    per_layer = {name: [] for name in values}
    for start in range(0, 90, 30):
        h = x[start:start + 30].double()
        per_layer["input"].append(h.numpy())
        for i in range(0, len(layers), 3):
            lin, bn = layers[i], layers[i + 1]
            h = h @ lin.weight.double().T + lin.bias.double()
            h = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + bn.eps)
            h = torch.relu(h * bn.weight.double() + bn.bias.double())
            per_layer[f"features.{i + 2}"].append(h.detach().numpy())
    for name, chunks in per_layer.items():
        assert values[name] == pytest.approx(reference(np.concatenate(chunks), y.numpy()),
                                             rel=1e-4), name


def test_subspace_method_equals_moments_and_explicit_layers():
    model = _mlp(depth=2, width=40)
    x, y = _data(n=60)
    moments = S.measure(model, (x, y), method="moments", batch_size=20)
    subspace = S.measure(model, (x, y), method="subspace", batch_size=20)
    for name in moments:
        assert subspace[name] == pytest.approx(moments[name], rel=1e-9)
    chosen = S.measure(model, (x, y), layers=[model.features[1], "features.5"], batch_size=20)
    assert list(chosen) == ["input", "features.1", "features.5"]
    assert chosen["features.5"] == pytest.approx(moments["features.5"], rel=1e-12)
    with pytest.raises(ValueError, match="unknown layer 'nope'"):
        S.measure(model, (x, y), layers=["nope"])
    bare = nn.Sequential()
    bare.add_module("f", nn.Flatten())
    with pytest.raises(ValueError, match="found no layers"):
        S.measure(bare, (x, y))


def test_feature_points_of_registry_models():
    resnet = ls.models.create("resnet8", num_classes=3)
    assert S.feature_points(resnet) == ["stages.0.0", "stages.1.0", "stages.2.0"]
    assert S.feature_points(ls.models.create("small_cnn")) == ["features.2", "features.5"]
    plain = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 5), nn.Linear(5, 2))
    assert S.feature_points(plain) == ["1", "2"]
    x = torch.randn(24, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    values = S.measure(resnet, (x, torch.arange(24) % 3), batch_size=12)
    assert list(values) == ["input", "stages.0.0", "stages.1.0", "stages.2.0"]
    assert all(v > 0 for v in values.values())


def test_fit_law_against_polyfit_and_linregress():
    exact = [50.0] + [7.0 * 0.6**layer for layer in range(1, 9)]
    fit = S.fit_law(exact)
    assert fit.rho == pytest.approx(0.6, rel=1e-12)
    assert fit.pearson_r == pytest.approx(-1.0, abs=1e-12) and fit.r2 == pytest.approx(1.0)
    assert (fit.first, fit.last, fit.n_layers) == (1, 8, 8)
    rng = np.random.default_rng(0)
    noisy = {f"l{i}": 3.0 * 0.8**i * np.exp(rng.normal(0, 0.1)) for i in range(12)}
    fit = S.fit_law(noisy, first=2, last=10)
    idx = np.arange(2, 11)
    logs = np.log(list(noisy.values()))[2:11]
    slope, intercept = np.polyfit(idx, logs, 1)
    lr = stats.linregress(idx, logs)
    assert fit.slope == pytest.approx(slope, rel=1e-10)
    assert fit.intercept == pytest.approx(intercept, rel=1e-10)
    assert fit.pearson_r == pytest.approx(lr.rvalue, rel=1e-10)
    assert fit.r2 == pytest.approx(lr.rvalue**2, rel=1e-10)
    with pytest.raises(ValueError, match="at least 2 layers"):
        S.fit_law([1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        S.fit_law([1.0, 2.0, 0.0])


def test_probe_in_a_scope_writes_rows(tmp_path):
    model = _mlp(depth=3)
    x, y = _data()
    path = tmp_path / "s.db"
    probes = [ls.Separation((x, y), batch_size=30), ls.ActivationPatterns(x, measures=["entropy"])]
    with ls.Scope(model, probes, ls.at([0, 2]), path, name="sep", total_steps=3) as scope:
        for step in range(3):
            scope.step(step)
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT step, layer, layer_index, measure, value FROM metrics "
            "WHERE probe = 'separation' ORDER BY step, layer_index, measure"
        ).fetchall()
    expected = S.measure(model, (x, y), batch_size=30)
    at0 = [r for r in rows if r[0] == 0]
    fuzz = [(r[1], r[2], r[4]) for r in at0 if r[3] == "fuzziness"]
    assert [(name, i) for name, i, _ in fuzz] == [(n, i) for i, n in enumerate(expected)]
    for name, _, value in fuzz:
        assert value == pytest.approx(expected[name], rel=1e-12)
    law = {r[3]: r[4] for r in at0 if r[1] == "law"}
    assert set(law) == set(S.LAW_MEASURES) and {r[2] for r in at0 if r[1] == "law"} == {-1}
    fit = S.fit_law(expected)
    assert law["law_rho"] == pytest.approx(fit.rho) and law["law_last"] == 3
    assert ls.Separation((x, y)).config()["type"] == "Separation"


def test_moments_method_refuses_layers_too_wide(monkeypatch):
    import importlib

    measure_module = importlib.import_module("learnscope.separation.measure")
    monkeypatch.setattr(measure_module, "MOMENTS_MAX_FEATURES", 8)
    model = _mlp(depth=1, width=12)
    x, y = _data(n=30)
    with pytest.raises(ValueError, match="method='subspace'"):
        S.measure(model, (x, y), method="moments")
    with pytest.raises(ValueError, match="max_dim needs"):
        S.measure(model, (x, y), method="subspace", max_dim=4)
