"""Accumulators: the state a measurement pass builds, and how shards of it merge.

An accumulator is filled batch by batch on one rank; after the pass, the pass reduces every
accumulator across ranks (`learnscope.engine.reduction`, one place, one order). Each one declares
*how* its shards combine, in the manner of torchmetrics' ``add_state(..., dist_reduce_fx=...)``:

- ``Reduction.SUM``: the state is one array whose element-wise sum over shards is the state of
  the whole (counts, sums, moments about agreed reference points). One all-reduce.
  Implements ``to_sum(plans)`` / ``from_sum(summed, plans)``; ``sum_plan(shard)`` may first
  offer something every rank must agree on before summing (gathered with the layouts).
- ``Reduction.GATHER``: the state is a table of rows; every rank's rows are gathered to every
  rank and merged (pattern tables: equal keys' counts summed). Implements ``to_rows()`` and
  ``from_tables(kind, tables)``.

Whatever the kind, ``merge(other)`` is the pure, single-process definition of combining two
shards (a new object, inputs untouched); the reductions compute exactly what merging every
rank's shard would. ``kind()`` says what must agree for two states to merge (shape, settings);
``empty(kind)`` builds the state of a rank whose share of the data was empty.

- ``Reduction.PARTITION``: the state is a table of keyed rows, and each rank ends with the rows
  it *owns*, no rank with all of them: row i goes to rank ``owners(world)[i]`` (for pattern
  tables, hash(key) mod world), one all-to-all, and the owner merges what it receives
  (``from_partition``). ``partition_plan(shard)`` may offer a small value gathered with the
  layouts (pattern tables: the rank's evaluation count, so every partition knows the whole's).
  Whatever is derived from the whole is then summed from per-partition terms
  (`learnscope.engine.reduction.reduce_partial_terms`, one collective for all of them).

This module imports NumPy only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from enum import Enum
from typing import Any, ClassVar

import numpy as np


class Reduction(str, Enum):
    """How shards of an accumulator combine across ranks (see the module docstring)."""

    SUM = "sum"
    GATHER = "gather"
    PARTITION = "partition"


class Accumulator(ABC):
    """State of one pass on one rank, with a pure `merge` and a declared `reduction`."""

    reduction: ClassVar[Reduction]

    @abstractmethod
    def kind(self) -> Hashable:
        """What must be equal for two shards to merge; `empty(kind)` rebuilds an empty state."""

    @classmethod
    def empty(cls, kind: Hashable) -> Accumulator:
        """The state of a rank that saw no data (default: not possible, every rank must build
        this accumulator itself, e.g. from an earlier pass's reduced state)."""
        raise TypeError(
            f"{cls.__name__} cannot be rebuilt from its kind on a rank that saw no data; "
            "create it on every rank before the pass"
        )

    @abstractmethod
    def merge(self, other: Accumulator) -> Accumulator:
        """The state of both shards together (a new object; neither input changes)."""

    # -- Reduction.SUM
    def sum_plan(self, shard: Any) -> Any:
        """What every rank must see before summing (default: nothing)."""
        return None

    def to_sum(self, plans: Sequence[Any]) -> np.ndarray:
        """The array to sum across ranks, given every rank's `sum_plan` (rank order)."""
        raise _undeclared(type(self), "sum", "to_sum and from_sum")

    def from_sum(self, summed: np.ndarray, plans: Sequence[Any]) -> Accumulator:
        """The whole's state from the summed array (a new object)."""
        raise _undeclared(type(self), "sum", "to_sum and from_sum")

    # -- Reduction.GATHER
    def to_rows(self) -> np.ndarray:
        """This shard's rows (a 2-D array; columns and dtype equal on every rank)."""
        raise _undeclared(type(self), "gathering", "to_rows and from_tables")

    @classmethod
    def from_tables(cls, kind: Hashable, tables: Sequence[np.ndarray]) -> Accumulator:
        """The whole's state from every rank's rows (rank order)."""
        raise _undeclared(cls, "gathering", "to_rows and from_tables")


    # -- Reduction.PARTITION
    def partition_plan(self, shard: Any) -> Any:
        """What every rank must see before the exchange (default: nothing)."""
        return None

    def owners(self, world: int) -> np.ndarray:
        """The owner rank of each of `to_rows()`'s rows, (rows,) int64 in [0, world)."""
        raise _undeclared(type(self), "partition", "to_rows, owners and from_partition")

    @classmethod
    def from_partition(cls, kind: Hashable, tables: Sequence[np.ndarray],
                       partition: tuple[int, int], plans: Sequence[Any]) -> Accumulator:
        """This rank's partition (rank, world) of the whole, from the rows every rank sent it
        (rank order) and every rank's `partition_plan`."""
        raise _undeclared(cls, "partition", "to_rows, owners and from_partition")


def _undeclared(kind: type, reduction: str, methods: str) -> TypeError:
    """The error for an accumulator reduced in a way it does not implement (its declared
    `reduction` and its methods disagree)."""
    return TypeError(f"{kind.__name__} is reduced by {reduction} but does not define {methods}; "
                     "define them, or declare the reduction it implements")


class Sum(Accumulator):
    """A float64 array (a scalar by default) summed over batches and over ranks.

    `add(value)` adds a number, array or tensor of the accumulator's shape (tensors are brought
    to the host in float64 first). `value` is the sum so far (a float for the scalar shape).
    """

    reduction = Reduction.SUM

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.total = np.zeros(tuple(shape), dtype=np.float64)

    def add(self, value: Any) -> Sum:
        if hasattr(value, "detach"):  # a torch tensor: sum on the host in float64
            value = value.detach().to("cpu").double().numpy()
        self.total = self.total + np.asarray(value, dtype=np.float64)
        if self.total.shape != self.kind():
            raise ValueError(f"Sum of shape {self.kind()} got a value of another shape")
        return self

    @property
    def value(self) -> float | np.ndarray:
        return float(self.total) if self.total.ndim == 0 else self.total.copy()

    def kind(self) -> tuple[int, ...]:
        return tuple(self.total.shape)

    @classmethod
    def empty(cls, kind: Hashable) -> Sum:
        return cls(tuple(kind))  # type: ignore[arg-type]

    def merge(self, other: Accumulator) -> Sum:
        if not isinstance(other, Sum) or other.kind() != self.kind():
            raise ValueError(f"cannot merge Sum of shape {self.kind()} with {other!r}")
        merged = Sum(self.kind())
        merged.total = self.total + other.total
        return merged

    def to_sum(self, plans: Sequence[Any]) -> np.ndarray:
        return np.atleast_1d(self.total)

    def from_sum(self, summed: np.ndarray, plans: Sequence[Any]) -> Sum:
        result = Sum(self.kind())
        result.total = np.asarray(summed, dtype=np.float64).reshape(self.kind())
        return result

    def __repr__(self) -> str:
        return f"Sum({self.value!r})"
