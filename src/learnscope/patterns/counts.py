"""Counting pattern keys: exact counters, the paper's fixed-size hash list, and PatternCounts.

Exact mode never merges two different patterns. Two exact methods, chosen per layer:
- dense: for narrow layers (at most 2**20 possible keys) a bincount into a table of all keys;
- sorted: for wider layers each batch is reduced to (unique key, count) pairs by sorting, and the
  pairs are folded into a running sorted table whenever the pending pairs outgrow it, so memory is
  proportional to the number of distinct patterns, not to the number of evaluations.
With labels, the counted row is (pattern words..., label), so joint counts c(a, y) come for free and
the pattern counts c(a) are their marginal.

Hash-list mode (the paper's Algorithm 1) maps each pattern to hash(pattern) mod N in a table of N
counters; colliding patterns merge. Its "patterns" are table slots, and `occupancy` says how full
the table is (the paper kept it below 15% to keep collisions rare).

Across ranks (torchrun), exact counts merge by *partition* by default: the row of pattern a goes
to rank hash(a) mod world (`owner_ranks`, the splitmix64 hash of `hash_rows`), so each rank
ends with the counts of its part of the key space only (`PatternCounts.partition`), and the
measures are summed from per-partition terms (`learnscope.patterns.measures`). With
``merge="gather"`` (and always in hash-list mode, whose tables are bounded by N) every rank's
rows are gathered to every rank instead.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from learnscope.engine.accumulators import Accumulator, Reduction
from learnscope.patterns.keys import PatternLayout

DENSE_MAX_KEY_SPACE = 1 << 20  # narrow layers: count into a table of every possible key
DENSE_MAX_CELLS = 1 << 22  # key space x labels; beyond it the dense table spills to sorted mode
DEFAULT_TABLE_SIZE = 1 << 20  # hash-list mode: counters per layer
_FORMAT_VERSION = 1
_PARTITION_FORMAT_VERSION = 2  # one partition of a table, or the index of a partitioned table
MERGES = ("partition", "gather")


def segment_sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of the int64 segments values[starts[i]:starts[i+1]] (exact; faster than reduceat
    when most segments have length one, as in a table of mostly distinct patterns)."""
    if starts.size == 0:
        return np.zeros(0, dtype=np.int64)
    totals = np.cumsum(values, dtype=np.int64)[np.append(starts[1:], values.shape[0]) - 1]
    return np.diff(totals, prepend=np.int64(0))


