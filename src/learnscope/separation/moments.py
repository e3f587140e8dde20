"""Separation fuzziness D = Tr(Σ_W Σ_B⁺) of labelled features, computed from streamed moments.

Definitions (DESIGN.md, "Separation definitions"), features h_i ∈ R^p, C classes, n_c per class,
class means μ_c, global (sample) mean μ:
- balanced:   Σ_B = (1/C) Σ_c (μ_c − μ)(μ_c − μ)ᵀ,  Σ_W = (1/C) Σ_c (1/n_c) Σ_{i∈c} (h_i − μ_c)(·)ᵀ
- imbalanced: Σ_B = (1/N) Σ_c n_c (μ_c − μ)(·)ᵀ,      Σ_W = (1/N) Σ_i (h_i − μ_{y_i})(·)ᵀ

Σ_B = A Aᵀ with A = [(μ_c − μ)·√w_c] (p × C), so its eigenvectors and eigenvalues come from a thin
SVD of A (never a p × p eigen-decomposition). The pseudo-inverse keeps at most C − 1 eigenvalues
(the centred means span at most C − 1 directions; the C-th is rounding noise) and only those above
RTOL times the largest. Then D = Σ_k u_kᵀ Σ_W u_k / λ_k: only Σ_W along the kept u_k matters,
which is what lets `WithinAlong` measure wide features exactly in O(C p) memory (a second pass).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from learnscope import distributed
from learnscope.engine.accumulators import Accumulator, Reduction
from learnscope.engine.batches import Shard
from learnscope.engine.reduction import reduce_one

RTOL = 1e-10  # eigenvalues of Σ_B below RTOL × the largest count as zero in the pseudo-inverse


def as_features(features, what: str = "features") -> np.ndarray:
    """(N, ...) array or tensor -> (N, p) float64 NumPy array (checked finite)."""
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    x = np.asarray(features)
    if x.ndim < 1:
        raise ValueError(f"{what} must have shape (N, ...), got a scalar")
    x = x.reshape(x.shape[0], -1).astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise ValueError(
            f"{what}: {bad} of {x.size} values are NaN or inf; the model has diverged (lower the "
            "learning rate) or the inputs hold NaN"
        )
    return x


def as_labels(labels, n: int) -> np.ndarray:
    """Labels -> 1-D int64 array of n non-negative class indices."""
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(
            f"labels of shape {y.shape} do not match {n} feature rows; expected one integer "
            f"class index per sample, shape ({n},)"
        )
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
    if y.size and int(y.min()) < 0:
        raise ValueError(f"labels must be >= 0 class indices, found {int(y.min())}")
    return y.astype(np.int64, copy=False)


def between_basis(counts: np.ndarray, means: np.ndarray, balanced: bool):
    """Eigenvectors U (p × r) and eigenvalues λ (r) of Σ_B kept by the pseudo-inverse."""
    n, c = counts.sum(), counts.shape[0]
    weights = np.full(c, 1.0 / c) if balanced else counts / n
    mu = (counts[:, None] * means).sum(axis=0) / n  # the global sample mean
    a = ((means - mu) * np.sqrt(weights)[:, None]).T  # p × C, Σ_B = A Aᵀ
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    eig = s**2
    if eig.size == 0 or eig[0] <= 0.0:
        return u[:, :0], eig[:0]
    keep = min(c - 1, int((eig > RTOL * eig[0]).sum()))
    return u[:, :keep], eig[:keep]


class ClassMoments(Accumulator):
    """Streaming per-class counts, sums and sums of outer products (float64), then D.

    Each class's moments are taken about a reference point (the mean of that class in the first
    batch where it appears), so the within-class scatter S_c − n_c d_c d_cᵀ (d_c = shifted mean)
    does not cancel catastrophically when features sit far from the origin. Memory O(C p²)
    (O(C p) with `second_moments=False`: class means only, for `WithinAlong`).

    Args:
        num_features: p (features of any shape are flattened).
        num_classes: the classes expected (labels 0..C-1, all must occur); None: the labels seen.
        second_moments: also keep the per-class p × p sums of outer products.
    """

    def __init__(
        self, num_features: int, num_classes: int | None = None, *, second_moments: bool = True
    ) -> None:
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.num_features = int(num_features)
        self.num_classes = num_classes
        self.second_moments = second_moments
        self._classes: dict[int, list] = {}  # label -> [count, reference, shifted sum, outer]
        self._first: dict[int, int] = {}  # label -> the update (batch) where it first appeared
        self._updates = 0

    def update(self, features, labels) -> ClassMoments:
        """Add a batch: features (n, ...) with n labels."""
        x = as_features(features)
        y = as_labels(labels, x.shape[0])
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"features have {x.shape[1]} values per sample, expected {self.num_features}"
            )
        if self.num_classes is not None and y.size and int(y.max()) >= self.num_classes:
            raise ValueError(
                f"label {int(y.max())} is out of range for num_classes={self.num_classes}"
            )
        for label in np.unique(y):
            xc = x[y == label]
            entry = self._classes.get(int(label))
            if entry is None:
                reference = xc.mean(axis=0)
                outer = np.zeros((x.shape[1],) * 2) if self.second_moments else None
                entry = self._classes[int(label)] = [0, reference, np.zeros(x.shape[1]), outer]
                self._first[int(label)] = self._updates
            shifted = xc - entry[1]
            entry[0] += xc.shape[0]
            entry[2] += shifted.sum(axis=0)
            if self.second_moments:
                entry[3] += shifted.T @ shifted
        self._updates += 1
        return self

    def _shifted(self, label: int, reference: np.ndarray) -> tuple[int, np.ndarray, Any]:
        """(count, sum, outer sum) of class `label` about another reference point, exactly.

        With y = x − r_old and δ = r_old − r_new: Σ(x − r_new) = s + n δ and
        Σ(x − r_new)(x − r_new)ᵀ = S + s δᵀ + δ sᵀ + n δ δᵀ.
        """
        count, old, total, outer = self._classes[label]
        delta = old - reference
        if not delta.any():
            return count, total.copy(), None if outer is None else outer.copy()
        shifted_total = total + count * delta
        if outer is None:
            return count, shifted_total, None
        cross = np.outer(total, delta)
        return count, shifted_total, outer + cross + cross.T + count * np.outer(delta, delta)

    def _check_mergeable(self, other: ClassMoments) -> None:
        mine = (self.num_features, self.num_classes, self.second_moments)
        theirs = (other.num_features, other.num_classes, other.second_moments)
        if mine != theirs:
            raise ValueError(
                "cannot merge moments of different kinds: (num_features, num_classes, "
                f"second_moments) = {mine} vs {theirs}; merge moments of the same layer, "
                "accumulated with the same settings"
            )

    def merge(self, other: ClassMoments) -> ClassMoments:
        """Moments of the union of two shards (a new object): exactly those of the whole.

        A class seen by both keeps this object's reference point; the other's sums are moved to
        it exactly (see `_shifted`) and added, in float64.
        """
        self._check_mergeable(other)
        merged = ClassMoments(self.num_features, self.num_classes,
                              second_moments=self.second_moments)
        for label in sorted(set(self._classes) | set(other._classes)):
            owner = self if label in self._classes else other
            reference = owner._classes[label][1].copy()
            count, total, outer = owner._shifted(label, reference)
            if owner is self and label in other._classes:
                n, t, o = other._shifted(label, reference)
                count, total = count + n, total + t
                outer = None if outer is None else outer + o
            merged._classes[label] = [count, reference, total, outer]
            merged._first[label] = owner._first[label]
        merged._updates = self._updates + other._updates
        return merged

    # -- as a pass accumulator: summed across ranks about agreed reference points

    reduction = Reduction.SUM

    def kind(self) -> tuple[int, int | None, bool]:
        """(num_features, num_classes, second_moments): what must agree to merge."""
        return (self.num_features, self.num_classes, self.second_moments)

    @classmethod
    def empty(cls, kind: tuple[int, int | None, bool]) -> ClassMoments:
        num_features, num_classes, second_moments = kind
        return cls(num_features, num_classes, second_moments=second_moments)

    def sum_plan(self, shard: Shard) -> dict[int, tuple[int, np.ndarray]]:
        """Each class's first global batch on this rank and its reference point there."""
        return {label: (shard.global_index(self._first[label]), entry[1])
                for label, entry in self._classes.items()}

    @staticmethod
    def _references(plans: Sequence[Any]) -> dict[int, tuple[int, np.ndarray]]:
        """Per class, the reference the single-process pass would use: that class's mean in the
        first global batch holding it (the earliest offer of every rank's plan)."""
        offered = [plan for plan in plans if plan]
        labels = sorted(set().union(*offered)) if offered else []
        return {label: min((plan[label] for plan in offered if label in plan),
                           key=lambda offer: offer[0]) for label in labels}

    def to_sum(self, plans: Sequence[Any]) -> np.ndarray:
        """Counts, sums and outer-product sums of every class about the agreed references, one
        row per class (float64), zero for classes this rank did not see."""
        references = self._references(plans)
        p = self.num_features
        width = 1 + p + (p * p if self.second_moments else 0)
        packed = np.zeros((len(references), width))
        for row, label in enumerate(references):
            if label in self._classes:
                count, total, outer = self._shifted(label, references[label][1])
                packed[row, 0] = count
                packed[row, 1:1 + p] = total
                if outer is not None:
                    packed[row, 1 + p:] = outer.reshape(-1)
        return packed

    def from_sum(self, summed: np.ndarray, plans: Sequence[Any]) -> ClassMoments:
        """The whole's moments from the summed rows of `to_sum`."""
        references = self._references(plans)
        p = self.num_features
        result = ClassMoments(p, self.num_classes, second_moments=self.second_moments)
        for row, (label, (first, reference)) in enumerate(references.items()):
            outer = summed[row, 1 + p:].reshape(p, p).copy() if self.second_moments else None
            result._classes[label] = [int(round(summed[row, 0])), np.array(reference),
                                      summed[row, 1:1 + p].copy(), outer]
            result._first[label] = first
        return result

    def all_reduce(self, shard: Shard) -> ClassMoments:
        """The moments of every rank's batches summed, on every rank (collective).

        Each class is moved to one common reference point, the one the single-process pass would
        use (that class's mean in the first global batch holding it, given that batch i is rank
        i % world's), and the counts, sums and outer-product sums of all ranks are summed in
        float64 with one all-reduce (`learnscope.engine.reduction`). The result equals the
        single-process moments up to float64 rounding of the sums.
        """
        return reduce_one(self, shard)

    @property
    def classes(self) -> list[int]:
        """The class labels seen, sorted."""
        return sorted(self._classes)

    def _check(self) -> list[int]:
        labels = self.classes
        if self.num_classes is not None:
            missing = sorted(set(range(self.num_classes)) - set(labels))
            if missing:
                raise ValueError(
                    f"classes {missing} have no sample (num_classes={self.num_classes}); the "
                    "separation needs every class: measure on data holding all of them, or "
                    "leave num_classes unset"
                )
        if len(labels) < 2:
            raise ValueError(
                f"separation needs at least 2 classes, found {len(labels)} ({labels}); measure "
                "on labelled data holding several classes"
            )
        n = sum(self._classes[c][0] for c in labels)
        if n <= len(labels):
            raise ValueError(
                f"{n} samples for {len(labels)} classes: the within-class scatter needs more "
                "samples than classes"
            )
        return labels

    def counts_and_means(self) -> tuple[np.ndarray, np.ndarray]:
        """(counts (C,), class means (C, p)) in class order."""
        labels = self._check()
        counts = np.array([self._classes[c][0] for c in labels], dtype=np.float64)
        means = np.stack([self._classes[c][1] + self._classes[c][2] / self._classes[c][0]
                          for c in labels])
        return counts, means

    def within(self, balanced: bool = True) -> np.ndarray:
        """Σ_W (p × p)."""
        if not self.second_moments:
            raise ValueError("Σ_W needs second moments; build ClassMoments(second_moments=True)")
        labels = self._check()
        total = np.zeros((self.num_features,) * 2)
        n = sum(self._classes[c][0] for c in labels)
        for c in labels:
            count, _, shifted_sum, outer = self._classes[c]
            d = shifted_sum / count
            scatter = outer - count * np.outer(d, d)
            total += scatter / (count * len(labels)) if balanced else scatter / n
        return total

    def fuzziness(self, balanced: bool = True, max_dim: int | None = None) -> float:
        """D = Tr(Σ_W Σ_B⁺); with `max_dim`, of the features projected on their top `max_dim`
        principal directions (eigenvectors of the total covariance Σ_W + Σ_B, imbalanced form,
        i.e. PCA of the centred features) when p > max_dim. NaN if all class means coincide."""
        counts, means = self.counts_and_means()
        sigma_w = self.within(balanced)
        if max_dim is not None and self.num_features > max_dim:
            if max_dim < 1:
                raise ValueError(f"max_dim must be >= 1, got {max_dim}")
            n = counts.sum()
            mu = (counts[:, None] * means).sum(axis=0) / n
            centred = means - mu
            total = (self.within(False) if balanced else sigma_w) + (
                centred.T * (counts / n)) @ centred
            _, vectors = np.linalg.eigh(total)
            p = vectors[:, ::-1][:, :max_dim]
            sigma_w = p.T @ sigma_w @ p
            means = means @ p
        u, eig = between_basis(counts, means, balanced)
        if eig.size == 0:
            return math.nan
        return float(((sigma_w @ u) * u).sum(axis=0) @ (1.0 / eig))


