"""Measures against hand-computed values on small worked examples."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

import learnscope.patterns as P
from learnscope.patterns import measures as M
from learnscope.patterns.counts import PatternCounts


def counts_of(table: dict[int, int], width: int = 2) -> PatternCounts:
    """PatternCounts of single-word keys -> counts (keys need not be sorted)."""
    rows = np.array([[k] for k in table], dtype=np.int64).reshape(-1, 1)
    return PatternCounts.from_rows(rows, np.array(list(table.values()), dtype=np.int64),
                                   width=width, breakpoints=(0.0,), labelled=False)


def joint_of(table: dict[tuple[int, int], int], width: int = 2) -> PatternCounts:
    rows = np.array([[a, y] for a, y in table], dtype=np.int64)
    return PatternCounts.from_rows(rows, np.array(list(table.values()), dtype=np.int64),
                                   width=width, breakpoints=(0.0,), labelled=True)


def test_single_measurement_measures_worked_example():
    c = counts_of({0: 2, 1: 1, 2: 1}, width=2)  # E = 4, p = 1/2, 1/4, 1/4
    assert M.evaluations(c) == 4
    assert M.distinct(c) == 3
    assert M.distinct_frac(c) == 0.75
    assert M.max_count(c) == 2
    assert M.max_frac(c) == 0.5
    assert M.entropy(c) == pytest.approx(1.5)  # 1/2*1 + 2 * 1/4*2
    assert M.max_entropy(c) == pytest.approx(2.0)  # min(2 * log2 2, log2 4)
    assert M.rel_entropy(c) == pytest.approx(0.75)


def test_max_entropy_is_capped_by_the_number_of_evaluations():
    c = counts_of({k: 1 for k in range(8)}, width=20)  # d log2 K = 20 bits, log2 E = 3 bits
    assert M.max_entropy(c) == pytest.approx(3.0)
    assert M.rel_entropy(c) == pytest.approx(1.0)
    three = PatternCounts.from_rows(np.array([[0], [5]]), np.array([1, 1]), width=1,
                                    breakpoints=(0.0, 6.0), labelled=False)
    assert M.max_entropy(three) == pytest.approx(1.0)  # min(log2 3, log2 2)
    single = counts_of({3: 1})
    assert M.rel_entropy(single) == 0.0


def test_comparisons_worked_example():
    s = counts_of({0: 5, 1: 3, 2: 20})
    s2 = counts_of({1: 4, 2: 11, 3: 1})
    assert M.added(s, s2) == 1  # pattern 3
    assert M.removed(s, s2) == 1  # pattern 0
    assert M.jaccard(s, s2) == pytest.approx(2 / 4)
    assert M.weighted_jaccard(s, s2) == pytest.approx((3 + 11) / (5 + 4 + 20 + 1))
    assert M.jaccard(s, s2, threshold=10) == pytest.approx(1.0)  # {2} vs {2}
    assert M.jaccard(s, s2, threshold=4) == pytest.approx(1 / 2)  # {0, 2} vs {2}
    assert M.jaccard(s, s) == 1.0 and M.weighted_jaccard(s, s) == 1.0
    assert M.added(s, s) == 0 and M.removed(s, s) == 0


def test_comparisons_on_multi_word_keys_match_python_sets():
    rng = np.random.default_rng()
    torch.manual_seed(int(rng.integers(1 << 31)))
    x1 = torch.randint(-1, 2, (300, 70)).float()
    x2 = torch.cat([x1[:150], torch.randint(-1, 2, (150, 70)).float()])
    a = P.count(nn.Sequential(nn.ReLU()), x1)["0"]
    b = P.count(nn.Sequential(nn.ReLU()), x2)["0"]
    ca = Counter(tuple((row > 0).tolist()) for row in x1)
    cb = Counter(tuple((row > 0).tolist()) for row in x2)
    union = set(ca) | set(cb)
    assert M.added(a, b) == len(set(cb) - set(ca))
    assert M.removed(a, b) == len(set(ca) - set(cb))
    assert M.jaccard(a, b) == pytest.approx(len(set(ca) & set(cb)) / len(union))
    wj = sum(min(ca[k], cb[k]) for k in union) / sum(max(ca[k], cb[k]) for k in union)
    assert M.weighted_jaccard(a, b) == pytest.approx(wj)


def test_label_measures_worked_examples():
    perfect = joint_of({(0, 0): 2, (1, 1): 2})
    assert M.entropy(perfect) == pytest.approx(1.0)
    assert M.label_entropy(perfect) == pytest.approx(1.0)
    assert M.joint_entropy(perfect) == pytest.approx(1.0)
    assert M.conditional_entropy(perfect) == pytest.approx(0.0)
    assert M.mutual_information(perfect) == pytest.approx(1.0)

    independent = joint_of({(0, 0): 1, (0, 1): 1, (1, 0): 1, (1, 1): 1})
    assert M.mutual_information(independent) == pytest.approx(0.0, abs=1e-12)

    mixed = joint_of({(0, 0): 3, (0, 1): 1, (1, 1): 2})  # E = 6
    h_a = -(4 / 6 * math.log2(4 / 6) + 2 / 6 * math.log2(2 / 6))
    h_al = -(3 / 6 * math.log2(3 / 6) + 1 / 6 * math.log2(1 / 6) + 2 / 6 * math.log2(2 / 6))
    h_l = 1.0  # labels 0 and 1 three times each
    assert M.entropy(mixed) == pytest.approx(h_a)
    assert M.joint_entropy(mixed) == pytest.approx(h_al)
    assert M.conditional_entropy(mixed) == pytest.approx(h_al - h_l)
    assert M.mutual_information(mixed) == pytest.approx(h_a - (h_al - h_l))


def test_label_measures_need_labels():
    with pytest.raises(ValueError, match="labels=True"):
        M.mutual_information(counts_of({0: 1}))


def test_occupancy_only_in_hashlist_mode():
    with pytest.raises(ValueError, match="hash-list"):
        M.occupancy(counts_of({0: 1}))


def test_probe_reports_since_init_and_since_last_against_reference_values():
    torch.manual_seed(0)
    x = torch.randn(100, 12)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU())
    probe = P.ActivationPatterns(x)
    first = probe.measure(model, 0)
    assert first.value("1", "jaccard_since_init") == 1.0
    assert math.isnan(first.value("1", "jaccard_since_last"))
    before = P.count(model, x)["1"]
    with torch.no_grad():
        model[0].weight.add_(0.3 * torch.randn_like(model[0].weight))
    after = P.count(model, x)["1"]
    second = probe.measure(model, 1)
    assert second.value("1", "weighted_jaccard_since_init") == M.weighted_jaccard(before, after)
    assert second.value("1", "added_since_last") == M.added(before, after)
    assert second.value("1", "entropy") == M.entropy(after)
    assert second.value("1", "evaluations") == 100