def lexicographic_order(rows: np.ndarray) -> np.ndarray:
    """Indices that sort int64 rows lexicographically (column 0 first), stably.

    Same result as np.lexsort(rows.T[::-1]), much faster on the tables learnscope sorts: rows
    are ordered by column 0 with a stable argsort (a timsort, linear on the few concatenated
    sorted runs a fold or merge produces), and only the rows whose column 0 is shared with a
    neighbour (rare in wide layers, where column 0 holds 64 pattern bits) are lexsorted.
    """
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows[:, 0], kind="stable")
    if rows.shape[1] == 1 or rows.shape[0] < 2:
        return order
    first = rows[order, 0]
    same = first[1:] == first[:-1]
    tied = np.zeros(first.shape[0], dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    if not tied.any():
        return order
    # the tied rows sit in runs of equal column 0, runs in increasing column-0 order: sorting
    # them all lexicographically refills the same positions run by run
    where = np.flatnonzero(tied)
    members = order[where]
    order[where] = members[np.lexsort(rows[members].T[::-1])]
    return order


def row_changes(rows: np.ndarray) -> np.ndarray:
    """Boolean (m,): True where a row differs from the previous one (always True for row 0).

    Column by column, without the (m - 1, c) temporary of `(rows[1:] != rows[:-1]).any(axis=1)`.
    """
    changed = np.ones(rows.shape[0], dtype=bool)
    if rows.shape[0] > 1:
        different = rows[1:, 0] != rows[:-1, 0]
        for column in range(1, rows.shape[1]):
            different |= rows[1:, column] != rows[:-1, column]
        changed[1:] = different
    return changed


def sum_unique_rows(
    rows: np.ndarray, counts: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sort int64 rows lexicographically (column 0 first) and sum the counts of equal rows.

    Args:
        rows: (m, c) int64 array.
        counts: (m,) int64 weights; ones when None.

    Returns:
        (unique rows (u, c) in lexicographic order, summed counts (u,) int64).
    """
    rows = np.asarray(rows, dtype=np.int64)
    if counts is None:
        if rows.shape[1] == 1:
            uniq, summed = np.unique(rows[:, 0], return_counts=True)
            return uniq.reshape(-1, 1), summed.astype(np.int64)
        counts = np.ones(rows.shape[0], dtype=np.int64)
    if rows.shape[0] == 0:
        return rows.reshape(0, rows.shape[1]), np.zeros(0, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    if rows.shape[1] == 1:
        keys = rows[:, 0]
        order = np.argsort(keys, kind="stable")  # timsort: fast on concatenated sorted runs
        keys = keys[order]
        starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
        return keys[starts].reshape(-1, 1), segment_sums(counts[order], starts)
    order = lexicographic_order(rows)
    rows = rows[order]
    starts = np.flatnonzero(row_changes(rows))
    return rows[starts], segment_sums(counts[order], starts)


def unique_row_ids(rows: np.ndarray) -> tuple[int, np.ndarray]:
    """Number of distinct int64 rows, and for each row the rank of its value among them."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.shape[0] == 0:
        return 0, np.zeros(0, dtype=np.int64)
    if rows.shape[1] == 1:
        uniq, inverse = np.unique(rows[:, 0], return_inverse=True)
        return uniq.shape[0], inverse.reshape(-1)
    order = lexicographic_order(rows)
    ordered = rows[order]
    ranks = np.cumsum(row_changes(ordered)) - 1
    inverse = np.empty(rows.shape[0], dtype=np.int64)
    inverse[order] = ranks
    return int(ranks[-1]) + 1, inverse


def hash_rows(keys: np.ndarray) -> np.ndarray:
    """A 64-bit mixing hash (splitmix64 finaliser, chained over words) of each int64 key row."""
    keys = np.ascontiguousarray(keys, dtype=np.int64).view(np.uint64)
    h = np.full(keys.shape[0], 0x9E3779B97F4A7C15, dtype=np.uint64)
    for w in range(keys.shape[1]):
        h ^= keys[:, w]
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return h


def owner_ranks(keys: np.ndarray, world: int) -> np.ndarray:
    """The rank that owns each key row in a world of `world` ranks: hash_rows(keys) mod world
    (int64; every row of one pattern, whatever its label, has the same owner)."""
    if world < 1:
        raise ValueError(f"world must be >= 1, got {world}")
    return (hash_rows(keys) % np.uint64(world)).astype(np.int64)


def check_merge(merge: str) -> None:
    """Raise ValueError unless `merge` is one of MERGES."""
    if merge not in MERGES:
        raise ValueError(f"unknown merge {merge!r} for counts across ranks; use one of {MERGES} "
                         "('partition': each rank keeps its part of the patterns; 'gather': "
                         "every rank gets every pattern)")


@dataclass
class PatternCounts(Accumulator):
    """The counted activation patterns of one layer over one measurement pass.

    Attributes:
        width: number of units d of the layer.
        breakpoints: the activation's breakpoints; states K = len(breakpoints) + 1.
        keys: (distinct, words) int64 pattern keys in lexicographic order (hash-list mode: the
            occupied slot numbers, shape (distinct, 1)).
        counts: (distinct,) int64, c(a) for each key.
        mode: "exact" or "hashlist".
        table_size: number of counters N in hash-list mode, else None.
        joint_index / joint_labels / joint_counts: when counted with labels, the joint counts
            c(a, y): row r says pattern keys[joint_index[r]] occurred joint_counts[r] times with
            label joint_labels[r]. None without labels.
        rank_merge: how shards of these counts merge across ranks: "partition" (exact mode: each
            rank keeps the patterns it owns) or "gather" (every rank gets every pattern).
        partition: (rank, world) when these are the counts of one rank's partition of the
            patterns (those with owner_ranks(key, world) == rank), None for a whole table.
        total_evaluations: E of the whole measurement when `partition` is set (a partition's
            own counts add up to less).
    """

    width: int
    breakpoints: tuple[float, ...]
    keys: np.ndarray
    counts: np.ndarray
    mode: str = "exact"
    table_size: int | None = None
    joint_index: np.ndarray | None = None
    joint_labels: np.ndarray | None = None
    joint_counts: np.ndarray | None = None
    rank_merge: str = "gather"
    partition: tuple[int, int] | None = None
    total_evaluations: int | None = None

    @property
    def states(self) -> int:
        """K, the number of states per unit."""
        return len(self.breakpoints) + 1

    @property
    def evaluations(self) -> int:
        """E, the number of evaluations counted (sum of all counts; of a partition: of the
        whole measurement)."""
        if self.total_evaluations is not None:
            return self.total_evaluations
        return int(self.counts.sum())

    @property
    def distinct(self) -> int:
        """|A|, the number of distinct patterns held here (hash-list mode: occupied slots; a
        partition: its own patterns, see `measures.distinct` for the whole's)."""
        return int(self.counts.shape[0])

    @property
    def is_partition(self) -> bool:
        """Whether these are one partition of counts spread over several ranks."""
        return self.partition is not None and self.partition[1] > 1

    @property
    def has_labels(self) -> bool:
        """Whether joint counts with labels are available."""
        return self.joint_counts is not None

    @property
    def occupancy(self) -> float | None:
        """Hash-list mode: occupied slots / N. None in exact mode (no collisions to worry about)."""
        return None if self.table_size is None else self.distinct / self.table_size

    @property
    def layout(self) -> PatternLayout:
        """The packing layout of the keys."""
        return PatternLayout(self.width, tuple(self.breakpoints))

    @classmethod
    def from_rows(
        cls,
        rows: np.ndarray,
        counts: np.ndarray,
        *,
        width: int,
        breakpoints: tuple[float, ...],
        labelled: bool,
        mode: str = "exact",
        table_size: int | None = None,
        presorted: bool = False,
    ) -> PatternCounts:
        """Build from counted rows (keys..., [label]) with their counts.

        Rows need not be unique or sorted unless `presorted=True` promises both.
        """
        if not presorted:
            rows, counts = sum_unique_rows(rows, counts)
        if not labelled:
            return cls(width, tuple(breakpoints), rows, counts, mode, table_size)
        key_cols = rows[:, :-1]
        new_pattern = row_changes(key_cols)
        if rows.shape[0] == 0:
            new_pattern = np.zeros(0, dtype=bool)
        starts = np.flatnonzero(new_pattern)
        marginal = segment_sums(counts, starts)
        return cls(
            width,
            tuple(breakpoints),
            np.ascontiguousarray(key_cols[starts]),
            marginal.astype(np.int64),
            mode,
            table_size,
            joint_index=np.cumsum(new_pattern) - 1,
            joint_labels=rows[:, -1].copy(),
            joint_counts=counts,
        )

    def counted_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows as counted and their counts: (keys..., label) rows with c(a, y) when
        counted with labels, else the keys with c(a); `from_rows` rebuilds the counts."""
        if not self.has_labels:
            return self.keys, self.counts
        return np.column_stack([self.keys[self.joint_index], self.joint_labels]), self.joint_counts

    def check_compatible(self, other: PatternCounts) -> None:
        """Raise ValueError unless `other` counts the same kind of patterns (layer shape, mode)."""
        mine = (self.width, tuple(self.breakpoints), self.mode, self.table_size)
        theirs = (other.width, tuple(other.breakpoints), other.mode, other.table_size)
        if mine != theirs:
            raise ValueError(
                "cannot combine pattern counts of different kinds: "
                f"(width, breakpoints, mode, table_size) = {mine} vs {theirs}; "
                "compare counts of the same layer measured in the same mode"
            )

    def merge(self, other: PatternCounts) -> PatternCounts:
        """Counts of the union of two measurement shards: exactly the counts of the whole."""
        return PatternCounts.merge_all([self, other])

    @classmethod
    def merge_all(cls, parts: Sequence[PatternCounts]) -> PatternCounts:
        """Counts of the union of several shards, exactly; the order of `parts` does not matter
        (keys come out sorted, equal keys' counts summed)."""
        parts = list(parts)
        if not parts:
            raise ValueError("merge_all needs at least one PatternCounts")
        first = parts[0]
        for other in parts[1:]:
            first.check_compatible(other)
            if other.has_labels != first.has_labels:
                raise ValueError(
                    "cannot merge counts with labels and counts without; count all shards with "
                    "labels=True or all without"
                )
        if len(parts) == 1:
            return first
        tables = [p.counted_rows() for p in parts]
        merged = PatternCounts.from_rows(
            np.concatenate([rows for rows, _ in tables]),
            np.concatenate([counts for _, counts in tables]),
            width=first.width,
            breakpoints=first.breakpoints,
            labelled=first.has_labels,
            mode=first.mode,
            table_size=first.table_size,
        )
        merged.rank_merge = first.rank_merge
        return merged

    def restricted_to(self, partition: tuple[int, int]) -> PatternCounts:
        """The partition (rank, world) of these counts: the patterns `rank` owns among `world`
        ranks, marked as such (E stays the whole's). From whole counts, or from a partition of
        another world (the part of it that `rank` owns: merged over every partition of that
        world, the partition (rank, world) of the whole)."""
        rank, world = partition
        rows, counts = self.counted_rows()
        mine = owner_ranks(rows[:, : self.keys.shape[1]], world) == rank
        part = PatternCounts.from_rows(rows[mine], counts[mine], width=self.width,
                                       breakpoints=self.breakpoints, labelled=self.has_labels,
                                       mode=self.mode, table_size=self.table_size,
                                       presorted=True)
        part.rank_merge, part.partition = self.rank_merge, (rank, world)
        part.total_evaluations = self.evaluations
        return part

    # -- as a pass accumulator: rows routed to their owner rank (merge="partition", exact
    # mode), or every rank's rows gathered to every rank and merged (merge="gather")

    @property
    def reduction(self) -> Reduction:  # type: ignore[override]
        """PARTITION for exact counts with rank_merge="partition", else GATHER."""
        if self.rank_merge == "partition" and self.mode == "exact":
            return Reduction.PARTITION
        return Reduction.GATHER

    def kind(self) -> tuple:
        """(width, breakpoints, mode, table_size, labelled, key words, merge): what must
        agree."""
        return (self.width, tuple(self.breakpoints), self.mode, self.table_size,
                self.has_labels, self.keys.shape[1], self.rank_merge)

    @classmethod
    def empty(cls, kind: tuple) -> PatternCounts:
        """No pattern counted, of the given `kind`."""
        width, breakpoints, mode, table_size, labelled, words, merge = kind
        columns = words + int(labelled)
        empty = cls.from_rows(np.zeros((0, columns), dtype=np.int64), np.zeros(0, dtype=np.int64),
                              width=width, breakpoints=breakpoints, labelled=labelled, mode=mode,
                              table_size=table_size, presorted=True)
        empty.rank_merge = merge
        return empty

    def partition_plan(self, shard) -> int:
        """This shard's evaluation count (summed over ranks: E of the whole)."""
        return int(self.counts.sum())

    def owners(self, world: int) -> np.ndarray:
        """The owner rank of each row of `to_rows()`: that of its pattern key."""
        owners = owner_ranks(self.keys, world)
        return owners[self.joint_index] if self.has_labels else owners

    @classmethod
    def from_partition(cls, kind: tuple, tables: Sequence[np.ndarray],
                       partition: tuple[int, int], plans: Sequence[int]) -> PatternCounts:
        """Partition (rank, world) of the whole: the rows every rank routed to this one."""
        part = cls.from_tables(kind, tables)
        part.rank_merge, part.partition = kind[-1], tuple(partition)
        part.total_evaluations = int(sum(plan for plan in plans if plan is not None))
        return part

    def to_rows(self) -> np.ndarray:
        """The counted rows with their counts as a last column (int64)."""
        rows, counts = self.counted_rows()
        return np.column_stack([rows, counts])

    @classmethod
    def from_tables(cls, kind: tuple, tables: Sequence[np.ndarray]) -> PatternCounts:
        """The counts of several `to_rows` tables together (sorted keys, equal rows summed)."""
        width, breakpoints, mode, table_size, labelled, _, merge = kind
        every = np.concatenate(list(tables))
        merged = cls.from_rows(every[:, :-1], every[:, -1], width=width, breakpoints=breakpoints,
                               labelled=labelled, mode=mode, table_size=table_size)
        merged.rank_merge = merge
        return merged

    def save(self, path: str | os.PathLike) -> Path:
        """Write to `path` (.npz) atomically: a reader never sees a half-written file."""
        path = Path(path)
        meta = {
            "format": _FORMAT_VERSION,
            "width": self.width,
            "breakpoints": list(self.breakpoints),
            "mode": self.mode,
            "table_size": self.table_size,
        }
        if self.partition is not None:  # unknown to readers of format 1: a newer format
            meta.update(format=_PARTITION_FORMAT_VERSION, partition=list(self.partition),
                        total_evaluations=self.total_evaluations)
        arrays = {"keys": self.keys, "counts": self.counts, "meta": np.array(json.dumps(meta))}
        if self.has_labels:
            arrays.update(
                joint_index=self.joint_index,
                joint_labels=self.joint_labels,
                joint_counts=self.joint_counts,
            )
        return _write_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike,
             partition: tuple[int, int] | None = None) -> PatternCounts:
        """Read counts written by `save` (or by `PartitionedCounts.save`: the index of a
        table saved as one file per partition, read back whole).

        With `partition=(rank, world)`, only the patterns `rank` owns among `world` ranks
        (whatever world the counts were measured at), marked as that partition; reading a
        table saved per partition then holds one saved part at a time besides the result.
        """
        path = Path(path)
        meta = _read_meta(path)
        if "parts" in meta:  # the index of a partitioned table
            parts = []
            for name in meta["parts"]:
                part = cls.load(path.with_name(name))
                parts.append(part if partition is None else part.restricted_to(partition))
            whole = cls.merge_all(parts)
            if partition is not None:  # merged parts of one partition: still a partition
                whole.partition, whole.total_evaluations = tuple(partition), meta["evaluations"]
            else:
                whole.partition, whole.total_evaluations = None, None
            return whole
        with np.load(path, allow_pickle=False) as data:
            joint = {}
            if "joint_counts" in data:
                joint = {k: data[k] for k in ("joint_index", "joint_labels", "joint_counts")}
            saved_partition = meta.get("partition")
            counts = cls(
                meta["width"],
                tuple(meta["breakpoints"]),
                data["keys"],
                data["counts"],
                meta["mode"],
                meta["table_size"],
                **joint,
                partition=None if saved_partition is None else tuple(saved_partition),
                total_evaluations=meta.get("total_evaluations"),
            )
        if partition is None or counts.partition == tuple(partition):
            return counts
        if counts.partition is not None:
            raise ValueError(
                f"{path} holds partition {counts.partition} of the patterns only, not "
                f"{tuple(partition)}; load the table's index file (listed in the manifest) "
                "to read any partition"
            )
        return counts.restricted_to(partition)


def _read_meta(path: Path) -> dict:
    """The header of a saved pattern-count file, checked for a format this version reads."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
    if meta.get("format") not in (_FORMAT_VERSION, _PARTITION_FORMAT_VERSION):
        raise ValueError(
            f"{path}: pattern-count file format {meta.get('format')!r}, this learnscope "
            f"reads formats {_FORMAT_VERSION} and {_PARTITION_FORMAT_VERSION}; "
            "re-measure or use a matching version"
        )
    return meta


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


class PartitionedCounts:
    """One layer's counts measured partitioned over `world` ranks, kept as one file per
    partition: the artifact the writing rank (rank 0) saves for the whole table.

    Built by `collect` (collective): every rank's partition reaches rank 0 in turn and is
    spooled to a temporary file at once, so rank 0 never holds more than one partition.
    `save(path)` moves the parts next to `path` as ``<stem>.part<r>of<w>.npz`` and writes at
    `path` a small index naming them, which `PatternCounts.load` reads back whole, or as any
    partition of any world size.
    """

    def __init__(self, like: PatternCounts, parts: list[Path], spool: str) -> None:
        self.width, self.breakpoints = like.width, tuple(like.breakpoints)
        self.mode, self.table_size = like.mode, like.table_size
        self.evaluations = like.evaluations
        self.parts = parts
        self._cleanup = weakref.finalize(self, shutil.rmtree, spool, True)

    @classmethod
    def collect(cls, counts: PatternCounts, send) -> PartitionedCounts | None:
        """Every rank's partition of `counts`, spooled on rank 0 (None elsewhere); `send` is
        `learnscope.distributed.send_arrays_to_main` (collective)."""
        world = counts.partition[1]
        spool = tempfile.mkdtemp(prefix="learnscope-parts-")
        parts: list[Path] = []
        kind = counts.kind()

        def receive(rank: int, table: np.ndarray) -> None:
            part = PatternCounts.from_partition(kind, [table], (rank, world),
                                                [counts.evaluations])
            parts.append(part.save(Path(spool) / f"part{rank}of{world}.npz"))

        send(counts.to_rows(), receive)
        if not parts:  # not the writing rank
            shutil.rmtree(spool, ignore_errors=True)
            return None
        return cls(counts, parts, spool)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the parts next to `path` and the index at `path` (atomically, last)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        world = len(self.parts)
        names = []
        saved = []
        for rank, part in enumerate(self.parts):
            target = path.with_name(f"{path.stem}.part{rank}of{world}{path.suffix}")
            if self._cleanup.alive:  # first save: the spooled parts move into place
                shutil.move(part, target)
            else:
                shutil.copyfile(part, target)
            saved.append(target)
            names.append(target.name)
        self.parts = saved
        self._cleanup()  # the spool folder, now empty
        meta = {"format": _PARTITION_FORMAT_VERSION, "width": self.width,
                "breakpoints": list(self.breakpoints), "mode": self.mode,
                "table_size": self.table_size, "evaluations": self.evaluations, "parts": names}
        return _write_atomic(path, {"meta": np.array(json.dumps(meta))})


FOLD_MIN_ROWS = 1 << 16  # pending (unique row, count) pairs below this never trigger a fold


class _SortedTable:
    """Exact counts of int64 rows; memory ~ distinct rows (pending batches fold in regularly).

    Fold policy: the per-batch (unique row, count) pairs wait in a pending list until they
    outnumber max(FOLD_MIN_ROWS, rows in the table); then table and pending are concatenated,
    sorted and equal rows summed. The same policy serves NumPy arrays (the default) and torch
    tensors on any device (`sum_unique` and `concatenate` given by `device_counts`).
    """

    def __init__(self, rows, counts, sum_unique=sum_unique_rows, concatenate=np.concatenate):
        self.rows, self.counts = rows, counts
        self._sum_unique, self._concatenate = sum_unique, concatenate
        self._pending: list[tuple] = []
        self._pending_rows = 0

    def add(self, rows, counts=None) -> None:
        uniq, summed = self._sum_unique(rows, counts)
        self._pending.append((uniq, summed))
        self._pending_rows += uniq.shape[0]
        if self._pending_rows > max(FOLD_MIN_ROWS, self.rows.shape[0]):
            self._fold()

    def _fold(self) -> None:
        if not self._pending:
            return
        rows = self._concatenate([self.rows] + [r for r, _ in self._pending])
        counts = self._concatenate([self.counts] + [c for _, c in self._pending])
        self.rows, self.counts = self._sum_unique(rows, counts)
        self._pending, self._pending_rows = [], 0

    def table(self) -> tuple:
        self._fold()
        return self.rows, self.counts


class _DenseTable:
    """Counts of single integer keys in [0, key_space), optionally per label, by bincount."""

    def __init__(self, key_space: int) -> None:
        self.key_space = key_space
        self.cells = np.zeros((key_space, 1), dtype=np.int64)

    @property
    def cell_count(self) -> int:
        return self.cells.size

    def add(self, keys: np.ndarray, labels: np.ndarray | None) -> None:
        if labels is not None:
            n_labels = int(labels.max()) + 1 if labels.size else 1
            if n_labels > self.cells.shape[1]:
                grown = np.zeros((self.key_space, n_labels), dtype=np.int64)
                grown[:, : self.cells.shape[1]] = self.cells
                self.cells = grown
            keys = keys * self.cells.shape[1] + labels
        flat = self.cells.reshape(-1)  # a view: cells is C-contiguous
        if keys.shape[0] * 8 >= flat.shape[0]:
            flat += np.bincount(keys, minlength=flat.shape[0])
        else:  # few keys for a big table (hash lists): touch only the cells that change
            cells, counts = np.unique(keys, return_counts=True)
            flat[cells] += counts

    def rows(self, labelled: bool) -> tuple[np.ndarray, np.ndarray]:
        key, label = np.nonzero(self.cells)
        counts = self.cells[key, label]
        if labelled:
            return np.column_stack([key, label]).astype(np.int64), counts
        return key.reshape(-1, 1).astype(np.int64), counts


def check_counting_mode(mode: str, table_size: int) -> None:
    """Raise ValueError for an unknown counting mode or a hash list without counters."""
    if mode not in ("exact", "hashlist"):
        raise ValueError(f"unknown counting mode {mode!r}; use 'exact' or 'hashlist'")
    if mode == "hashlist" and table_size < 1:
        raise ValueError(f"hash-list table_size must be >= 1, got {table_size}")


class PatternCounter:
    """Accumulates the pattern keys of one layer batch by batch; `result()` gives PatternCounts.

    Counts NumPy arrays on the host; `device_counts.DevicePatternCounter` is the same counter
    for torch tensors on their device (it overrides the table and row methods below).

    Args:
        layout: the layer's packing layout.
        labelled: count joint (pattern, label) occurrences too.
        mode: "exact" (default) or "hashlist".
        table_size: counters per layer in hash-list mode.
    """

    def __init__(
        self,
        layout: PatternLayout,
        *,
        labelled: bool = False,
        mode: str = "exact",
        table_size: int = DEFAULT_TABLE_SIZE,
    ) -> None:
        check_counting_mode(mode, table_size)
        self.layout = layout
        self.labelled = labelled
        self.mode = mode
        self.table_size = table_size if mode == "hashlist" else None
        key_space = table_size if mode == "hashlist" else layout.key_space
        self._dense = None
        self._sorted = None
        if 0 < key_space and (mode == "hashlist" or key_space <= DENSE_MAX_KEY_SPACE):
            self._dense = self._new_dense(key_space)
        else:
            self._sorted = self._new_sorted(layout.words + int(labelled))

    # -- what a counter for another array type overrides

    def _new_dense(self, key_space: int) -> _DenseTable:
        return _DenseTable(key_space)

    def _new_sorted(self, columns: int) -> _SortedTable:
        return _SortedTable(np.zeros((0, columns), dtype=np.int64), np.zeros(0, dtype=np.int64))

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        """Hash-list mode: each key row's slot, as a (E, 1) int64 array."""
        return (hash_rows(keys) % np.uint64(self.table_size)).astype(np.int64).reshape(-1, 1)

    def _with_labels(self, keys: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.column_stack([keys, labels])

    def _to_host(self, rows, counts) -> tuple[np.ndarray, np.ndarray]:
        return rows, counts

    # --

    def add(self, keys: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Count a batch: keys (E, words) int64 from `keys.pack`, labels (E,) int64 if labelled."""
        if self.labelled and labels is None:
            raise ValueError("this counter counts labels: pass one label per evaluation")
        if not self.labelled:
            labels = None
        if self.mode == "hashlist":
            keys = self._slots(keys)
        if self._dense is not None:
            self._dense.add(keys[:, 0], labels)
            if self._dense.cell_count > DENSE_MAX_CELLS and self.mode == "exact":
                self._spill_to_sorted()
            return
        rows = keys if labels is None else self._with_labels(keys, labels)
        self._sorted.add(rows)

    def _spill_to_sorted(self) -> None:
        rows, counts = self._dense.rows(self.labelled)
        self._sorted = self._new_sorted(rows.shape[1])
        self._sorted.add(rows, counts)
        self._dense = None

    def result(self) -> PatternCounts:
        """The counts so far (the counter can keep counting afterwards)."""
        if self._dense is not None:
            rows, counts = self._dense.rows(self.labelled)
        else:
            rows, counts = self._sorted.table()
        rows, counts = self._to_host(rows, counts)
        return PatternCounts.from_rows(
            rows,
            counts,
            width=self.layout.width,
            breakpoints=self.layout.breakpoints,
            labelled=self.labelled,
            mode=self.mode,
            table_size=self.table_size,
            presorted=True,
        )
