"""Exact pattern counting with torch, on the device where the activations are (the "torch" backend).

The same counter as `counts.PatternCounter` (same modes, same tables, same fold policy, same
result), with every step a torch operation on the keys' device, so on a GPU no evaluation's key
crosses to the host: only the final (distinct row, count) tables do, once per pass, as the same
`PatternCounts` the NumPy path gives (every measure works unchanged). The same code runs on the
CPU, which is how its exactness is tested without a GPU.

- Narrow layers (at most `DENSE_MAX_KEY_SPACE` possible keys) and hash lists: a device table of
  every key (times every label), filled by `torch.bincount`.
- Wider layers: each batch is reduced to (unique row, count) pairs by a lexicographic sort (one
  stable `torch.sort` per column, last column first) and a run-length pass; the pairs wait in a
  pending list and are folded into a running sorted device table (concatenate, sort, sum equal
  rows) when they outnumber max(FOLD_MIN_ROWS, rows in the table).

Peak device memory of one wide layer's table, with U distinct rows in the whole pass, c columns
(key words, plus one with labels) and B evaluations per batch: the table holds U rows, the pending
list at most max(2**16, U) + B rows before a fold, and a fold sorts their concatenation
R <= 2U + 2**16 + B rows; with the row values, the sort's values and indices and the gathered
copy, peak bytes <= 8 * (2c + 4) * R, i.e. about 16 (c + 2) (2U + 65,536 + B) bytes: linear in
the distinct patterns, independent of the number of evaluations.

Hash-list mode uses the splitmix64 hash of `counts.hash_rows`, computed in int64 with logical
shifts, so slots (and results) are identical on every backend.
"""

from __future__ import annotations

import torch

from learnscope.patterns.counts import (
    DEFAULT_TABLE_SIZE,
    PatternCounter,
    _SortedTable,
)
from learnscope.patterns.keys import PatternLayout


def lexicographic_order(rows: torch.Tensor) -> torch.Tensor:
    """Indices that sort int64 rows lexicographically (column 0 first, signed order), stably:
    one stable sort per column, the last column first (an LSD radix sort over columns)."""
    order = torch.sort(rows[:, -1], stable=True).indices
    for column in range(rows.shape[1] - 2, -1, -1):
        order = order[torch.sort(rows[order, column], stable=True).indices]
    return order