class WithinAlong(Accumulator):
    """Second pass for wide features: Σ_W along the kept eigenvectors of Σ_B, in O(C p) memory.

    Built from a first pass's class means; `update` takes the same batches again and accumulates,
    per class, the squared projections of h − μ_c on each u_k (exactly centred: the means are
    known). D = Σ_k (u_kᵀ Σ_W u_k) / λ_k is then exact, with no p × p matrix anywhere.
    """

    def __init__(self, first_pass: ClassMoments, balanced: bool = True) -> None:
        self.balanced = balanced
        self.labels = first_pass.classes
        self.counts, self.means = first_pass.counts_and_means()
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.u, self.eig = between_basis(self.counts, self.means, balanced)
        self.squares = np.zeros((len(self.labels), self.eig.size))
        self.seen = np.zeros(len(self.labels))

    def update(self, features, labels) -> WithinAlong:
        """Add a batch (the same batches as the first pass, in any order)."""
        x = as_features(features)
        y = as_labels(labels, x.shape[0])
        rows = np.array([self.index.get(int(v), -1) for v in y])
        if (rows < 0).any():
            raise ValueError("the second pass saw labels the first pass did not")
        z = (x - self.means[rows]) @ self.u
        np.add.at(self.squares, rows, z**2)
        np.add.at(self.seen, rows, 1.0)
        return self

    # -- as a pass accumulator: projected squares and counts summed across ranks

    reduction = Reduction.SUM

    def kind(self) -> tuple:
        return (self.balanced, tuple(self.labels), self.eig.size)

    def merge(self, other: Accumulator) -> WithinAlong:
        """Both shards' squares and counts together (a new object); same first pass needed."""
        if not isinstance(other, WithinAlong) or other.kind() != self.kind():
            raise ValueError("cannot merge second passes built from different first passes")
        merged = copy.copy(self)
        merged.squares = self.squares + other.squares
        merged.seen = self.seen + other.seen
        return merged

    def to_sum(self, plans: Sequence[Any]) -> np.ndarray:
        return np.concatenate([self.squares.reshape(-1), self.seen])

    def from_sum(self, summed: np.ndarray, plans: Sequence[Any]) -> WithinAlong:
        result = copy.copy(self)
        size = self.squares.size
        result.squares = summed[:size].reshape(self.squares.shape)
        result.seen = summed[size:]
        return result

    def all_reduce(self) -> WithinAlong:
        """Sum the projected squares and sample counts over every rank, in place (collective).

        Every rank must hold the same first pass (e.g. moments merged with
        `ClassMoments.all_reduce`), hence the same directions u_k.
        """
        context = distributed.context()
        shard = Shard(context.rank, context.world_size)
        summed = reduce_one(self, shard)
        self.squares, self.seen = summed.squares, summed.seen
        return self

    def fuzziness(self) -> float:
        """D from the first pass's Σ_B and this pass's Σ_W along it."""
        if not np.array_equal(self.seen, self.counts):
            raise ValueError("the second pass did not see the same samples as the first")
        if self.eig.size == 0:
            return math.nan
        c = len(self.labels)
        if self.balanced:
            along = (self.squares / self.counts[:, None]).sum(axis=0) / c
        else:
            along = self.squares.sum(axis=0) / self.counts.sum()
        return float(along @ (1.0 / self.eig))


def fuzziness(features, labels, *, balanced: bool = True, max_dim: int | None = None) -> float:
    """Separation fuzziness D = Tr(Σ_W Σ_B⁺) of features (N, ...) with N class labels (float64).

    Args:
        features: array or tensor of shape (N, ...), flattened to (N, p).
        labels: N integer class indices.
        balanced: the balanced definition (each class weighs 1/C) or the imbalanced one (each
            sample weighs 1/N). Both agree when every class has the same number of samples.
        max_dim: project features wider than this on their top principal directions first.
    """
    x = as_features(features)
    y = as_labels(labels, x.shape[0])
    return ClassMoments(x.shape[1]).update(x, y).fuzziness(balanced, max_dim)

