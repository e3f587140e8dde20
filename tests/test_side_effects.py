"""Measuring never changes the trained model or the training.

DESIGN.md, "Measurement pass": weights frozen, BatchNorm in train mode on a *copy* (the trained
model's running statistics are untouched), fixed order and batch size, and the RNG states restored
afterwards, so a run measured at every step trains exactly like the same run unmeasured.

The references here are independent of learnscope: saved copies of the state taken before the
measurement, RNG draws replayed from saved states, a plain unmeasured training run, and a numpy
float64 re-implementation of BatchNorm (train mode) followed by a dictionary of pattern tuples.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import learnscope as ls
from learnscope.patterns import NonFiniteActivationError, unpack

IMAGE = (2, 5, 5)  # channels, height, width of the toy images
CLASSES = 3


class ConvNet(nn.Module):
    """Conv2d -> BatchNorm2d -> ReLU -> Dropout -> Linear -> F.relu -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(IMAGE[0], 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(4 * IMAGE[1] * IMAGE[2], 12)
        self.fc2 = nn.Linear(12, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.bn(self.conv(x))))
        h = F.relu(self.fc1(h.flatten(1)))  # a functional activation: layer "relu#0"
        return self.fc2(h)


EXPECTED_LAYERS = ["act", "relu#0"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _snapshot(model: nn.Module) -> dict:
    """Everything about a model that a measurement could change, copied."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "tensors": {k: v for k, v in model.state_dict(keep_vars=True).items()},
        "grads": {
            k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()
        },
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
        "hooks": {
            k: (len(m._forward_hooks), len(m._forward_pre_hooks))
            for k, m in model.named_modules()
        },
    }


def _assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, tensor in before["state"].items():
        assert torch.equal(after["state"][key], tensor), f"{key} changed"
    for key, tensor in before["tensors"].items():
        assert after["tensors"][key] is tensor, f"{key} was replaced by another tensor"
    for key, grad in before["grads"].items():
        if grad is None:
            assert after["grads"][key] is None, f"{key}.grad appeared"
        else:
            assert torch.equal(after["grads"][key], grad), f"{key}.grad changed"
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    assert after["hooks"] == before["hooks"]


def _used_model(train_mode: bool) -> ConvNet:
    """A model with non-default BN running stats, gradients, and one frozen parameter."""
    model = ConvNet()
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move the BN running stats off their defaults
            model(torch.randn(16, *IMAGE) * 2.0 + 0.5)
    model(torch.randn(8, *IMAGE)).sum().backward()  # populate .grad
    model.conv.bias.requires_grad_(False)
    model.train(train_mode)
    assert int(model.bn.num_batches_tracked) == 4  # 3 no-grad passes + 1 backward pass
    return model


def _rng_draws() -> tuple:
    return torch.rand(6), np.random.rand(6), random.random(), random.getrandbits(64)


def _assert_same_draws(got: tuple, expected: tuple) -> None:
    assert torch.equal(got[0], expected[0]), "torch RNG state changed"
    assert np.array_equal(got[1], expected[1]), "numpy RNG state changed"
    assert got[2] == expected[2] and got[3] == expected[3], "python random state changed"


def _measurement_data(kind: str, n: int = 40):
    x = torch.randn(n, *IMAGE)
    y = torch.randint(0, CLASSES, (n,))
    if kind == "tensor":
        return x, False
    if kind == "pair":
        return (x, y), True
    if kind == "dataloader":  # DataLoader iteration draws a seed from torch's global RNG
        return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False), True
    raise AssertionError(kind)


def test_dataloader_iteration_draws_from_the_global_rng():
    """Premise of the RNG checks below: without restoring, a pass over the data would show."""
    loader, _ = _measurement_data("dataloader")
    state = torch.get_rng_state()
    for _ in loader:
        pass
    assert not torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("data_kind", ["tensor", "pair", "dataloader"])
@pytest.mark.parametrize("batchnorm", ["train", "eval"])
@pytest.mark.parametrize("train_mode", [True, False], ids=["model-train", "model-eval"])
def test_count_leaves_model_and_rng_untouched(train_mode, batchnorm, data_kind):
    torch.manual_seed(random.randrange(2**31))
    np.random.seed(random.randrange(2**31))
    model = _used_model(train_mode)
    data, labels = _measurement_data(data_kind)
    before = _snapshot(model)
    torch_state, numpy_state, python_state = (
        torch.get_rng_state(), np.random.get_state(), random.getstate()
    )

    counts = ls.patterns.count(model, data, batch_size=16, batchnorm=batchnorm, labels=labels)

    got = _rng_draws()
    torch.set_rng_state(torch_state)
    np.random.set_state(numpy_state)
    random.setstate(python_state)
    _assert_same_draws(got, _rng_draws())
    _assert_unchanged(model, before)
    # the pass really ran through both the module and the functional activation
    assert list(counts) == EXPECTED_LAYERS
    assert counts["act"].evaluations == 40 * IMAGE[1] * IMAGE[2]
    assert counts["relu#0"].evaluations == 40


def test_global_torch_state_is_restored_after_a_pass_and_after_a_failing_pass():
    model = _used_model(True)
    x = torch.randn(20, *IMAGE)
    bad = x.clone()
    bad[3, 0, 1, 1] = math.nan
    previous_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        for data in (x, bad):
            before = _snapshot(model)
            state = torch.get_rng_state()
            with contextlib.suppress(NonFiniteActivationError):
                ls.patterns.count(model, data, batch_size=8)
            assert torch.get_float32_matmul_precision() == "medium"
            assert torch.is_grad_enabled()
            assert torch._C._len_torch_function_stack() == 0, "functional tap left active"
            assert torch.equal(state, torch.get_rng_state())
            _assert_unchanged(model, before)
    finally:
        torch.set_float32_matmul_precision(previous_precision)
    with pytest.raises(NonFiniteActivationError):
        ls.patterns.count(model, bad, batch_size=8)


# --------------------------------------------------------------------------- training twice

N_TRAIN = 48
BATCH = 8
EPOCHS = 5  # 6 steps per epoch: 30 SGD steps
STEPS = EPOCHS * (N_TRAIN // BATCH)


def _train(
    seed: int,
    loader_kind: str,
    *,
    store=None,
    disturb: str | None = None,
) -> tuple[dict[str, torch.Tensor], str | None]:
    """Train ConvNet for STEPS SGD steps; measure every step when `store` is given.

    Training draws from all three RNGs: torch (init, dropout, shuffling without a generator),
    numpy (input noise) and python's random (random flips). `disturb` is a deliberately leaky
    "measurement" used as a control: it shows that the comparison detects a side effect.
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    data_gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N_TRAIN, *IMAGE, generator=data_gen)
    y = torch.randint(0, CLASSES, (N_TRAIN,), generator=data_gen)
    dataset = TensorDataset(x, y)
    model = ConvNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    if loader_kind == "seeded":
        generator = torch.Generator().manual_seed(seed + 2)
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=generator)
    else:  # the sampler draws from torch's global RNG
        loader = DataLoader(dataset, batch_size=BATCH, shuffle=True)

    scope = None
    if store is not None:
        probes = [
            ls.ActivationPatterns(dataset, labels=True, batch_size=16, save_counts=True),
            ls.ActivationPatterns(
                DataLoader(dataset, batch_size=12, shuffle=False),
                batchnorm="eval",
                name="patterns_eval",
            ),
            ls.Weights(train=dataset, test=(x[:20], y[:20]), batch_size=16),
        ]
        scope = ls.Scope(model, probes, ls.every(1), store=store, name="measured",
                         total_steps=STEPS)
    step = 0
    with scope if scope is not None else contextlib.nullcontext():
        for epoch in range(EPOCHS):
            model.train()
            for inputs, labels in loader:
                if random.random() < 0.5:
                    inputs = inputs.flip(-1)
                noise = np.random.normal(0.0, 0.1, size=tuple(inputs.shape))
                inputs = inputs + torch.from_numpy(noise.astype(np.float32))
                loss = F.cross_entropy(model(inputs), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if scope is not None:
                    scope.step(step, epoch=epoch)
                if disturb == "torch_rng":
                    torch.rand(1)
                elif disturb == "numpy_rng":
                    np.random.rand()
                elif disturb == "python_rng":
                    random.random()
                elif disturb == "bn_stats":  # a pass on the model itself, not on a copy
                    with torch.no_grad():
                        model(x[:16])
                step += 1
    assert step == STEPS
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, (scope.run_id if scope is not None else None)


def _differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("loader_kind", ["seeded", "global"])
def test_training_measured_every_step_is_bit_identical_to_unmeasured(tmp_path, loader_kind):
    seed = random.randrange(2**31)
    plain, _ = _train(seed, loader_kind)
    again, _ = _train(seed, loader_kind)
    assert _differing(plain, again) == [], "training itself is not reproducible"

    db = tmp_path / "runs.db"
    measured, run_id = _train(seed, loader_kind, store=db)

    assert _differing(plain, measured) == []
    # every state dict entry, BatchNorm buffers included, was compared and training moved them
    assert {"bn.running_mean", "bn.running_var", "bn.num_batches_tracked"} <= set(plain)
    assert int(plain["bn.num_batches_tracked"]) == STEPS
    torch.manual_seed(seed)
    initial = ConvNet().state_dict()
    assert not torch.equal(initial["conv.weight"], plain["conv.weight"])
    assert not torch.equal(initial["bn.running_mean"], plain["bn.running_mean"])
    # ... and the measured run really measured, at every step, with both probes
    with ls.store.open(db) as store:
        runs = store.runs()
        assert list(runs["status"]) == ["finished"]
        for probe in ("patterns", "patterns_eval", "weights"):
            assert store.measured_steps(run_id, probe) == list(range(STEPS))
        assert list(store.snapshots(run_id).steps) == list(range(STEPS))
        entropy = store.metrics(run=run_id, measure="entropy", probe="patterns")
        assert sorted(set(entropy["layer"])) == sorted(EXPECTED_LAYERS)
        assert len(entropy) == STEPS * len(EXPECTED_LAYERS)


@pytest.mark.parametrize("disturb", ["torch_rng", "numpy_rng", "python_rng", "bn_stats"])
def test_control_a_leaky_measurement_would_be_detected(disturb):
    """The bit-identity check above is sensitive to each side effect it guards against."""
    seed = random.randrange(2**31)
    plain, _ = _train(seed, "global")
    leaky, _ = _train(seed, "global", disturb=disturb)
    assert _differing(plain, leaky) != []


# --------------------------------------------------------------------------- BatchNorm mode

BN_EPS = 1e-5


def _by_hand(x, lin_w, lin_b, gamma, beta, batch_size, *, mean=None, var=None) -> Counter:
    """Patterns of Linear -> BatchNorm1d -> ReLU in float64 numpy, counted as tuples.

    mean/var None: each batch normalised with its own mean and biased variance (train mode);
    else with the given running statistics (eval mode). Returns the counts and the smallest
    |pre-activation| seen (to stay clear of float32-vs-float64 ties at 0).
    """
    counts: Counter = Counter()
    margin = math.inf
    for start in range(0, x.shape[0], batch_size):
        z = x[start:start + batch_size] @ lin_w.T + lin_b
        mu = z.mean(axis=0) if mean is None else mean
        sigma2 = z.var(axis=0) if var is None else var  # numpy var: biased (ddof=0)
        out = (z - mu) / np.sqrt(sigma2 + BN_EPS) * gamma + beta
        margin = min(margin, float(np.abs(out).min()))
        for row in out > 0:
            counts[tuple(int(s) for s in row)] += 1
    return counts, margin


def _as_tuples(layer_counts) -> Counter:
    states = unpack(layer_counts.keys, layer_counts.layout)
    return Counter({tuple(int(s) for s in row): int(c)
                    for row, c in zip(states, layer_counts.counts, strict=True)})


@pytest.mark.parametrize("train_mode", [True, False], ids=["model-train", "model-eval"])
def test_batchnorm_train_mode_uses_batch_statistics(train_mode):
    n, d_in, width, batch_size = 103, 5, 6, 25  # batches of 25, 25, 25, 25 and 3
    rng = np.random.default_rng(random.randrange(2**31))
    for _ in range(50):  # fresh data until no pre-activation is within float32 noise of 0
        x = rng.normal(size=(n, d_in)) * rng.uniform(0.5, 3.0, size=d_in)
        lin_w = rng.normal(size=(width, d_in))
        lin_b = rng.normal(size=width)
        gamma = rng.uniform(0.5, 2.0, size=width) * rng.choice([-1.0, 1.0], size=width)
        beta = rng.normal(scale=0.5, size=width)
        running_mean = np.full(width, 100.0)  # deliberately wrong running statistics
        running_var = rng.uniform(0.5, 2.0, size=width)
        expected_train, margin_train = _by_hand(x, lin_w, lin_b, gamma, beta, batch_size)
        expected_eval, margin_eval = _by_hand(x, lin_w, lin_b, gamma, beta, batch_size,
                                              mean=running_mean, var=running_var)
        if min(margin_train, margin_eval) > 1e-3:
            break
    else:
        pytest.fail("could not draw data clear of ties")

    model = nn.Sequential(nn.Linear(d_in, width), nn.BatchNorm1d(width), nn.ReLU())
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(lin_w))
        model[0].bias.copy_(torch.from_numpy(lin_b))
        model[1].weight.copy_(torch.from_numpy(gamma))
        model[1].bias.copy_(torch.from_numpy(beta))
        model[1].running_mean.copy_(torch.from_numpy(running_mean))
        model[1].running_var.copy_(torch.from_numpy(running_var))
    model.train(train_mode)
    inputs = torch.from_numpy(x).float()
    before = _snapshot(model)

    train = ls.patterns.count(model, inputs, batch_size=batch_size, batchnorm="train")["2"]
    evaluated = ls.patterns.count(model, inputs, batch_size=batch_size, batchnorm="eval")["2"]

    assert _as_tuples(train) == expected_train
    assert _as_tuples(evaluated) == expected_eval
    assert _as_tuples(train) != _as_tuples(evaluated)
    assert train.evaluations == evaluated.evaluations == n
    _assert_unchanged(model, before)  # the running statistics stayed deliberately wrong
