"""The counting backends agree: torch (device-resident, here on the CPU; on CUDA when present)
and NumPy give identical PatternCounts on random models, and the backend option is checked and
recorded only when it is not the default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import learnscope as ls
import learnscope.patterns as P
from learnscope.patterns import device_counts
from learnscope.patterns.counts import hash_rows

FIELDS = ("keys", "counts", "joint_index", "joint_labels", "joint_counts")


def assert_same_counts(a: P.PatternCounts, b: P.PatternCounts) -> None:
    assert (a.width, a.breakpoints, a.mode, a.table_size) == (
        b.width, b.breakpoints, b.mode, b.table_size)
    for field in FIELDS:
        mine, theirs = getattr(a, field), getattr(b, field)
        if mine is None or theirs is None:
            assert mine is None and theirs is None, field
        else:
            assert mine.dtype == theirs.dtype == np.int64, field
            assert np.array_equal(mine, theirs), field


def random_model(kind: str, width: int, activation: nn.Module) -> tuple[nn.Module, torch.Tensor]:
    if kind == "conv":
        model = nn.Sequential(nn.Conv2d(3, width, 3), nn.BatchNorm2d(width), activation)
        return model, torch.randn(50, 3, 7, 7) * 3
    model = nn.Sequential(nn.Linear(12, width), activation)
    return model, torch.randn(300, 12) * 3


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("activation", ["relu", "relu6", "hardtanh"])
@pytest.mark.parametrize("width", [1, 63, 64, 65, 130])
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_torch_and_numpy_backends_give_identical_counts(kind, width, activation, labels):
    torch.manual_seed(width)
    make = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardtanh": nn.Hardtanh}[activation]
    model, x = random_model(kind, width, make())
    data = (x, torch.randint(0, 7, (x.shape[0],))) if labels else x
    numpy_counts = P.count(model, data, labels=labels, batch_size=32, backend="numpy")
    torch_counts = P.count(model, data, labels=labels, batch_size=32, backend="torch")
    assert list(numpy_counts) == list(torch_counts) == [str(len(model) - 1)]
    for layer, counts in numpy_counts.items():
        assert_same_counts(counts, torch_counts[layer])
        assert counts.evaluations == x.shape[0] * (25 if kind == "conv" else 1)


@pytest.mark.parametrize("table_size", [1, 7, 1000, 1 << 20])
def test_hash_lists_have_the_same_slots_on_every_backend(table_size):
    torch.manual_seed(1)
    model, x = random_model("conv", 65, nn.ReLU())
    data = (x, torch.randint(0, 3, (x.shape[0],)))
    by_backend = [P.count(model, data, labels=True, mode="hashlist", table_size=table_size,
                          backend=backend)["2"] for backend in ("numpy", "torch")]
    assert_same_counts(*by_backend)
    assert by_backend[1].occupancy == by_backend[0].occupancy


def test_the_torch_hash_is_the_numpy_hash_bit_for_bit():
    keys = torch.randint(-(2**63), 2**63 - 1, (5000, 3))
    keys[:3] = torch.tensor([[0, -1, -(2**63)], [2**63 - 1, 1, 0], [-1, -1, -1]])
    expected = hash_rows(keys.numpy())
    hashed = device_counts.hash_rows(keys)
    assert np.array_equal(hashed.numpy().view(np.uint64), expected)
    for modulus in (1, 7, 1000, 1 << 20, (1 << 61) - 1):
        slots = device_counts.unsigned_remainder(hashed, modulus).numpy()
        assert np.array_equal(slots, (expected % np.uint64(modulus)).astype(np.int64))


def test_every_measure_is_the_same_on_both_backends():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 70), nn.ReLU(), nn.Linear(70, 20), nn.ReLU6())
    x, y = torch.randn(400, 6), torch.randint(0, 4, (400,))
    rows = {}
    for backend in ("numpy", "torch"):
        probe = ls.ActivationPatterns((x, y), labels=True, backend=backend, batch_size=64)
        with ls.Scope(model, [probe], store=None, name=backend) as scope:
            first = scope.step(0)["patterns"]
            with torch.no_grad():
                model[0].bias.add_(0.3)
            second = scope.step(1)["patterns"]
            with torch.no_grad():
                model[0].bias.sub_(0.3)
        rows[backend] = (first.rows, second.rows)
    def comparable(result_rows):  # NaN (since_last at the first step) made comparable
        return [(layer, i, name, "nan" if value != value else value)
                for layer, i, name, value in result_rows]

    assert len(rows["numpy"][0]) > 30
    for numpy_rows, torch_rows in zip(rows["numpy"], rows["torch"], strict=True):
        assert comparable(numpy_rows) == comparable(torch_rows)  # bit for bit


def test_an_unknown_backend_is_one_clear_error():
    model, x = random_model("linear", 4, nn.ReLU())
    message = r"unknown counting backend 'cuda'; use one of \('auto', 'numpy', 'torch'\)"
    with pytest.raises(ValueError, match=message):
        P.count(model, x, backend="cuda")
    with pytest.raises(ValueError, match=message):
        ls.ActivationPatterns(x, backend="cuda")


def test_backend_is_recorded_only_when_not_the_default():
    x = torch.randn(10, 4)
    assert "backend" not in ls.ActivationPatterns(x).config()
    assert "backend" not in ls.ActivationPatterns(x, backend="auto").config()
    assert ls.ActivationPatterns(x, backend="torch").config()["backend"] == "torch"
    assert ls.ActivationPatterns(x, backend="numpy").config()["backend"] == "numpy"


def test_auto_counts_cpu_activations_with_numpy_and_others_with_torch():
    from learnscope.patterns.activation_patterns import resolved_backend

    assert resolved_backend("auto", torch.device("cpu")) == "numpy"
    assert resolved_backend("auto", torch.device("cuda", 0)) == "torch"
    assert resolved_backend("torch", torch.device("cpu")) == "torch"
    assert resolved_backend("numpy", torch.device("cuda", 0)) == "numpy"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("width", [1, 16, 63, 64, 65, 130])
def test_cuda_counts_equal_the_cpu_counts(width, labels):
    torch.manual_seed(width)
    model, x = random_model("conv", width, nn.ReLU6())
    data = (x, torch.randint(0, 5, (x.shape[0],))) if labels else x
    on_cpu = P.count(model, data, labels=labels, backend="numpy")["2"]
    for backend in ("auto", "torch", "numpy"):
        on_gpu = P.count(model.cuda(), data, labels=labels, backend=backend)["2"]
        model.cpu()
        assert_same_counts(on_cpu, on_gpu)
