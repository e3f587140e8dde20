"""Activation inputs -> exact integer pattern keys.

A unit of a piecewise-linear activation with K pieces is in one of K states. Its state is the
number of breakpoints its input z strictly exceeds: for ReLU (breakpoint 0) the state is [z > 0],
so z == 0 counts as "off"; for ReLU6 (breakpoints 0 and 6) the states are z <= 0, 0 < z <= 6, z > 6.

A pattern is the vector of the states of all d units of a layer at one evaluation. Each unit takes
`bits_per_unit` bits (1 for K=2, 2 for K=3); `units_per_word = 64 // bits_per_unit` units share one
int64 word, so a pattern is `words = ceil(d / units_per_word)` int64 numbers, bit-exact.

Packing is a matrix product: state values (0, 1 or 2, as float32) times powers of two. To keep the
float32 arithmetic exact, each word is built from chunks of at most 24 bits (every partial sum is an
integer below 2**24, which float32 represents exactly), and the chunks are joined with integer
shifts in uint64 afterwards. This reads each activation once and costs ~3 multiply-adds per unit,
far less than the layer's own convolution.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

WORD_BITS = 64
CHUNK_BITS = 24  # float32 represents every integer below 2**24 exactly


@dataclass(frozen=True)
class PatternLayout:
    """How the units of one layer are packed into int64 words.

    Attributes:
        width: number of units d.
        breakpoints: the activation's breakpoints (K - 1 of them, increasing).
    """

    width: int
    breakpoints: tuple[float, ...]

    @property
    def states(self) -> int:
        """K, the number of linear pieces (states) per unit."""
        return len(self.breakpoints) + 1

    @property
    def bits_per_unit(self) -> int:
        """Bits needed for one unit's state: ceil(log2 K)."""
        return max(1, math.ceil(math.log2(self.states)))

    @property
    def units_per_word(self) -> int:
        """Units packed into one int64 word."""
        return WORD_BITS // self.bits_per_unit

    @property
    def words(self) -> int:
        """int64 words per pattern key."""
        return -(-self.width // self.units_per_word)

    @property
    def key_space(self) -> int:
        """Number of distinct key values a single-word layout can take (2**(d * bits))."""
        return 1 << (self.width * self.bits_per_unit) if self.words == 1 else 0


@functools.lru_cache(maxsize=256)
def _chunk_weights(layout: PatternLayout, device: str) -> tuple[torch.Tensor, list[int]]:
    """Weight matrix (chunks, units_in_word) of powers of two and each chunk's bit offset."""
    bpu = layout.bits_per_unit
    units = min(layout.width, layout.units_per_word)
    units_per_chunk = CHUNK_BITS // bpu
    n_chunks = -(-units // units_per_chunk)
    weights = torch.zeros(n_chunks, units, dtype=torch.float32)
    offsets = []
    for chunk in range(n_chunks):
        first = chunk * units_per_chunk
        last = min(units, first + units_per_chunk)
        for unit in range(first, last):
            weights[chunk, unit] = float(1 << ((unit - first) * bpu))
        offsets.append(first * bpu)
    return weights.to(device), offsets


@contextlib.contextmanager
def _exact_float32_matmul() -> Iterator[None]:
    """Force full-precision float32 matmuls (no TF32 / bf16 shortcuts) for the packing product."""
    previous = torch.get_float32_matmul_precision()
    if previous == "highest":
        yield
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def unit_states(z: torch.Tensor, breakpoints: Sequence[float], out: torch.Tensor) -> torch.Tensor:
    """Write each element's state (number of breakpoints strictly exceeded) into float32 `out`."""
    torch.gt(z, breakpoints[0], out=out)
    for b in breakpoints[1:]:
        out.add_(z > b)
    return out


def _state_buffer(
    shape: tuple, width: int, unit_axis: int, device, workspace: dict | None
) -> torch.Tensor:
    """float32 buffer for unit states; only the padding units past `width` need zeros.

    With a `workspace` dict the buffer is kept and reused for the next batch of the same shape:
    fresh multi-megabyte allocations cost page faults on every batch.
    """
    key = (shape, width, unit_axis, str(device))
    if workspace is not None and key in workspace:
        return workspace[key]
    buffer = torch.empty(shape, dtype=torch.float32, device=device)
    if workspace is not None:
        workspace[key] = buffer
    if shape[unit_axis] > width:
        buffer.narrow(unit_axis, width, shape[unit_axis] - width).zero_()
    return buffer


def pack_keys(
    z: torch.Tensor, layout: PatternLayout, unit_dim: int, workspace: dict | None = None
) -> torch.Tensor:
    """Pack the activation input `z` into pattern keys on z's device, one row per evaluation.

    Args:
        z: the layer's input. `unit_dim` is the axis of the d units; axis 0 is the sample axis and
            every other axis is a position (one evaluation per sample and position).
        layout: packing layout of the layer (width must equal z.shape[unit_dim]).
        unit_dim: 1 (channels first: conv layers, 2-D linear inputs) or z.dim() - 1 (units last).
        workspace: optional dict in which scratch buffers are kept for reuse across batches.

    Returns:
        int64 tensor of shape (E, words) on z's device; evaluations are ordered sample-major (all
        positions of sample 0 first), so repeating per-sample labels E // n times aligns them
        with the rows.
    """
    d = z.shape[unit_dim]
    if d != layout.width:
        raise ValueError(f"layer width changed: layout has {layout.width} units, input has {d}")
    n = z.shape[0]
    upw = layout.units_per_word
    words = layout.words
    weights, offsets = _chunk_weights(layout, str(z.device))
    padded = words * upw if words > 1 else d

    if unit_dim == z.dim() - 1:
        # units last (also plain 2-D linear inputs): (E, d)
        flat = z.reshape(-1, d)
        states = _state_buffer((flat.shape[0], padded), d, 1, z.device, workspace)
        unit_states(flat, layout.breakpoints, states[:, :d])
        with _exact_float32_matmul():
            chunks = torch.matmul(states.view(-1, words, padded // words), weights.T)
        # chunks: (E, words, n_chunks)
    else:
        # channels first: (n, d, P)
        grid = z.reshape(n, d, -1)
        positions = grid.shape[2]
        states = _state_buffer((n, padded, positions), d, 1, z.device, workspace)
        unit_states(grid, layout.breakpoints, states[:, :d])
        with _exact_float32_matmul():
            chunks = torch.matmul(weights, states.view(n, words, padded // words, positions))
        # (n, words, n_chunks, P) -> (n, P, words, n_chunks) -> (E, words, n_chunks)
        chunks = chunks.permute(0, 3, 1, 2).reshape(n * positions, words, len(offsets))

    parts = chunks.to(torch.int64)
    joined = parts[:, :, 0]
    if len(offsets) == 1:
        return joined.contiguous()
    joined = joined.clone()
    for i, offset in enumerate(offsets[1:], start=1):
        # chunks hold at most 24 bits, so the shift of the last chunk of a word may reach the
        # sign bit: int64 shifts wrap like uint64 ones (two's complement), bit-exactly
        joined.bitwise_or_(parts[:, :, i].bitwise_left_shift(offset))
    return joined


def pack(
    z: torch.Tensor, layout: PatternLayout, unit_dim: int, workspace: dict | None = None
) -> np.ndarray:
    """`pack_keys` brought to the host: an int64 array of shape (E, words) (see `pack_keys`)."""
    return pack_keys(z, layout, unit_dim, workspace).cpu().numpy()


def unpack(keys: np.ndarray, layout: PatternLayout) -> np.ndarray:
    """Inverse of `pack`: int64 keys (m, words) -> unit states (m, width) as uint8."""
    keys = np.asarray(keys, dtype=np.int64).reshape(-1, layout.words).view(np.uint64)
    bpu = np.uint64(layout.bits_per_unit)
    mask = np.uint64((1 << layout.bits_per_unit) - 1)
    out = np.empty((keys.shape[0], layout.width), dtype=np.uint8)
    for unit in range(layout.width):
        word, slot = divmod(unit, layout.units_per_word)
        out[:, unit] = (keys[:, word] >> (np.uint64(slot) * bpu)) & mask
    return out
