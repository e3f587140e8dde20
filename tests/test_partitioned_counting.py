"""Partitioned exact pattern counting across ranks (merge="partition").

Unit tests: the partial-terms decomposition of every measure, on random tables split by the key
hash into k partitions, against brute force on the raw keys (Python dicts and sets, Fractions);
exact sums; saved per-partition counts read back whole and at other world sizes.
torchrun tests (gloo, CPU): worlds 1, 2 and 3 measure exactly what one process measures
(integer measures and entropies equal to the last bit), through `count`, the measures and a
Scope run, each rank holding ~1/world of the patterns and the gather collective never called.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from test_distributed import WORKERS, assert_same_counts, check_ran, free_port
from torch import nn

import learnscope as ls
import learnscope.patterns as P
from learnscope.patterns import measures as M
from learnscope.patterns.counts import PartitionedCounts, PatternCounts, owner_ranks

BATCH = 16  # as in distributed_workers/partitioned.py
WORLDS = (1, 2, 3)


# ---------------------------------------------------------------------------- random tables


def random_counts(rng: np.random.Generator, *, words: int, labelled: bool,
                  distinct: int = 400, evaluations: int = 3000,
                  keys: np.ndarray | None = None) -> tuple[PatternCounts, list]:
    """Counts of random (multi-word) keys, with the raw evaluations they count."""
    if keys is None:
        keys = rng.integers(-2**62, 2**62, size=(distinct, words), dtype=np.int64)
        keys[: distinct // 4, 0] = rng.integers(0, 3, size=distinct // 4)  # shared first words
    picks = rng.zipf(1.5, size=evaluations) % keys.shape[0]
    labels = rng.integers(0, 4, size=evaluations)
    rows = keys[picks]
    if labelled:
        rows = np.column_stack([rows, labels])
    counts = PatternCounts.from_rows(rows, np.ones(evaluations, dtype=np.int64),
                                     width=64 * words, breakpoints=(0.0,), labelled=labelled)
    raw = [(tuple(keys[p]), int(y)) for p, y in zip(picks, labels, strict=True)]
    return counts, raw


def brute_entropy(counter: Counter) -> float:
    total = sum(counter.values())
    return -math.fsum(c / total * math.log2(c / total) for c in counter.values())


def split(counts: PatternCounts, world: int) -> list[PatternCounts]:
    return [counts.restricted_to((rank, world)) for rank in range(world)]


# ---------------------------------------------------------------------------- exact sums


def test_exact_sums_of_any_split_equal_the_fraction_sum_rounded_once():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.random(3000) * 10.0 ** rng.integers(-300, 3, 3000),
                             -rng.random(50), [0.0, 5e-324]])
    want = sum(Fraction(float(v)) for v in values)
    total = M.exact_sum(values)
    assert Fraction(total, 1 << M.EXACT_SCALE_BITS) == want
    assert M.exact_float(total) == float(want)  # Fraction -> float rounds correctly
    for pieces in (2, 3, 7):
        cuts = np.sort(rng.integers(0, values.size, pieces - 1))
        assert sum(M.exact_sum(part) for part in np.split(values, cuts)) == total
    times = rng.integers(1, 2**33, values.size)
    weighted = sum(Fraction(float(v)) * int(t) for v, t in zip(values, times, strict=True))
    assert Fraction(M.exact_sum(values, times), 1 << M.EXACT_SCALE_BITS) == weighted


def test_entropy_terms_grouped_by_count_value_are_the_exact_sum_of_every_term():
    rng = np.random.default_rng(2)
    counts = np.concatenate([rng.zipf(1.2, 20000), [2**40, 70000, 70000, 0]]).astype(np.int64)
    e = int(counts.sum())
    p = counts[counts > 0] / e
    assert M.entropy_sum(counts, e) == sum(M.exact_sum(np.array([v])) for v in -(p * np.log2(p)))


# ---------------------------------------------------------------------------- decomposition


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("words", [1, 3])
def test_partial_terms_of_hash_partitions_give_the_brute_force_measures(world, words):
    rng = np.random.default_rng(10 * world + words)
    counts, raw = random_counts(rng, words=words, labelled=True)
    parts = split(counts, world)
    terms = M.combine_terms([{**M.single_terms(p), **M.label_terms(p)} for p in parts])
    got = M.measures_from_terms(terms, width=counts.width, states=2,
                                evaluations=counts.evaluations)
    patterns = Counter(key for key, _ in raw)
    joint = Counter(raw)
    labels = Counter(y for _, y in raw)
    assert got["evaluations"] == len(raw)
    assert got["distinct"] == len(patterns)
    assert got["max_count"] == max(patterns.values())
    h, h_joint, h_label = brute_entropy(patterns), brute_entropy(joint), brute_entropy(labels)
    assert got["entropy"] == pytest.approx(h, abs=1e-12)
    assert got["rel_entropy"] == pytest.approx(h / min(counts.width, math.log2(len(raw))),
                                               abs=1e-12)
    assert got["joint_entropy"] == pytest.approx(h_joint, abs=1e-12)
    assert got["label_entropy"] == pytest.approx(h_label, abs=1e-12)
    assert got["mutual_information"] == pytest.approx(h - (h_joint - h_label), abs=1e-12)
    # the single-process measures are the same decomposition with one partition: bit for bit
    assert got["entropy"] == M.entropy(counts)
    assert got["mutual_information"] == M.mutual_information(counts)
    assert sum(p.distinct for p in parts) == counts.distinct


@pytest.mark.parametrize("world", [1, 2, 3])
def test_comparison_terms_of_hash_partitions_give_the_brute_force_comparisons(world):
    rng = np.random.default_rng(world)
    shared = rng.integers(-2**62, 2**62, size=(300, 2), dtype=np.int64)
    before, raw_before = random_counts(rng, words=2, labelled=False, keys=shared[:200])
    after, raw_after = random_counts(rng, words=2, labelled=False, keys=shared[100:])
    threshold = 3
    terms = M.combine_terms([
        M.comparison_terms(b, a, threshold=threshold)
        for b, a in zip(split(before, world), split(after, world), strict=True)])
    got = M.comparison_measures(terms)
    left = Counter(k for k, _ in raw_before)
    right = Counter(k for k, _ in raw_after)
    a, b = set(left), set(right)
    a_t = {k for k, c in left.items() if c > threshold}
    b_t = {k for k, c in right.items() if c > threshold}
    union = a | b
    assert got["added"] == len(b - a) and got["removed"] == len(a - b)
    assert got["jaccard"] == len(a & b) / len(a | b)
    assert got["jaccard_t"] == len(a_t & b_t) / len(a_t | b_t)
    assert got["weighted_jaccard"] == (sum(min(left[k], right[k]) for k in union)
                                       / sum(max(left[k], right[k]) for k in union))
    assert got["jaccard_t"] == M.jaccard(before, after, threshold=threshold)


def test_partitions_are_disjoint_owned_and_merge_back_to_the_whole():
    counts, _ = random_counts(np.random.default_rng(5), words=2, labelled=True)
    parts = split(counts, 3)
    for rank, part in enumerate(parts):
        assert part.partition == (rank, 3) and part.evaluations == counts.evaluations
        assert (owner_ranks(part.keys, 3) == rank).all()
        assert part.distinct < 0.5 * counts.distinct  # ~1/3 each
    assert_same_counts(PatternCounts.merge_all(parts), counts)


def test_a_whole_reference_is_restricted_and_another_partition_refused():
    counts, _ = random_counts(np.random.default_rng(6), words=1, labelled=False)
    part = counts.restricted_to((1, 2))
    assert_same_counts(M.aligned_reference(counts, part), part)
    with pytest.raises(ValueError, match=r"cannot compare partition \(1, 2\).*\(0, 2\)"):
        M.aligned_reference(counts.restricted_to((0, 2)), part)


def test_measuring_a_partition_outside_its_process_group_says_so():
    counts, _ = random_counts(np.random.default_rng(7), words=1, labelled=False)
    with pytest.raises(RuntimeError, match="partition 1 of 2 but this process is rank 0 of 1"):
        M.entropy(counts.restricted_to((1, 2)))


# ---------------------------------------------------------------------------- saved partitions


def saved_partitioned(counts: PatternCounts, world: int, path: Path) -> Path:
    """Save `counts` as a run measured at `world` ranks saves them (rank 0 gets every part)."""
    parts = split(counts, world)

    def send(own_rows, receive):  # what distributed.send_arrays_to_main does on rank 0
        for rank, part in enumerate(parts):
            receive(rank, part.to_rows())

    return PartitionedCounts.collect(parts[0], send).save(path)


@pytest.mark.parametrize("measured_at", [2, 3])
def test_counts_saved_per_partition_load_whole_and_at_any_world_size(tmp_path, measured_at):
    counts, _ = random_counts(np.random.default_rng(measured_at), words=2, labelled=True)
    index = saved_partitioned(counts, measured_at, tmp_path / "layer.npz")
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(["layer.npz"] + [f"layer.part{r}of{measured_at}.npz"
                                            for r in range(measured_at)])
    assert_same_counts(PatternCounts.load(index), counts)
    for world in (1, 2, 3):
        parts = [PatternCounts.load(index, partition=(r, world)) for r in range(world)]
        for rank, part in enumerate(parts):
            assert part.evaluations == counts.evaluations
            assert_same_counts(part, counts.restricted_to((rank, world)))
        assert_same_counts(PatternCounts.merge_all(parts), counts)
    with pytest.raises(ValueError, match="holds partition"):
        PatternCounts.load(tmp_path / f"layer.part0of{measured_at}.npz",
                           partition=(1, measured_at))


# ---------------------------------------------------------------------------- settings


def test_merge_is_checked_and_recorded_only_when_not_the_default():
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU())
    with pytest.raises(ValueError, match=r"unknown merge 'all'.*\('partition', 'gather'\)"):
        P.count(model, torch.randn(8, 3), merge="all")
    with pytest.raises(ValueError, match="unknown merge"):
        ls.ActivationPatterns(torch.randn(8, 3), merge="scatter")
    assert "merge" not in ls.ActivationPatterns(torch.randn(8, 3)).config()
    assert ls.ActivationPatterns(torch.randn(8, 3), merge="gather").config()["merge"] == "gather"
    one = P.count(model, torch.randn(40, 3), merge="partition")["1"]
    assert one.partition is None and one.evaluations == 40  # one process: the whole table


# ---------------------------------------------------------------------------- torchrun


def make_inputs(path: Path) -> dict:
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 65), nn.ReLU6(),
                           nn.Linear(65, 130), nn.Hardtanh(-0.2, 0.2), nn.Linear(130, 1),
                           nn.ReLU(), nn.Linear(1, 3))
    conv = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 70, 3, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(70, 3))
    # 157 and 53 samples: batches of 16 dealt unevenly to 2 and 3 ranks
    data = {"linear": (torch.randn(157, 6) * 2, torch.randint(0, 4, (157,))),
            "conv": (torch.randn(53, 1, 6, 6), torch.randint(0, 3, (53,)))}
    saved = {"models": {"linear": linear, "conv": conv}, "data": data, "steps": 3}
    torch.save(saved, path)
    return saved


def launch(world: int, inputs: Path, out: Path) -> subprocess.CompletedProcess:
    script = [str(WORKERS / "partitioned.py"), str(inputs), str(out)]
    command = [sys.executable, *script] if world == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world),
        "--master-port", str(free_port()), *script]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "LEARNSCOPE_PROGRESS": "off"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=environment)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("partitioned")
    saved = make_inputs(folder / "inputs.pt")
    for world in WORLDS:
        check_ran(launch(world, folder / "inputs.pt", folder / f"world{world}"))
    return folder, saved


def results(folder: Path, world: int) -> list[dict]:
    return [json.loads((folder / f"world{world}" / f"rank{rank}" / "results.json").read_text())
            for rank in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_every_rank_measures_what_one_process_measures_bit_for_bit(measured, world):
    folder, _ = measured
    (alone,) = results(folder, 1)
    for rank, got in enumerate(results(folder, world)):
        assert (got["rank"], got["world"]) == (rank, world)
        for name, want in alone["models"].items():
            mine = got["models"][name]
            assert all(p == [rank, world] for p in mine["partition"].values())
            assert mine["single"] == want["single"], (name, rank)  # entropies too: exact sums
            assert mine["compared"] == want["compared"], (name, rank)
            assert len(mine["scope"]["rows"]) == len(want["scope"]["rows"]) > 0
            for row, wanted in zip(mine["scope"]["rows"], want["scope"]["rows"], strict=True):
                assert row[:4] == wanted[:4]
                assert row[4] == wanted[4] or (math.isnan(row[4]) and math.isnan(wanted[4])), row


def test_world_one_counts_what_the_test_process_counts(measured):
    folder, saved = measured
    (alone,) = results(folder, 1)
    for name, model in saved["models"].items():
        counts = P.count(model, saved["data"][name], batch_size=BATCH, labels=True)
        widths = sorted(c.width for c in counts.values())
        assert widths in ([1, 64, 65, 130], [8, 70])
        for layer, c in counts.items():
            assert alone["models"][name]["single"][layer]["entropy"] == M.entropy(c)
            assert alone["models"][name]["single"][layer]["distinct"] == c.distinct
            saved_counts = PatternCounts.load(folder / "world1" / "rank0" / "counts" / name
                                              / f"{layer}.npz")
            assert_same_counts(saved_counts, c)


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_holds_its_own_part_and_no_rank_gathers_the_keys(measured, world):
    folder, saved = measured
    for got in results(folder, world):
        assert "all_gather_arrays" not in got["calls_partition"]
        assert got["calls_partition"]["all_to_all_arrays"] > 0
        assert got["calls_gather"]["all_gather_arrays"] > 0  # the instrument sees a gather
    for name, model in saved["models"].items():
        whole = P.count(model, saved["data"][name], batch_size=BATCH, labels=True)
        for layer, want in whole.items():
            parts = [PatternCounts.load(folder / f"world{world}" / f"rank{rank}" / "counts"
                                        / name / f"{layer}.npz") for rank in range(world)]
            for rank, part in enumerate(parts):
                assert part.partition == (rank, world)
                assert part.evaluations == want.evaluations
                assert (owner_ranks(part.keys, world) == rank).all()
                if want.distinct >= 100:  # ~1/world of the patterns each
                    assert part.distinct < 1.5 * want.distinct / world, (layer, rank)
            assert_same_counts(PatternCounts.merge_all(parts), want)


@pytest.mark.parametrize("world", [2, 3])
def test_a_failure_on_one_rank_fails_every_rank_in_the_measure_exchange(measured, world):
    folder, _ = measured
    *others, last = results(folder, world)
    assert last["one_rank_fails"][0] == "ValueError"
    assert f"cannot compare partition ({world - 1}, {world})" in last["one_rank_fails"][1]
    for got in others:
        kind, message = got["one_rank_fails"]
        assert kind == "RankFailedError" and message.startswith(f"rank {world - 1} failed: ")
        assert "cannot compare partition" in message


@pytest.mark.parametrize("world", [2, 3])
def test_counts_a_run_saved_per_partition_load_back_at_worlds_1_and_3(measured, world):
    folder, _ = measured
    root = folder / f"world{world}" / "store.artifacts"
    manifests = sorted(root.rglob("manifest.json"))
    assert len(manifests) == 2 * 3  # two models, three measured steps
    for manifest in manifests:
        relative = manifest.parent.relative_to(root)
        run = relative.parts[0].split("-2")[0]  # partitioned-<model>
        inside = Path(*relative.parts[1:])  # patterns/step_<n>
        (twin,) = (folder / "world1" / "store.artifacts").glob(f"{run}-*/{inside}")
        want = P.ActivationPatterns.load_counts(twin)
        got = P.ActivationPatterns.load_counts(manifest.parent)
        assert list(got) == list(want)
        assert any(manifest.parent.glob(f"*.part0of{world}.npz"))
        for layer in want:
            assert_same_counts(got[layer], want[layer])
            thirds = [P.ActivationPatterns.load_counts(manifest.parent, (r, 3))[layer]
                      for r in range(3)]
            assert_same_counts(PatternCounts.merge_all(thirds), want[layer])
