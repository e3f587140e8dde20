"""One measurement over many processes: torch.distributed helpers for learnscope.

Launched with torchrun (``torchrun --nproc-per-node 2 -m learnscope.cli run early``), every
process ("rank") runs the same program. `init_from_env()` joins the default process group (NCCL
when the rank has a GPU of its own, else gloo); everything else here is a thin, documented layer
over torch.distributed's own collectives:

- a *sharded* measurement pass (inside `sharded()`) cuts the measurement set into batches exactly
  as one process would (same order, same batch size) and gives batch i to rank i % world, so
  BatchNorm in train mode normalises every batch with the statistics of the single-process pass;
  the probes then merge their results across ranks (pattern counts partitioned by key hash with
  an all-to-all, each rank keeping its part and the measures summed from per-partition terms, or
  gathered and merged exactly; class moments and scores summed), so every rank ends with the
  single-process result;
- `fail_together` makes a failure of one rank during a pass an error on every rank (no rank is
  left waiting in a collective), naming the rank and its error;
- a SIGTERM handler (`install_termination_handler`) turns the signal torchrun's agent sends when a
  peer dies into an exception, so the run is marked failed instead of being left running.

With a single process (no torchrun, or WORLD_SIZE=1) every helper is a no-op: `context()` says
rank 0 of 1, collectives return their input, `sharded()` shards nothing.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from learnscope.diagnostics import describe_error, rank_from_env
from learnscope.engine.batches import Shard

BACKENDS = ("gloo", "nccl")

log = logging.getLogger(__name__)


class RankFailedError(RuntimeError):
    """Another rank failed (or the job was stopped): this rank cannot go on."""


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank, number of ranks, local rank (its GPU), backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes the store."""
        return self.rank == 0


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_env(backend: str | None = None) -> Context:
    """Join the default process group when launched by torchrun; idempotent.

    Reads WORLD_SIZE, RANK, LOCAL_RANK (and MASTER_ADDR / MASTER_PORT) as torchrun sets them.
    With WORLD_SIZE > 1 and no default group yet, initialises it with `backend`, or by default
    "nccl" when CUDA is available and LOCAL_RANK names one of this machine's GPUs, else "gloo";
    the current CUDA device is set to LOCAL_RANK whenever that GPU exists. Without WORLD_SIZE (or
    with 1) nothing is initialised and the context is rank 0 of 1. A group that is already
    initialised (by this function or by the caller) is kept as it is.
    """
    if _initialised():
        return context()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    if not dist.is_available():
        raise RuntimeError(
            f"WORLD_SIZE={world} asks for {world} processes but this PyTorch build has no "
            "torch.distributed; install a build with distributed support or run one process"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    has_gpu = torch.cuda.is_available() and local_rank < torch.cuda.device_count()
    chosen = backend or ("nccl" if has_gpu else "gloo")
    if chosen not in BACKENDS:
        raise ValueError(f"unknown backend {chosen!r}; use one of {BACKENDS}")
    if chosen == "nccl" and not has_gpu:
        raise RuntimeError(
            f"backend 'nccl' needs a GPU per process, but local rank {local_rank} has none "
            f"({torch.cuda.device_count()} visible); use backend 'gloo' or fewer processes per "
            "node"
        )
    if has_gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=chosen)
    log.info("joined the process group: rank %d of %d, local rank %d, backend %s, master %s:%s",
             dist.get_rank(), world, local_rank, chosen, os.environ.get("MASTER_ADDR"),
             os.environ.get("MASTER_PORT"))
    # a process that exits with the group alive can abort in gloo's teardown (see `shutdown`);
    # entry points end through `end_process`, this is the fallback for programs that return
    atexit.register(shutdown, synchronise=False)
    return context()


