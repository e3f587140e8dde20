"""Exact pattern counting against a brute-force reference: a dict over tuples of unit states.

Every counting test runs on both backends: "numpy" (keys counted on the host) and "torch" (the
device-resident counter of `learnscope.patterns.device_counts`, here on the CPU); the torch
backend is also checked on CUDA when a GPU is present."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import learnscope.patterns as P
from learnscope.patterns.counts import DENSE_MAX_CELLS, FOLD_MIN_ROWS, PatternCounter, hash_rows
from learnscope.patterns.device_counts import DevicePatternCounter
from learnscope.patterns.keys import PatternLayout, pack, unpack

WIDTHS = [1, 7, 16, 33, 64, 65, 130]
BACKENDS = ["numpy", "torch"]

# activation module, breakpoints, values to draw inputs from (hitting every breakpoint exactly)
ACTIVATIONS = {
    "relu": (nn.ReLU, (0.0,), [-1.5, 0.0, 0.0, 2.0]),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), (0.0,), [-1.0, 0.0, 1.0]),
    "prelu": (nn.PReLU, (0.0,), [-0.5, 0.0, 0.5]),
    "relu6": (nn.ReLU6, (0.0, 6.0), [-1.0, 0.0, 3.0, 6.0, 7.0]),
    "hardtanh": (nn.Hardtanh, (-1.0, 1.0), [-2.0, -1.0, 0.0, 1.0, 2.0]),
}


def brute_force(z: torch.Tensor, breakpoints, unit_axis: int, labels=None) -> Counter:
    """Count patterns the slow, obvious way: one tuple of unit states per evaluation."""
    moved = torch.movedim(z, unit_axis, -1)  # (n, positions..., d)
    n, d = moved.shape[0], moved.shape[-1]
    flat = moved.reshape(n, -1, d).tolist()
    counter: Counter = Counter()
    for sample, positions in enumerate(flat):
        for vector in positions:
            pattern = tuple(sum(1 for b in breakpoints if value > b) for value in vector)
            key = pattern if labels is None else (pattern, int(labels[sample]))
            counter[key] += 1
    return counter


def as_counter(counts: P.PatternCounts) -> Counter:
    """Decode counted keys back to state tuples."""
    states = unpack(counts.keys, counts.layout)
    return Counter(
        {tuple(int(s) for s in row): int(c) for row, c in zip(states, counts.counts, strict=True)}
    )


def as_joint_counter(counts: P.PatternCounts) -> Counter:
    states = unpack(counts.keys, counts.layout)
    out: Counter = Counter()
    for index, label, c in zip(
        counts.joint_index, counts.joint_labels, counts.joint_counts, strict=True
    ):
        out[(tuple(int(s) for s in states[index]), int(label))] += int(c)
    return out


def draw(shape, values, rng: np.random.Generator, repeats: int = 1) -> torch.Tensor:
    """Inputs from a small value set, so patterns repeat and ties hit the breakpoints."""
    base = rng.choice(np.asarray(values, dtype=np.float32), size=shape)
    if repeats > 1:  # make whole samples repeat so wide layers also have repeated patterns
        base = np.concatenate([base] * repeats)[: shape[0]]
    return torch.from_numpy(np.ascontiguousarray(base))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_exact_counts_equal_brute_force(width, activation, kind, backend):
    make, breakpoints, values = ACTIVATIONS[activation]
    rng = np.random.default_rng()
    if kind == "linear":
        z = draw((150, width), values, rng, repeats=3)
    else:
        z = draw((12, width, 3, 2), values, rng)
    z = z[torch.from_numpy(rng.permutation(z.shape[0]))]
    model = nn.Sequential(make())
    counts = P.count(model, z, batch_size=37, backend=backend)
    assert list(counts) == ["0"]
    got = counts["0"]
    expected = brute_force(z, breakpoints, 1)
    assert got.width == width and got.states == len(breakpoints) + 1
    assert got.evaluations == sum(expected.values()) == z.numel() // width
    assert got.distinct == len(expected)
    assert as_counter(got) == expected


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width", [5, 16, 20, 70])
def test_joint_label_counts_equal_brute_force(width, backend):
    # width 20 with 5 labels: 2**20 keys x 5 labels outgrow the dense table, which spills to
    # the sorted one while counting
    rng = np.random.default_rng()
    z = draw((40, width, 2, 2), [-1.0, 0.0, 1.0], rng)
    y = torch.from_numpy(rng.integers(0, 5 if width == 20 else 4, size=40))
    y[-1] = 4 if width == 20 else 3  # the largest label comes last: the table grows late
    assert width != 20 or (1 << width) * 5 > DENSE_MAX_CELLS  # (so width 20 spills)
    counts = P.count(nn.Sequential(nn.ReLU()), (z, y), labels=True, batch_size=16,
                     backend=backend)["0"]
    expected = brute_force(z, (0.0,), 1, labels=y)
    assert as_joint_counter(counts) == expected
    marginal: Counter = Counter()
    for (pattern, _), c in expected.items():
        marginal[pattern] += c
    assert as_counter(counts) == marginal


@pytest.mark.parametrize("backend", BACKENDS)
def test_units_last_for_sequence_inputs_and_channels_for_conv1d(backend):
    rng = np.random.default_rng()
    z = draw((6, 5, 9), [-1.0, 0.0, 1.0], rng)  # (n, positions, units)
    seq = P.count(nn.Sequential(nn.ReLU()), z, backend=backend)["0"]
    assert seq.width == 9 and as_counter(seq) == brute_force(z, (0.0,), 2)

    class Conv1dNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(5, 5, 1)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(x) + 0 * self.conv(x)

    # a model with Conv1d: (n, channels, length)
    conv = P.count(Conv1dNet(), z, backend=backend)["act"]
    assert conv.width == 5 and as_counter(conv) == brute_force(z, (0.0,), 1)


def test_functional_calls_and_shared_modules_are_layers_in_forward_order():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 6)
            self.fc2 = nn.Linear(6, 6)
            self.shared = nn.ReLU()

        def forward(self, x):
            a = F.relu(self.fc1(x))
            b = self.shared(self.fc2(a))
            c = torch.relu(self.fc2(b))
            d = F.hardtanh(self.fc2(c), -0.5, 0.5)
            return self.shared(d.relu())

    torch.manual_seed(0)
    net = Net()
    x = torch.randn(50, 4)
    counts = P.count(net, x)
    assert list(counts) == ["relu#0", "shared", "relu#1", "hardtanh#0", "relu#2", "shared#1"]
    assert counts["hardtanh#0"].breakpoints == (-0.5, 0.5)
    with torch.no_grad():
        z = net.fc2(torch.relu(net.fc2(torch.relu(net.fc2(F.relu(net.fc1(x)))))))
    assert as_counter(counts["hardtanh#0"]) == brute_force(z, (-0.5, 0.5), 1)


def test_explicit_layer_selection_by_module_and_name():
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU6())
    x = torch.randn(30, 3)
    assert list(P.count(net, x, layers=[net[3]])) == ["3"]
    assert list(P.count(net, x, layers=["1"])) == ["1"]
    _, index = P.count_layers(net, x, layers=["3"])
    assert index == {"3": 1}  # index among all activation layers, whatever is selected


def test_pack_layout_is_the_documented_bit_order():
    z = torch.tensor([[1.0, -1.0, 2.0]])  # states 1, 0, 1 -> bits 0 and 2 -> 5
    assert pack(z, PatternLayout(3, (0.0,)), 1).tolist() == [[5]]
    z3 = torch.tensor([[7.0, 3.0, -1.0]])  # ReLU6 states 2, 1, 0 -> 2 + 1 * 4 = 6
    assert pack(z3, PatternLayout(3, (0.0, 6.0)), 1).tolist() == [[6]]
    wide = torch.full((1, 65), -1.0)
    wide[0, 63] = wide[0, 64] = 1.0  # bit 63 of word 0 (sign bit) and bit 0 of word 1
    assert pack(wide, PatternLayout(65, (0.0,)), 1).tolist() == [[-(2**63), 1]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("words", [1, 2])
def test_counter_folds_many_batches_exactly(backend, words):
    rng = np.random.default_rng()
    layout = PatternLayout(40 if words == 1 else 100, (0.0,))
    counter = PatternCounter(layout) if backend == "numpy" else DevicePatternCounter(layout)
    seen: list[np.ndarray] = []
    for _ in range(30):  # 30 batches of 10k keys from a 150k-key space: many folds
        keys = rng.integers(0, 150_000, size=(10_000, words)) * 7_919 - 2**40  # signs mixed
        counter.add(keys if backend == "numpy" else torch.from_numpy(keys))
        seen.append(keys)
    assert 30 * 10_000 > 2 * FOLD_MIN_ROWS  # (several folds happened)
    result = counter.result()
    values, frequencies = np.unique(np.concatenate(seen), axis=0, return_counts=True)
    assert np.array_equal(result.keys, values)  # same (signed lexicographic) order
    assert np.array_equal(result.counts, frequencies)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("width", [6, 40, 100])
def test_two_halves_merge_to_the_whole(width, labels, backend):
    rng = np.random.default_rng()
    z = draw((80, width, 2, 2), [-1.0, 0.0, 1.0], rng)
    y = torch.from_numpy(rng.integers(0, 3, size=80))
    model = nn.Sequential(nn.ReLU())
    options = dict(labels=labels, backend=backend)
    first = P.count(model, (z[:33], y[:33]) if labels else z[:33], **options)["0"]
    second = P.count(model, (z[33:], y[33:]) if labels else z[33:], **options)["0"]
    whole = P.count(model, (z, y) if labels else z, **options)["0"]
    merged = first.merge(second)
    assert np.array_equal(merged.keys, whole.keys)
    assert np.array_equal(merged.counts, whole.counts)
    if labels:
        assert as_joint_counter(merged) == as_joint_counter(whole)
        assert P.measures.mutual_information(merged) == pytest.approx(
            P.measures.mutual_information(whole), abs=1e-12
        )


def test_merge_rejects_different_layers():
    a = P.count(nn.Sequential(nn.ReLU()), torch.randn(10, 4))["0"]
    b = P.count(nn.Sequential(nn.ReLU()), torch.randn(10, 5))["0"]
    with pytest.raises(ValueError, match="different kinds"):
        a.merge(b)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("width", [10, 48, 90])
def test_hashlist_equals_exact_with_a_large_table(width, backend):
    # seeded: with ~200 keys in 2^22 slots a collision has a ~0.5% chance, which is the hash
    # list's real behaviour, not a defect; these draws are known to be collision-free
    rng = np.random.default_rng(width)
    z = draw((200, width), [-1.0, 0.0, 1.0], rng, repeats=4)
    model = nn.Sequential(nn.ReLU())
    exact = P.count(model, z, backend=backend)["0"]
    hashed = P.count(model, z, mode="hashlist", table_size=1 << 22, backend=backend)["0"]
    assert hashed.mode == "hashlist" and exact.occupancy is None
    assert hashed.distinct == exact.distinct  # no collision among a few hundred keys
    assert sorted(hashed.counts.tolist()) == sorted(exact.counts.tolist())
    assert hashed.occupancy == exact.distinct / (1 << 22)
    for name in ("entropy", "rel_entropy", "max_frac", "distinct_frac"):
        assert getattr(P.measures, name)(hashed) == pytest.approx(
            getattr(P.measures, name)(exact), abs=1e-12
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_hashlist_collisions_merge_into_slots(backend):
    rng = np.random.default_rng()
    z = draw((300, 20), [-1.0, 1.0], rng)
    model = nn.Sequential(nn.ReLU())
    exact = P.count(model, z, backend=backend)["0"]
    one = P.count(model, z, mode="hashlist", table_size=1, backend=backend)["0"]
    assert one.distinct == 1 and one.occupancy == 1.0 and one.counts.tolist() == [300]
    small = P.count(model, z, mode="hashlist", table_size=7, backend=backend)["0"]
    slots = (hash_rows(exact.keys) % np.uint64(7)).astype(np.int64)
    expected = Counter()
    for slot, c in zip(slots.tolist(), exact.counts.tolist(), strict=True):
        expected[slot] += c
    assert dict(zip(small.keys[:, 0].tolist(), small.counts.tolist(), strict=True)) == dict(
        expected
    )
    assert small.occupancy == len(expected) / 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_and_load_round_trip(tmp_path, backend):
    rng = np.random.default_rng()
    z = draw((60, 70), [-1.0, 1.0], rng)
    y = torch.from_numpy(rng.integers(0, 5, size=60))
    counts = P.count(nn.Sequential(nn.ReLU6()), (z, y), labels=True, backend=backend)["0"]
    path = counts.save(tmp_path / "layer.npz")
    loaded = P.PatternCounts.load(path)
    assert loaded.width == 70 and loaded.breakpoints == (0.0, 6.0) and loaded.has_labels
    for field in ("keys", "counts", "joint_index", "joint_labels", "joint_counts"):
        assert np.array_equal(getattr(loaded, field), getattr(counts, field))
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, no leftovers
