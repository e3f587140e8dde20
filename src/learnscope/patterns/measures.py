"""Measures of activation-pattern counts: pure functions, counts in, numbers out.

Notation (see DESIGN.md): c(a) is the number of evaluations with pattern a, E = sum_a c(a) the
number of evaluations, A = {a : c(a) > 0}, p(a) = c(a) / E, d the layer width, K the states
per unit.
Comparisons take two measurements s (`counts`) and s' (`other`) of the same layer.
With labels y: c(a, y) joint counts, p(a, y) = c(a, y) / E, p(y) = sum_a p(a, y).

Every measure is assembled from *partial terms* that add up over any split of the patterns
(`single_terms`, `label_terms`, `comparison_terms`; `combine_terms` adds them up: sums, plus
maxima for max_count) and one final step (`measures_from_terms`, `comparison_measures`). A
whole table is one partition of a world of 1; counts partitioned over the ranks of a torchrun
job (`PatternCounts.partition`) combine every rank's terms with one collective
(`learnscope.engine.reduction.reduce_partial_terms`), so the measure functions below give the
whole's values on every rank (and are then collective: call them on every rank alike).

Entropy terms -sum p log2 p are float64 numbers summed *exactly* (as integers, `exact_sum`) and
rounded once at the end, so an entropy is the same to the last bit however the patterns are
split into partitions and in whatever order the partitions are added.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from learnscope.engine.reduction import reduce_partial_terms
from learnscope.patterns.counts import PatternCounts, unique_row_ids

DEFAULT_JACCARD_THRESHOLD = 10
EXACT_SCALE_BITS = 1136  # exact sums: integers in units of 2**-1136 (2**-1074 is the least float64)
_MANTISSA_BITS = 53
_EXACT_CHUNK = 1 << 24  # values per bincount: float64 sums of 27-bit halves stay exact
_TIER_BITS, _TIERS = 30, 4  # exact_sum of values in [0, 1): four 30-bit integer tiers
_TIER_SCALE = float(1 << _TIER_BITS)
_MAX_TIER_WEIGHT = 1 << 33  # 30-bit digits times weights adding up to less: int64 sums
_SMALL_COUNT = 1 << 16  # entropy terms of counts below this: computed once per count value


# ---------------------------------------------------------------------------- exact sums


def exact_sum(values: np.ndarray, times: np.ndarray | None = None) -> int:
    """The exact sum of float64 `values` (each taken `times` times, default once), as an
    integer in units of 2**-EXACT_SCALE_BITS.

    Values in [0, 1) (every entropy term) are cut into four 30-bit integer tiers (multiplying
    by 2**30 and taking the floor is exact), summed in int64; what the tiers leave (values
    below 2**-67) and values outside [0, 1) are summed from their exact mantissas and
    exponents (np.frexp). Sums of partial sums are exact, so the rounded total (`exact_float`)
    does not depend on how the values were split, nor on their order.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(values).all():
        raise ValueError("exact_sum needs finite values")
    weights = None if times is None else np.asarray(times, dtype=np.int64).reshape(-1)
    fast = (values >= 0) & (values < 1)
    if weights is not None:  # int64 tier sums stay exact while the weights add up to < 2**33
        fast &= weights < _MAX_TIER_WEIGHT
        if values.shape[0] > _EXACT_CHUNK or weights[fast].sum() >= _MAX_TIER_WEIGHT:
            cuts = np.flatnonzero(np.diff(np.cumsum(np.where(fast, weights, 0))
                                          // _MAX_TIER_WEIGHT, prepend=0))
            if cuts.size:  # the sum of sums of pieces whose weights add up to < 2**33
                pieces = zip(np.split(values, cuts), np.split(weights, cuts), strict=True)
                return sum(exact_sum(v, w) for v, w in pieces)
    rest = values[fast]
    tier_weights = None if weights is None else weights[fast]
    total = 0
    for tier in range(1, _TIERS + 1):
        rest = rest * _TIER_SCALE
        digits = np.floor(rest)
        rest -= digits
        digits = digits.astype(np.int64)
        tier_sum = digits.sum() if tier_weights is None else (digits * tier_weights).sum()
        total += int(tier_sum) << (EXACT_SCALE_BITS - _TIER_BITS * tier)
    left = rest != 0  # bits below the last tier: back to their own scale, exactly
    others = np.concatenate([values[~fast], rest[left] * 2.0 ** (-_TIER_BITS * _TIERS)])
    if others.size:
        other_times = (None if weights is None
                       else np.concatenate([weights[~fast], tier_weights[left]]))
        total += _exact_sum_by_exponent(others, other_times)
    return total


def _exact_sum_by_exponent(values: np.ndarray, times: np.ndarray | None) -> int:
    """`exact_sum` of any finite float64 values: each is m * 2**(e - 53) with an integer
    mantissa |m| < 2**53 (np.frexp); mantissas are split into 26/27-bit halves and summed per
    exponent in float64, exactly (no sum of a chunk reaches 2**53). With `times`, one value at
    a time in Python integers (used for the few values the tiers of `exact_sum` leave)."""
    if times is not None:
        total = 0
        for value, count in zip(values.tolist(), times.tolist(), strict=True):
            mantissa, exponent = math.frexp(value)
            integer = int(mantissa * float(1 << _MANTISSA_BITS))
            total += (integer * count) << (exponent + EXACT_SCALE_BITS - _MANTISSA_BITS)
        return total
    total = 0
    for begin in range(0, values.shape[0], _EXACT_CHUNK):
        mantissa, exponent = np.frexp(values[begin:begin + _EXACT_CHUNK])
        integer = (mantissa * float(1 << _MANTISSA_BITS)).astype(np.int64)
        bins = exponent.astype(np.int64) + EXACT_SCALE_BITS - _MANTISSA_BITS  # >= 0 for float64
        high = np.bincount(bins, weights=(integer >> 26).astype(np.float64))
        low = np.bincount(bins, weights=(integer & ((1 << 26) - 1)).astype(np.float64))
        for shift in np.flatnonzero((high != 0) | (low != 0)):
            total += ((int(high[shift]) << 26) + int(low[shift])) << int(shift)
    return total


def exact_float(total: int) -> float:
    """An `exact_sum` rounded once to the nearest float64."""
    return total / (1 << EXACT_SCALE_BITS)  # int / int: correctly rounded


def entropy_sum(counts: np.ndarray, evaluations: int) -> int:
    """The exact sum of -p log2 p over `counts` with p = c / `evaluations` (zeros skipped):
    a partition's share of an entropy in bits (see `exact_sum`).

    Equal counts have equal terms, so each count value below 2**16 (most patterns occur a
    few times) is computed once and taken as many times as it occurs."""
    c = np.asarray(counts, dtype=np.int64).reshape(-1)
    c = c[c > 0]
    if c.size == 0:
        return 0
    small = c < _SMALL_COUNT
    occurrences = np.bincount(c[small])
    values = np.flatnonzero(occurrences)
    large = c[~small]
    distinct_counts = np.concatenate([values, large]).astype(np.float64)
    times = np.concatenate([occurrences[values], np.ones(large.shape[0], dtype=np.int64)])
    p = distinct_counts / float(evaluations)
    return exact_sum(-(p * np.log2(p)), times)


def _entropy_bits(counts: np.ndarray) -> float:
    counts = np.asarray(counts)
    return exact_float(entropy_sum(counts, int(counts.sum())))


# ---------------------------------------------------------------------------- partial terms


def single_terms(counts: PatternCounts) -> dict[str, Any]:
    """This table's (or partition's) share of the single-measurement measures: its distinct
    patterns, largest count and entropy terms (with p = c / E of the whole)."""
    c = counts.counts
    return {"distinct": int(c.shape[0]), "max_count": int(c.max()) if c.size else 0,
            "entropy": entropy_sum(c, counts.evaluations)}


def label_terms(counts: PatternCounts) -> dict[str, Any]:
    """This table's (or partition's) share of the label measures: joint-entropy terms and the
    evaluations per label ({label: count})."""
    _require_labels(counts)
    labels, per_label = np.unique(counts.joint_labels, return_inverse=True)
    summed = np.bincount(per_label.reshape(-1), weights=counts.joint_counts.astype(np.float64),
                         minlength=labels.shape[0])
    if counts.joint_counts.size and summed.max() >= 2.0 ** 53:  # float64 bincount: exact below
        summed = np.array([int(counts.joint_counts[per_label == i].sum())
                           for i in range(labels.shape[0])])
    return {"joint_entropy": entropy_sum(counts.joint_counts, counts.evaluations),
            "label_counts": {int(y): int(n) for y, n in zip(labels, summed, strict=True)}}


def comparison_terms(counts: PatternCounts, other: PatternCounts, *,
                     threshold: int = DEFAULT_JACCARD_THRESHOLD) -> dict[str, int]:
    """This table's (or partition's) share of the comparisons of `counts` (s) with `other`
    (s'): patterns added and removed, |A ∩ A'| and |A ∪ A'| (also of the patterns with count >
    `threshold`), sum of min(c, c') and of max(c, c'). Both must cover the same part of the
    patterns (the same partition, or both whole)."""
    left, right = _aligned(counts, other)
    in_left, in_right = left > 0, right > 0
    over_left, over_right = left > threshold, right > threshold
    return {"added": int((in_right & ~in_left).sum()), "removed": int((in_left & ~in_right).sum()),
            "intersection": int((in_left & in_right).sum()),
            "union": int((in_left | in_right).sum()),
            "intersection_t": int((over_left & over_right).sum()),
            "union_t": int((over_left | over_right).sum()),
            "sum_min": int(np.minimum(left, right).sum()),
            "sum_max": int(np.maximum(left, right).sum())}


def combine_terms(parts: Sequence[Any]) -> Any:
    """The whole's terms from every partition's (same structure on every partition): numbers
    are added, except max_count (the largest); label counts are added label by label; dicts
    and lists are combined entry by entry."""
    first = parts[0]
    if isinstance(first, dict):
        keys = list(first)
        if any(list(part) != keys for part in parts):
            raise ValueError("partial terms of different structure cannot be combined")
        return {key: _combined_entry(key, [part[key] for part in parts]) for key in keys}
    if isinstance(first, (list, tuple)):
        return [combine_terms([part[i] for part in parts]) for i in range(len(first))]
    if first is None:
        return None
    return sum(parts)


def _combined_entry(key: str, values: list[Any]) -> Any:
    if key == "max_count":
        return max(values)
    if key == "label_counts":  # {label: evaluations}, labels differ between partitions
        total: dict[int, int] = {}
        for part in values:
            for label, count in part.items():
                total[label] = total.get(label, 0) + count
        return dict(sorted(total.items()))
    return combine_terms(values)


def measures_from_terms(terms: dict[str, Any], *, width: int, states: int,
                        evaluations: int) -> dict[str, float]:
    """The measures of a whole table from its combined `single_terms` (and `label_terms`):
    every measure of SINGLE and LABELLED those terms allow, by name."""
    e = evaluations
    out: dict[str, float] = {}
    if "distinct" in terms:
        out.update(evaluations=e, distinct=terms["distinct"],
                   distinct_frac=terms["distinct"] / e if e else 0.0)
    if "max_count" in terms:
        out.update(max_count=terms["max_count"], max_frac=terms["max_count"] / e if e else 0.0)
    if "entropy" in terms:
        h = exact_float(terms["entropy"])
        h_max = min(width * math.log2(states), math.log2(e)) if e else 0.0
        out.update(entropy=h, max_entropy=h_max, rel_entropy=h / h_max if h_max > 0 else 0.0)
    if "joint_entropy" in terms:
        joint = exact_float(terms["joint_entropy"])
        label = _entropy_bits(np.array(list(terms["label_counts"].values()), dtype=np.int64))
        out.update(joint_entropy=joint, label_entropy=label, conditional_entropy=joint - label)
        if "entropy" in out:
            out["mutual_information"] = out["entropy"] - out["conditional_entropy"]
    return out


def comparison_measures(terms: dict[str, int]) -> dict[str, float]:
    """The comparisons of COMPARISONS from combined `comparison_terms` (two empty sets: 1.0)."""
    def ratio(top: int, bottom: int) -> float:
        return top / bottom if bottom else 1.0

    return {"added": terms["added"], "removed": terms["removed"],
            "jaccard": ratio(terms["intersection"], terms["union"]),
            "jaccard_t": ratio(terms["intersection_t"], terms["union_t"]),
            "weighted_jaccard": ratio(terms["sum_min"], terms["sum_max"])}


def across_partitions(counts: Sequence[PatternCounts], compute: Callable[[], Any]) -> Any:
    """The whole's terms: `compute()` (this table's terms) as they are for whole counts, else
    every rank's combined (collective: one all-gather; an error of `compute` on any rank is
    raised on every rank). All `counts` must be partitioned alike."""
    partitions = {c.partition if c.is_partition else None for c in counts}
    if len(partitions) > 1:
        raise ValueError(f"counts of different partitions ({sorted(map(str, partitions))}) "
                         "cannot be measured together")
    return reduce_partial_terms(compute, combine_terms,
                                partitions.pop() if partitions else None)


def aligned_reference(reference: PatternCounts, counts: PatternCounts) -> PatternCounts:
    """`reference` covering the same patterns as `counts`: as it is when both are whole or the
    same partition, restricted to the partition of `counts` when it is whole."""
    mine = counts.partition if counts.is_partition else None
    theirs = reference.partition if reference.is_partition else None
    if mine == theirs:
        return reference
    if theirs is None:
        return reference.restricted_to(mine)
    raise ValueError(
        f"cannot compare partition {mine} of the patterns with partition {theirs}: compare "
        "counts partitioned alike (measured in the same process group), or load the reference "
        "whole (PatternCounts.load)"
    )


def _single(counts: PatternCounts) -> dict[str, float]:
    terms = across_partitions([counts], lambda: single_terms(counts))
    return measures_from_terms(terms, width=counts.width, states=counts.states,
                               evaluations=counts.evaluations)


def _labelled(counts: PatternCounts) -> dict[str, float]:
    terms = across_partitions([counts], lambda: {**single_terms(counts), **label_terms(counts)})
    return measures_from_terms(terms, width=counts.width, states=counts.states,
                               evaluations=counts.evaluations)


def _compared(counts: PatternCounts, other: PatternCounts,
              threshold: int = DEFAULT_JACCARD_THRESHOLD) -> dict[str, float]:
    def compute() -> dict[str, int]:
        return comparison_terms(counts, aligned_reference(other, counts), threshold=threshold)

    return comparison_measures(across_partitions([counts], compute))


# ---------------------------------------------------------------------------- the measures


def evaluations(counts: PatternCounts) -> int:
    """E = sum_a c(a): samples times positions measured."""
    return counts.evaluations


def distinct(counts: PatternCounts) -> int:
    """|A| = number of patterns a with c(a) > 0."""
    if not counts.is_partition:
        return counts.distinct
    return int(across_partitions([counts], lambda: {"distinct": counts.distinct})["distinct"])


def distinct_frac(counts: PatternCounts) -> float:
    """|A| / E: distinct patterns per evaluation (1 = every evaluation has its own pattern)."""
    e = counts.evaluations
    return distinct(counts) / e if e else 0.0


def max_count(counts: PatternCounts) -> int:
    """max_a c(a): occurrences of the most frequent pattern."""
    local = int(counts.counts.max()) if counts.distinct else 0
    if not counts.is_partition:
        return local
    return int(across_partitions([counts], lambda: {"max_count": local})["max_count"])


def max_frac(counts: PatternCounts) -> float:
    """max_a c(a) / E: share of evaluations taken by the most frequent pattern."""
    e = counts.evaluations
    return max_count(counts) / e if e else 0.0


def entropy(counts: PatternCounts) -> float:
    """H = -sum_a p(a) log2 p(a) with p(a) = c(a) / E, in bits."""
    return _single(counts)["entropy"]


def max_entropy(counts: PatternCounts) -> float:
    """H_max = min(d log2 K, log2 E): the largest entropy the layer could show on E evaluations."""
    e = counts.evaluations
    if e == 0:
        return 0.0
    return min(counts.width * math.log2(counts.states), math.log2(e))


def rel_entropy(counts: PatternCounts) -> float:
    """H / H_max, in [0, 1]; 0 when H_max = 0 (a single evaluation)."""
    return _single(counts)["rel_entropy"]


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
    return _compared(counts, other)["added"]


def removed(counts: PatternCounts, other: PatternCounts) -> int:
    """|A_s \\ A_s'|: patterns present in `counts` (s) but gone in `other` (s')."""
    return _compared(counts, other)["removed"]


def jaccard(counts: PatternCounts, other: PatternCounts, *, threshold: int | None = None) -> float:
    """|A_s ∩ A_s'| / |A_s ∪ A_s'|.

    With `threshold=T` the sets are A_T = {a : c(a) > T} (the paper's jaccard_T, T = 10), which
    ignores rare patterns. Two empty sets give 1.0 (identical).
    """
    if threshold is None:
        return _compared(counts, other)["jaccard"]
    return _compared(counts, other, threshold)["jaccard_t"]


def weighted_jaccard(counts: PatternCounts, other: PatternCounts) -> float:
    """Ruzicka similarity: sum_a min(c_s(a), c_s'(a)) / sum_a max(c_s(a), c_s'(a))."""
    return _compared(counts, other)["weighted_jaccard"]


def _require_labels(counts: PatternCounts) -> None:
    if not counts.has_labels:
        raise ValueError(
            "this measure needs joint pattern-label counts; count with labels=True "
            "(e.g. learnscope.patterns.count(model, (x, y), labels=True))"
        )


def label_entropy(counts: PatternCounts) -> float:
    """H(L) = -sum_y p(y) log2 p(y), over the labels of the measured evaluations."""
    return _labelled(counts)["label_entropy"]


def joint_entropy(counts: PatternCounts) -> float:
    """H(A, L) = -sum_{a,y} p(a, y) log2 p(a, y), in bits."""
    return _labelled(counts)["joint_entropy"]


def conditional_entropy(counts: PatternCounts) -> float:
    """H(A | L) = H(A, L) - H(L): pattern uncertainty left once the label is known."""
    return _labelled(counts)["conditional_entropy"]


def mutual_information(counts: PatternCounts) -> float:
    """MI(A; L) = H(A) - H(A | L): bits the pattern tells about the label."""
    return _labelled(counts)["mutual_information"]


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