def shutdown(*, synchronise: bool = True, timeout: float = 60.0) -> None:
    """Take this rank's default process group down now, before the interpreter exits.

    Why not leave it to exit: a gloo group's worker threads own the collectives' finished work
    objects, and those hold Python objects (the thread-local state captured when the collective
    was issued). If such an object is released while Python finalises, the worker thread tries to
    take the GIL, is unwound through a `noexcept` destructor and the whole rank dies of SIGABRT
    ("terminate called without an active exception") after its work is done. So: collect
    garbage first (DDP wrappers and their reducers reference the group from reference cycles),
    wait for the other ranks (`synchronise`, bounded by `timeout` seconds; skipped after a
    failure, when a peer may be gone), destroy the group, and collect again. A no-op without a
    group. `end_process` calls it; `init_from_env` also registers it to run at exit, as a last
    resort for programs that return normally.
    """
    if not _initialised():
        return
    log.info("shutting down the process group: rank %d of %d (%s)", dist.get_rank(),
             dist.get_world_size(), "after meeting the other ranks" if synchronise else
             "without waiting for the other ranks")
    gc.collect()
    if synchronise and dist.get_world_size() > 1:
        try:
            _bounded_barrier(timeout)
        except Exception as error:  # noqa: BLE001 - a peer that is gone must not stop the exit
            print(f"learnscope: ranks did not meet before shutdown ({describe_error(error)}); "
                  "destroying the process group anyway", file=sys.stderr)
    dist.destroy_process_group()
    gc.collect()


def _bounded_barrier(timeout: float) -> None:
    """A barrier that gives up after `timeout` seconds (gloo) or the group's own timeout."""
    if dist.get_backend() == "gloo":
        dist.monitored_barrier(timeout=timedelta(seconds=timeout))
    else:
        dist.barrier()


def end_process(code: int) -> NoReturn:
    """End this process with exit status `code`, tearing down its process group first.

    For a torchrun rank: `shutdown` (synchronised when `code` is 0), flush stdout and stderr,
    then `os._exit(code)`, so Python's finalisation, where gloo's threads can abort the process
    (see `shutdown`), never runs. atexit handlers do not run either: everything the program
    wrote must be closed by then (learnscope's store closes its connections as it goes).
    """
    try:
        shutdown(synchronise=code == 0)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # closed or broken pipe: nothing left to save
                pass
        os._exit(code)


def run_and_end(main: Callable[[], Any]) -> None:
    """Call `main()`; if this process joined a process group, end it with `end_process`.

    The entry point of a program that torchrun launches (learnscope's CLI uses it): the exit
    status is 0 when `main` returns, `SystemExit`'s code when it exits, and 1 after printing the
    traceback of any other exception. Without a process group this is a plain call (exceptions
    and SystemExit propagate as usual), so it is safe in a single process.
    """
    try:
        main()
    except SystemExit as stop:
        if not _initialised():
            raise
        end_process(_exit_status(stop.code))
    except BaseException as error:
        if not _initialised():
            raise
        traceback.print_exc()
        end_process(130 if isinstance(error, KeyboardInterrupt) else 1)
    if _initialised():
        end_process(0)


