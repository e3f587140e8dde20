"""Measures of activation-pattern counts: pure functions, counts in, numbers out.

Notation (see DESIGN.md): c(a) is the number of evaluations with pattern a, E = sum_a c(a) the
number of evaluations, A = {a : c(a) > 0}, p(a) = c(a) / E, d the layer width, K the states
per unit.
Comparisons take two measurements s (`counts`) and s' (`other`) of the same layer.
With labels y: c(a, y) joint counts, p(a, y) = c(a, y) / E, p(y) = sum_a p(a, y).
"""

from __future__ import annotations

import math

import numpy as np

from learnscope.patterns.counts import PatternCounts, sum_unique_rows, unique_row_ids

DEFAULT_JACCARD_THRESHOLD = 10


def _entropy_bits(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def evaluations(counts: PatternCounts) -> int:
    """E = sum_a c(a): samples times positions measured."""
    return counts.evaluations


def distinct(counts: PatternCounts) -> int:
    """|A| = number of patterns a with c(a) > 0."""
    return counts.distinct


def distinct_frac(counts: PatternCounts) -> float:
    """|A| / E: distinct patterns per evaluation (1 = every evaluation has its own pattern)."""
    e = counts.evaluations
    return counts.distinct / e if e else 0.0


def max_count(counts: PatternCounts) -> int:
    """max_a c(a): occurrences of the most frequent pattern."""
    return int(counts.counts.max()) if counts.distinct else 0


def max_frac(counts: PatternCounts) -> float:
    """max_a c(a) / E: share of evaluations taken by the most frequent pattern."""
    e = counts.evaluations
    return max_count(counts) / e if e else 0.0


def entropy(counts: PatternCounts) -> float:
    """H = -sum_a p(a) log2 p(a) with p(a) = c(a) / E, in bits."""
    return _entropy_bits(counts.counts)


def max_entropy(counts: PatternCounts) -> float:
    """H_max = min(d log2 K, log2 E): the largest entropy the layer could show on E evaluations."""
    e = counts.evaluations
    if e == 0:
        return 0.0
    return min(counts.width * math.log2(counts.states), math.log2(e))


def rel_entropy(counts: PatternCounts) -> float:
    """H / H_max, in [0, 1]; 0 when H_max = 0 (a single evaluation)."""
    h_max = max_entropy(counts)
    return entropy(counts) / h_max if h_max > 0 else 0.0


def _aligned(counts: PatternCounts, other: PatternCounts) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both measurements over the union of their patterns (0 where absent)."""
    counts.check_compatible(other)
    union, ids = unique_row_ids(np.concatenate([counts.keys, other.keys]))
    left = np.zeros(union, dtype=np.int64)
    right = np.zeros(union, dtype=np.int64)
    left[ids[: counts.distinct]] = counts.counts
    right[ids[counts.distinct :]] = other.counts
    return left, right


def added(counts: PatternCounts, other: PatternCounts) -> int:
    """|A_s' \\ A_s|: patterns present in `other` (s') but not in `counts` (s)."""
    left, right = _aligned(counts, other)
    return int(((right > 0) & (left == 0)).sum())


def removed(counts: PatternCounts, other: PatternCounts) -> int:
    """|A_s \\ A_s'|: patterns present in `counts` (s) but gone in `other` (s')."""
    left, right = _aligned(counts, other)
    return int(((left > 0) & (right == 0)).sum())


def jaccard(counts: PatternCounts, other: PatternCounts, *, threshold: int | None = None) -> float:
    """|A_s ∩ A_s'| / |A_s ∪ A_s'|.

    With `threshold=T` the sets are A_T = {a : c(a) > T} (the paper's jaccard_T, T = 10), which
    ignores rare patterns. Two empty sets give 1.0 (identical).
    """
    left, right = _aligned(counts, other)
    t = 0 if threshold is None else threshold
    in_left, in_right = left > t, right > t
    union = int((in_left | in_right).sum())
    return int((in_left & in_right).sum()) / union if union else 1.0


def weighted_jaccard(counts: PatternCounts, other: PatternCounts) -> float:
    """Ruzicka similarity: sum_a min(c_s(a), c_s'(a)) / sum_a max(c_s(a), c_s'(a))."""
    left, right = _aligned(counts, other)
    denominator = int(np.maximum(left, right).sum())
    return int(np.minimum(left, right).sum()) / denominator if denominator else 1.0


def _require_labels(counts: PatternCounts) -> None:
    if not counts.has_labels:
        raise ValueError(
            "this measure needs joint pattern-label counts; count with labels=True "
            "(e.g. learnscope.patterns.count(model, (x, y), labels=True))"
        )


def label_entropy(counts: PatternCounts) -> float:
    """H(L) = -sum_y p(y) log2 p(y), over the labels of the measured evaluations."""
    _require_labels(counts)
    _, per_label = sum_unique_rows(counts.joint_labels.reshape(-1, 1), counts.joint_counts)
    return _entropy_bits(per_label)


def joint_entropy(counts: PatternCounts) -> float:
    """H(A, L) = -sum_{a,y} p(a, y) log2 p(a, y), in bits."""
    _require_labels(counts)
    return _entropy_bits(counts.joint_counts)


def conditional_entropy(counts: PatternCounts) -> float:
    """H(A | L) = H(A, L) - H(L): pattern uncertainty left once the label is known."""
    return joint_entropy(counts) - label_entropy(counts)


def mutual_information(counts: PatternCounts) -> float:
    """MI(A; L) = H(A) - H(A | L): bits the pattern tells about the label."""
    return entropy(counts) - conditional_entropy(counts)


def occupancy(counts: PatternCounts) -> float:
    """Hash-list mode: occupied slots / N (the paper's validity check). Exact mode: error."""
    if counts.occupancy is None:
        raise ValueError("occupancy is defined for hash-list counts only (mode='hashlist')")
    return counts.occupancy


# Single-measurement measures, by name, in the order they are reported.
SINGLE = {
    "evaluations": evaluations,
    "distinct": distinct,
    "distinct_frac": distinct_frac,
    "max_count": max_count,
    "max_frac": max_frac,
    "entropy": entropy,
    "rel_entropy": rel_entropy,
}
# Measures that need labels.
LABELLED = {
    "joint_entropy": joint_entropy,
    "conditional_entropy": conditional_entropy,
    "mutual_information": mutual_information,
}
# Comparisons of two measurements (reported as <name>_since_init, <name>_since_last, ...).
COMPARISONS = {
    "added": added,
    "removed": removed,
    "jaccard": jaccard,
    "jaccard_t": lambda a, b: jaccard(a, b, threshold=DEFAULT_JACCARD_THRESHOLD),
    "weighted_jaccard": weighted_jaccard,
}