def sum_unique_rows(
    rows: torch.Tensor, counts: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort int64 rows lexicographically (column 0 first) and sum the counts of equal rows.

    The torch twin of `counts.sum_unique_rows`: same result (same order), on the rows' device.

    Args:
        rows: (m, c) int64 tensor.
        counts: (m,) int64 weights; ones when None.

    Returns:
        (unique rows (u, c) in lexicographic order, summed counts (u,) int64).
    """
    m = rows.shape[0]
    if m == 0:
        return rows, torch.zeros(0, dtype=torch.int64, device=rows.device)
    order = lexicographic_order(rows)
    rows = rows[order]
    change = torch.ones(m, dtype=torch.bool, device=rows.device)
    if m > 1:
        change[1:] = (rows[1:] != rows[:-1]).any(dim=1)
    starts = torch.nonzero(change).squeeze(1)
    ends = torch.cat([starts[1:], torch.tensor([m], device=rows.device)])
    if counts is None:
        summed = ends - starts
    else:
        totals = counts[order].cumsum(0)[ends - 1]
        summed = torch.diff(totals, prepend=totals.new_zeros(1))
    return rows[starts], summed


def _as_int64(value: int) -> int:
    """The int64 with the same 64 bits as the unsigned `value`."""
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _as_int64(0x9E3779B97F4A7C15)
_MIX1 = _as_int64(0xBF58476D1CE4E5B9)
_MIX2 = _as_int64(0x94D049BB133111EB)


def _shift_right(h: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical (unsigned) right shift of int64 bit patterns."""
    return (h >> bits) & ((1 << (64 - bits)) - 1)


def hash_rows(keys: torch.Tensor) -> torch.Tensor:
    """`counts.hash_rows` in torch: the same 64 bits per row, as int64 (multiplication wraps)."""
    h = torch.full((keys.shape[0],), _GOLDEN, dtype=torch.int64, device=keys.device)
    for word in range(keys.shape[1]):
        h = h ^ keys[:, word]
        h = h ^ _shift_right(h, 30)
        h = h * _MIX1
        h = h ^ _shift_right(h, 27)
        h = h * _MIX2
        h = h ^ _shift_right(h, 31)
    return h


def unsigned_remainder(h: torch.Tensor, modulus: int) -> torch.Tensor:
    """h mod `modulus` with the int64 `h` read as an unsigned 64-bit number (modulus < 2**62)."""
    if modulus & (modulus - 1) == 0:
        return h & (modulus - 1)
    # h = 2 * half + low bit, with half = h >>> 1 non-negative in int64
    half = torch.remainder(_shift_right(h, 1), modulus)
    return torch.remainder(half * 2 + (h & 1), modulus)


class _DeviceDenseTable:
    """Counts of single integer keys in [0, key_space), optionally per label, on a device."""

    def __init__(self, key_space: int, device: torch.device) -> None:
        self.key_space = key_space
        self.cells = torch.zeros((key_space, 1), dtype=torch.int64, device=device)

    @property
    def cell_count(self) -> int:
        return self.cells.numel()

    def add(self, keys: torch.Tensor, labels: torch.Tensor | None) -> None:
        if labels is not None:
            n_labels = int(labels.max()) + 1 if labels.numel() else 1
            if n_labels > self.cells.shape[1]:
                grown = self.cells.new_zeros((self.key_space, n_labels))
                grown[:, : self.cells.shape[1]] = self.cells
                self.cells = grown
            keys = keys * self.cells.shape[1] + labels
        flat = self.cells.view(-1)
        if keys.shape[0] * 8 >= flat.shape[0]:
            flat += torch.bincount(keys, minlength=flat.shape[0])
        else:  # few keys for a big table (hash lists): touch only the cells that change
            cells, counts = torch.unique(keys, return_counts=True)
            flat[cells] += counts

    def rows(self, labelled: bool) -> tuple[torch.Tensor, torch.Tensor]:
        key, label = torch.nonzero(self.cells, as_tuple=True)
        counts = self.cells[key, label]
        if labelled:
            return torch.stack([key, label], dim=1), counts
        return key.reshape(-1, 1), counts


class DevicePatternCounter(PatternCounter):
    """`PatternCounter` for int64 key tensors, counting on their device; `result()` brings the
    final table to the host as `PatternCounts` (identical to the NumPy counter's).

    Args:
        layout, labelled, mode, table_size: as for `PatternCounter`.
        device: where the tables live (that of the keys given to `add`).
    """

    def __init__(
        self,
        layout: PatternLayout,
        *,
        labelled: bool = False,
        mode: str = "exact",
        table_size: int = DEFAULT_TABLE_SIZE,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        super().__init__(layout, labelled=labelled, mode=mode, table_size=table_size)

    def _new_dense(self, key_space: int) -> _DeviceDenseTable:
        return _DeviceDenseTable(key_space, self.device)

    def _new_sorted(self, columns: int) -> _SortedTable:
        return _SortedTable(torch.zeros((0, columns), dtype=torch.int64, device=self.device),
                            torch.zeros(0, dtype=torch.int64, device=self.device),
                            sum_unique=sum_unique_rows, concatenate=torch.cat)

    def _slots(self, keys: torch.Tensor) -> torch.Tensor:
        return unsigned_remainder(hash_rows(keys), self.table_size).reshape(-1, 1)

    def _with_labels(self, keys: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.cat([keys, labels.reshape(-1, 1).to(torch.int64)], dim=1)

    def _to_host(self, rows: torch.Tensor, counts: torch.Tensor):
        return rows.cpu().numpy(), counts.cpu().numpy()