def _exit_status(code: Any) -> int:
    """The process exit status of `SystemExit(code)`, as the interpreter would compute it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def context() -> Context:
    """The current rank, world size, local rank and backend (rank 0 of 1 without a group)."""
    if not _initialised():
        return Context()
    return Context(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(dist.get_backend()),
    )


def launch_rank() -> int:
    """This process's rank: the group's once joined, before that the RANK torchrun set (0 alone).

    Unlike :func:`context` it is known before `init_from_env`, so that whatever a command prints
    or records before training starts (tables, progress, the plan file) comes from rank 0 only.
    """
    if _initialised():
        return dist.get_rank()
    return rank_from_env() or 0


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return context().is_main


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for NCCL, else the CPU."""
    if context().backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here."""
    ctx = context()
    if ctx.distributed:
        log.debug("barrier: rank %d of %d", ctx.rank, ctx.world_size)
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` (any picklable object) on every rank; the others pass anything."""
    ctx = context()
    if not ctx.distributed:
        return obj
    log.debug("broadcast_object: rank %d of %d, %s", ctx.rank, ctx.world_size,
              f"sends a {type(obj).__name__}" if ctx.rank == 0 else "receives rank 0's object")
    holder = [obj]
    dist.broadcast_object_list(holder, src=0, device=_comm_device())
    return holder[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    ctx = context()
    if not ctx.distributed:
        return [obj]
    log.debug("all_gather_objects: rank %d of %d, sends a %s", ctx.rank, ctx.world_size,
              type(obj).__name__)
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def all_gather_arrays(array: np.ndarray) -> list[np.ndarray]:
    """Every rank's 2-D array, in rank order, on every rank; row counts may differ.

    Columns and dtype must agree across ranks. Sent as raw tensors (two all-gathers: the row
    counts, then the rows padded to the longest), which for the large int64 tables of pattern
    counts costs far fewer copies than pickling them through `all_gather_objects`.
    """
    ctx = context()
    if not ctx.distributed:
        return [array]
    if array.ndim != 2:
        raise ValueError(f"all_gather_arrays takes 2-D arrays, got shape {array.shape}")
    device = _comm_device()
    rows = torch.tensor([array.shape[0]], dtype=torch.int64, device=device)
    counts = [torch.zeros_like(rows) for _ in range(ctx.world_size)]
    log.debug("all_gather_arrays: rank %d of %d, sends %d x %d %s", ctx.rank, ctx.world_size,
              array.shape[0], array.shape[1], array.dtype)
    dist.all_gather(counts, rows)
    sizes = [int(c.item()) for c in counts]
    local = torch.from_numpy(np.ascontiguousarray(array))
    padded = torch.zeros((max(sizes), array.shape[1]), dtype=local.dtype, device=device)
    padded[: array.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded)
    return [g[:size].cpu().numpy() for g, size in zip(gathered, sizes, strict=True)]


def all_to_all_arrays(array: np.ndarray, owners: np.ndarray) -> list[np.ndarray]:
    """Send row i of the 2-D `array` to rank `owners[i]`; returns the rows every rank sent
    this one, in rank order (each rank's rows in their original order).

    Columns and dtype must agree across ranks. Two ``all_to_all_single`` calls (gloo supports
    them on the CPU, NCCL on GPUs): the row counts, then the rows, so every rank sends and
    receives only its own traffic: no rank ever holds the other ranks' rows for one another.
    One process: every owner must be 0 and the array comes back as it is.
    """
    ctx = context()
    owners = np.asarray(owners, dtype=np.int64)
    if array.ndim != 2 or owners.shape != (array.shape[0],):
        raise ValueError(f"all_to_all_arrays takes a 2-D array and one owner per row, got "
                         f"shapes {array.shape} and {owners.shape}")
    if owners.size and (owners.min() < 0 or owners.max() >= ctx.world_size):
        raise ValueError(f"owners must be ranks in [0, {ctx.world_size}), got "
                         f"[{owners.min()}, {owners.max()}]")
    if not ctx.distributed:
        return [array]
    device = _comm_device()
    order = np.argsort(owners, kind="stable")
    send_rows = np.bincount(owners, minlength=ctx.world_size)
    sent = torch.from_numpy(np.ascontiguousarray(array[order]).reshape(-1)).to(device)
    counts = torch.from_numpy(send_rows.astype(np.int64)).to(device)
    received_rows = torch.empty_like(counts)
    log.debug("all_to_all_arrays: rank %d of %d, sends %d x %d %s (%d bytes, %s rows per rank)",
              ctx.rank, ctx.world_size, array.shape[0], array.shape[1], array.dtype,
              array.nbytes, send_rows.tolist())
    dist.all_to_all_single(received_rows, counts)
    receive_rows = received_rows.cpu().numpy()
    columns = array.shape[1]
    received = torch.empty(int(receive_rows.sum()) * columns, dtype=sent.dtype, device=device)
    dist.all_to_all_single(received, sent, (receive_rows * columns).tolist(),
                           (send_rows * columns).tolist())
    parts = np.split(received.cpu().numpy().reshape(-1, columns), np.cumsum(receive_rows)[:-1])
    return parts


def send_arrays_to_main(array: np.ndarray, receive: Callable[[int, np.ndarray], Any]) -> None:
    """Hand every rank's 2-D int64 `array` to rank 0, one at a time: there `receive(rank,
    array)` is called for each rank in rank order (its own first) and should drop the array
    before the next arrives (e.g. write it to a file), so rank 0 never holds more than one
    rank's array. For the single writer of a store (saving partitioned pattern counts).
    Collective (point-to-point sends to rank 0); one process: `receive(0, array)`.
    """
    ctx = context()
    if not ctx.distributed:
        receive(0, array)
        return
    if array.ndim != 2 or array.dtype != np.int64:
        raise ValueError(f"send_arrays_to_main takes 2-D int64 arrays, got {array.shape} "
                         f"{array.dtype}")
    device = _comm_device()
    if ctx.rank != 0:
        log.debug("send_arrays_to_main: rank %d sends %d x %d to rank 0", ctx.rank,
                  *array.shape)
        dist.send(torch.tensor(array.shape, dtype=torch.int64, device=device), dst=0)
        if array.size:
            dist.send(torch.from_numpy(np.ascontiguousarray(array)).to(device), dst=0)
        return
    receive(0, array)
    for source in range(1, ctx.world_size):
        shape = torch.empty(2, dtype=torch.int64, device=device)
        dist.recv(shape, src=source)
        rows, columns = (int(v) for v in shape.tolist())
        received = torch.empty((rows, columns), dtype=torch.int64, device=device)
        if rows * columns:
            dist.recv(received, src=source)
        receive(source, received.cpu().numpy())
        del received


def all_reduce_sum(value: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """The element-wise sum over ranks of a tensor or NumPy array, as a new tensor / array.

    The input is left unchanged; a tensor comes back on its own device with its own dtype, an
    array as an array of its dtype (use float64 for sums of floats: learnscope's moments do).
    Every rank receives the same values.
    """
    ctx = context()
    if not ctx.distributed:
        return value.clone() if isinstance(value, torch.Tensor) else np.array(value, copy=True)
    log.debug("all_reduce_sum: rank %d of %d, shape %s %s", ctx.rank, ctx.world_size,
              tuple(value.shape), value.dtype)
    device = _comm_device()
    if isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.array(value, copy=True, order="C")).to(device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()
    tensor = value.detach().to(device, copy=True)
    dist.all_reduce(tensor)
    return tensor.to(value.device)


def broadcast_module_state(module: nn.Module, *, parameters: bool = True) -> None:
    """Overwrite `module`'s buffers (and parameters) in place with rank 0's values.

    Under DistributedDataParallel the parameters are already equal on every rank, but BatchNorm's
    running statistics are each rank's own; a measurement or evaluation done on all ranks first
    makes them rank 0's, so every rank measures the network rank 0 checkpoints.
    """
    ctx = context()
    if not ctx.distributed:
        return
    tensors = list(module.buffers())
    if parameters:
        tensors = list(module.parameters()) + tensors
    device = _comm_device()
    groups: dict[tuple, list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    # the same order on every rank: by dtype and device type (ranks' GPU indexes differ)
    order = sorted(groups, key=lambda key: (str(key[0]), key[1].type))
    if log.isEnabledFor(logging.DEBUG):
        log.debug("broadcast_module_state: rank %d of %d, %s: %d tensor(s), %d value(s) in %d "
                  "broadcast(s)", ctx.rank, ctx.world_size, type(module).__name__,
                  len(tensors), sum(t.numel() for t in tensors), len(order))
    with torch.no_grad():
        for dtype, members in ((key[0], groups[key]) for key in order):
            flat = torch.cat([t.detach().reshape(-1) for t in members]).to(device, dtype)
            dist.broadcast(flat, src=0)
            offset = 0
            for tensor in members:
                size = tensor.numel()
                tensor.copy_(flat[offset:offset + size].view_as(tensor))
                offset += size


def batch_slice(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s contiguous part of a batch of `n` samples split over `world` ranks.

    As torch.tensor_split: the first n % world ranks get one sample more than the others, so the
    parts differ in size by at most one and, in rank order, make up the batch.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= rank < world, got rank {rank} of {world}")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


# ---------------------------------------------------------------------------- sharded passes

_SHARDED: ContextVar[bool] = ContextVar("learnscope_sharded", default=False)


@contextmanager
def sharded() -> Iterator[Shard | None]:
    """Measurement passes inside this block are shared by all ranks (collective).

    Every rank must enter it and run the same passes in the same order: each counts its share
    of the batches (batch i on rank i % world) and the results are merged across ranks, so each
    rank returns the single-process result. Yields this rank's Shard (None in one process).
    A Scope created with `distributed=True` measures inside this block.
    """
    token = _SHARDED.set(True)
    try:
        yield current_shard()
    finally:
        _SHARDED.reset(token)


def current_shard() -> Shard | None:
    """This rank's share of a measurement pass inside `sharded()` with several ranks, else None."""
    if not _SHARDED.get():
        return None
    ctx = context()
    return Shard(ctx.rank, ctx.world_size) if ctx.distributed else None



@contextmanager
def fail_together(active: bool = True) -> Iterator[None]:
    """Make the block's outcome common to all ranks: if any rank raised, every rank raises.

    At the end of the block every rank tells the others whether it failed (one all-gather).
    A rank that raised re-raises its own error; the others raise RankFailedError naming the
    first failing rank and its error. The block must not itself call collectives. With
    `active=False` (one process) it is a plain block.
    """
    if not active:
        yield
        return
    try:
        yield
    except Exception as error:
        all_gather_objects(describe_error(error))
        raise
    outcomes = all_gather_objects(None)
    failed = [(rank, message) for rank, message in enumerate(outcomes) if message is not None]
    if failed:
        rank, message = failed[0]
        raise RankFailedError(f"rank {rank} failed: {message}")


# ---------------------------------------------------------------------------- termination

TERMINATED_MESSAGE = "terminated: another rank failed or the job was stopped (SIGTERM)"


class _Termination:
    """State of the SIGTERM handler: raise once, and not while deferred."""

    def __init__(self) -> None:
        self.previous: Any = None
        self.installed = 0
        self.raised = False
        self.deferred = 0

    def handler(self, signum: int, frame: Any) -> None:
        if self.raised:
            return  # already raised once: the run is being marked failed
        if self.deferred:
            return  # a failure is being recorded; the exception in flight ends the run
        self.raised = True
        log.info("SIGTERM received (another rank failed or the job was stopped): raising "
                 "RankFailedError")
        raise RankFailedError(TERMINATED_MESSAGE)


_TERMINATION = _Termination()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install_termination_handler() -> bool:
    """Make SIGTERM raise RankFailedError (once) in the main thread; nestable.

    torchrun's agent sends SIGTERM to the surviving ranks when one rank dies; by default that
    kills them on the spot, leaving the run `running` in the store. With this handler the signal
    becomes an exception, so the Scope marks the run failed (and it stays resumable). Returns
    False (and does nothing) outside the main thread, where signals cannot be handled.
    """
    if not _main_thread():
        return False
    state = _TERMINATION
    if state.installed == 0:
        state.previous = signal.signal(signal.SIGTERM, state.handler)
        state.raised = False
    state.installed += 1
    return True


def remove_termination_handler() -> None:
    """Undo one `install_termination_handler`; the last one restores the previous handler."""
    state = _TERMINATION
    if state.installed == 0 or not _main_thread():
        return
    state.installed -= 1
    if state.installed == 0:
        signal.signal(signal.SIGTERM, state.previous or signal.SIG_DFL)
        state.previous = None


@contextmanager
def deferred_termination() -> Iterator[None]:
    """Hold back the SIGTERM exception during the block (e.g. while marking a run failed)."""
    state = _TERMINATION
    state.deferred += 1
    try:
        yield
    finally:
        state.deferred -= 1
