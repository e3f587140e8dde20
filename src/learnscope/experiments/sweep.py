"""Run an experiment's runs in parallel: a local process pool, or Ray tasks on a cluster.

    from learnscope.experiments.presets import expand
    from learnscope.experiments.sweep import sweep

    results = sweep(expand("entropycurve", "small"), "runs/learnscope.db", workers=2)
    [(r.name, r.status) for r in results]          # finished / skipped / diverged / failed

Every run is one :func:`~learnscope.experiments.presets.execute` call, so a sweep behaves like
``learnscope run PRESET`` done in parallel: runs already finished (or diverged) in the store with
the same name and settings fingerprint are skipped (checked here first, so no process is started
for them; ``rerun=True`` trains them afresh), unfinished ones resume from their checkpoint, and
every run writes its measurements to the one store. The names of all runs
are recorded as the experiment's plan first, so ``learnscope status PRESET`` counts the runs not
started yet as pending while the sweep goes on, whichever backend runs them.

Local backend (``backend="local"``)
    A pool of ``workers`` processes started with the ``spawn`` method (never ``fork``: the
    parent may hold a store connection and torch threads). Worker ``i`` (0-based) trains on
    ``cuda:{i % k}`` with ``device="auto"`` (or ``"cuda"``) and k CUDA GPUs, on the CPU
    without GPUs; an explicit device (``"cpu"``, ``"cuda:1"``) is used by every worker. Each
    worker uses ``threads`` torch (and BLAS) threads, by default ``$OMP_NUM_THREADS``, else
    the cores this process may use divided by the workers, at least 1
    (:func:`learnscope.threads.choose_threads`), so the workers share the cores instead of
    oversubscribing them. A run that raises is
    reported as ``failed`` (and marked failed in the store) while the others go on. When a
    worker process dies (killed, out of memory) it is replaced and the run it held
    resumes from its checkpoint; a run in flight at two such deaths is reported failed (it
    stays interrupted in the store and resumes on the next sweep). A run is handed to a worker
    only when that worker is free. Ctrl-C, SIGTERM or SIGHUP stops the sweep and its workers at
    once (their runs are left interrupted and resume on the next sweep); the workers live in
    their own process groups, which the sweep ends when it stops for any reason, and a worker
    whose sweep process is gone (even SIGKILLed) stops its run and exits within seconds.

Ray backend (``backend="ray"``, needs ``pip install 'learnscope[ray]'``)
    One Ray task per run, each calling :func:`run_spec` like a local worker does.
    ``address=None`` (or ``"local"``) starts a Ray instance on this machine, ``"auto"`` joins
    the cluster this machine belongs to (``ray start``), ``"ray://host:10001"`` connects
    through Ray Client; an already initialised Ray is used as it is. A task asks for
    ``threads`` CPUs (default 1) and, when it trains on a GPU, one GPU (Ray then makes it the
    task's ``cuda``). Results are collected as tasks finish. Every node must have learnscope
    (same version) and the data sets installed.

The store of a Ray sweep
    Tasks write to the store themselves, so its path must be absolute (it is resolved here)
    and name the same file on every node: a folder on shared storage (NFS, a cluster file
    system) mounted at the same path everywhere. SQLite's default WAL mode works only when all
    writers are on one host, so a Ray sweep opens the store in rollback-journal mode: its tasks
    get ``LEARNSCOPE_STORE_JOURNAL=delete`` (unless that variable is set in this process, whose
    value is passed on instead: set it to ``wal`` for a Ray cluster of one machine). While a
    Ray sweep runs, other processes writing to the same store (another sweep, ``learnscope
    run``) must use the same journal mode. See "Journal modes" in :mod:`learnscope.store.db`.

Two sweeps (or a sweep and ``learnscope run``) never train the same run: each run is claimed in
one store transaction (``Store.claim_run``) before it trains, and a run that a live process owns
is reported ``skipped`` with a message naming that process. A run last written from another host
counts as owned until it has not been written for an hour
(:data:`learnscope.store.db.OTHER_HOST_STALE_S`).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from learnscope.diagnostics import LOG_ENV
from learnscope.store import JOURNAL_ENV
from learnscope.threads import decide_threads, use_threads

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
#: Statuses of a :class:`SweepResult`.
OUTCOMES = ("finished", "skipped", "diverged", "failed")
RAY_EXTRA = "pip install 'learnscope[ray]'"
#: A run in flight when its worker process dies this many times is reported failed.
MAX_WORKER_DEATHS = 2
#: Torch threads of a Ray task when ``threads`` is not given.
RAY_DEFAULT_THREADS = 1



@dataclass(frozen=True)
class SweepResult:
    """The outcome of one run of a sweep.

    status: ``finished``, ``diverged`` (a non-finite loss; a result, not an error),
    ``skipped`` (finished or diverged in the store already with the same settings, or owned by
    another live process: ``error`` names it) or ``failed``. error: why it failed or was
    skipped while unfinished (one line); traceback: the full Python traceback of a failure
    inside the run. run_id is None when the run failed before it was created in the store.
    device: where it trained.
    seconds: wall time of the run in its worker (NaN when it did not run).
    """

    name: str
    run_id: str | None
    status: str
    error: str | None = None
    device: str | None = None
    seconds: float = math.nan
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run did not fail."""
        return self.status != "failed"


# --------------------------------------------------------------------------- assignment


def cuda_device_count() -> int:
    """Number of CUDA GPUs torch sees here (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(device: str | None, cuda_count: int) -> None:
    """Raise ValueError when ``device`` is not ``auto`` or a device torch knows and has here."""
    if device is None or device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r} ({error}); use auto, cpu, cuda or "
                         "cuda:N") from None
    if parsed.type == "cuda":
        if cuda_count == 0:
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here; "
                             "use --device auto or cpu")
        if parsed.index is not None and parsed.index >= cuda_count:
            raise ValueError(f"device {device!r} asked for, but torch sees {cuda_count} CUDA "
                             f"GPU(s) here (cuda:0..cuda:{cuda_count - 1})")


def assign_device(device: str | None, worker: int, cuda_count: int) -> str | None:
    """The device of local worker ``worker`` (0-based).

    ``"auto"``: ``cuda:{worker % cuda_count}`` with GPUs, else ``"cpu"``; ``"cuda"``: the same
    spread over the GPUs; any other device (``"cpu"``, ``"cuda:1"``, ...) is kept; None keeps
    each run's own device.
    """
    if device in ("auto", "cuda") and cuda_count > 0:
        return f"cuda:{worker % cuda_count}"
    if device == "auto":
        return "cpu"
    return device


def default_workers(device: str = "auto", cuda_count: int | None = None) -> int:
    """Workers when none are asked for: one per CUDA GPU when training on GPUs, else 2."""
    if device in ("auto", "cuda"):
        count = cuda_device_count() if cuda_count is None else cuda_count
        if count:
            return count
    return 2


# --------------------------------------------------------------------------- one run


def _describe(error: BaseException) -> str:
    return traceback.format_exception_only(type(error), error)[-1].strip()[:2000]


def _mark_failed(store: str, name: str, error: str, *, pid: int | None) -> str | None:
    """Mark the latest run ``name`` failed if it is still ``running``; its id (or None).

    With ``pid``, only a run last written by that process of this host is touched (the
    worker's own run). Never raises: the failure being reported matters more.
    """
    from learnscope.store import open as open_store

    try:
        with open_store(store) as s:
            runs = s.runs()
            if runs.empty:
                return None
            mine = runs[runs["name"] == name]
            if pid is not None:
                same = (mine["pid"] == pid).fillna(False) & (mine["host"] == socket.gethostname())
                mine = mine[same.astype(bool)]
            if mine.empty:
                return None
            row = mine.iloc[-1]
            if row["status"] in ("running", "interrupted"):
                s.set_status(str(row["id"]), "failed", error=error)
            return str(row["id"])
    except Exception:  # noqa: BLE001 - best effort while reporting another failure
        return None


def run_spec(spec: Mapping[str, Any] | Any, store: str | os.PathLike[str], *,
             device: str | None = None, threads: int | None = None,
             rerun: bool = False) -> SweepResult:
    """Execute one run in this process (what every sweep worker and Ray task calls).

    ``spec``: a RunSpec or its fields as a dict (``dataclasses.asdict``); ``device`` replaces
    the spec's device when given; ``threads`` sets torch's intra-op threads. A run that raises
    is returned as ``failed`` (and marked failed in the store when it had started) instead of
    raising, so one bad run never stops a sweep.
    """
    from learnscope.experiments.presets import RunSpec, execute

    if threads is not None:
        use_threads(int(threads))
    if isinstance(spec, Mapping):
        spec = RunSpec(**spec)
    if device is not None:
        spec = replace(spec, device=device)
    start = time.monotonic()
    notes: list[str] = []
    try:
        run_id, status = execute(spec, store, rerun=rerun, notify=notes.append)
    except Exception as error:  # noqa: BLE001 - reported as the run's outcome
        text = _describe(error)
        run_id = _mark_failed(str(store), spec.name, text, pid=os.getpid())
        return SweepResult(spec.name, run_id, "failed", text, spec.device,
                           time.monotonic() - start, traceback.format_exc())
    if status == "busy":  # another live process trains it
        return SweepResult(spec.name, run_id, "skipped", notes[-1] if notes else None,
                           spec.device, time.monotonic() - start)
    return SweepResult(spec.name, run_id, status, None, spec.device, time.monotonic() - start)


# --------------------------------------------------------------------------- local workers
#
# The local pool is a handful of spawned processes, each fed one run at a time over its own pipe.
# Whatever happens to the sweep's process, no worker outlives it by more than a few seconds:
# - the sweep ends every worker in a `finally` (SIGTERM to the worker's process group, SIGKILL
#   after WORKER_STOP_SECONDS), and turns SIGTERM / SIGHUP into the same KeyboardInterrupt as
#   Ctrl-C while it runs;
# - every worker watches its parent (PARENT_POLL_SECONDS): once the sweep's process is gone
#   (even SIGKILLed, when no `finally` runs) it stops its run as Ctrl-C would and exits;
# - a run is handed to a worker only when that worker is free: nothing is queued ahead, so
#   nothing is left to start after the sweep stopped.
# A worker stopped this way raises KeyboardInterrupt in its run, so the run is left interrupted
# in the store and the next sweep resumes it.

#: How often a worker checks that the sweep's process still exists.
PARENT_POLL_SECONDS = 0.5
#: How long a worker whose parent is gone may take to stop its run before it is cut short.
ORPHAN_GRACE_SECONDS = 5.0
#: How long the sweep waits for stopped workers to exit before killing them.
WORKER_STOP_SECONDS = 10.0


def _stop_run(signum: int, frame: Any) -> None:
    """A worker's SIGTERM handler: stop the run as Ctrl-C would (it stays resumable)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the run is being stopped
    log.info("sweep worker pid %d: signal %s received, stopping its run", os.getpid(),
             signal.Signals(signum).name)
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _watch_parent(parent: int) -> None:
    """Worker thread: once the sweep's process is gone, stop this worker (see above)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    log.info("sweep worker pid %d: its sweep process (pid %d) is gone, stopping", os.getpid(),
             parent)
    os.kill(os.getpid(), signal.SIGTERM)  # the main thread raises KeyboardInterrupt
    time.sleep(ORPHAN_GRACE_SECONDS)
    os._exit(1)  # the run did not stop in time: it stays interrupted and resumes next time


def _worker_main(connection: Any, parent: int, threads: int, device: str | None) -> None:
    """A sweep worker: run the specs received on `connection` until told to stop, then end.

    It ends with `os._exit` once its runs are stored: the interpreter's own teardown (torch's
    included) took 6-7 s, more under load, and the sweep kills a worker that is not gone after
    WORKER_STOP_SECONDS.
    """
    import threading

    os.setpgrp()  # its own group: Ctrl-C at the terminal reaches the sweep, which stops it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_run)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="learnscope-sweep-parent-watch").start()
    use_threads(threads)
    log.debug("sweep worker pid %d started (sweep pid %d, device %s, %d thread(s))",
              os.getpid(), parent, device, threads)
    code = 0
    try:
        ended = _serve(connection, device)
    except KeyboardInterrupt:
        ended = "interrupted"
    except BaseException:  # not a run's failure (run_spec reports those): the worker's own
        ended, code = "failed", 1
        traceback.print_exc()
    log.debug("sweep worker pid %d ended (%s)", os.getpid(), ended)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _serve(connection: Any, device: str | None) -> str:
    """Run the specs received on `connection`; returns why it stopped."""
    while True:
        try:
            task = connection.recv()
        except EOFError:  # the sweep closed its end or is gone
            return "its sweep closed the connection"
        if task is None:
            return "told to stop"
        spec, store, rerun = task
        log.debug("sweep worker pid %d: run %s received", os.getpid(), spec["name"])
        result = run_spec(spec, store, device=device, rerun=rerun)
        log.debug("sweep worker pid %d: run %s %s in %.1f s", os.getpid(), result.name,
                  result.status, result.seconds)
        connection.send(result)


@dataclass
class _Worker:
    """The sweep's handle on one worker process and the run it holds."""

    process: Any
    connection: Any
    device: str | None
    spec: Any = None  # the RunSpec it is running, None while free


def _start_worker(context: Any, threads: int, device: str | None) -> _Worker:
    parent_end, child_end = context.Pipe()
    process = context.Process(target=_worker_main, name="learnscope-sweep-worker",
                              args=(child_end, os.getpid(), threads, device), daemon=True)
    process.start()
    log.debug("sweep: started worker pid %d (device %s, %d thread(s))", process.pid, device,
              threads)
    child_end.close()  # the worker holds the only other end: EOF here when it dies
    return _Worker(process, parent_end, device)


def _stop_workers(workers: list[_Worker]) -> None:
    """End every worker now: ask free ones to stop, SIGTERM each process group, then SIGKILL."""
    for worker in workers:
        if worker.spec is None and worker.process.is_alive():
            try:
                worker.connection.send(None)
            except (OSError, ValueError):
                pass
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    for worker in workers:
        if worker.spec is not None:
            _signal_group(worker.process.pid, signal.SIGTERM)
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
    for worker in workers:
        # the whole group, also what a run may have started (data-loader processes)
        _signal_group(worker.process.pid, signal.SIGKILL)
        worker.process.join(timeout=WORKER_STOP_SECONDS)
        worker.connection.close()
    log.debug("sweep: pool shut down (worker pid(s) %s, exit codes %s)",
              [w.process.pid for w in workers], [w.process.exitcode for w in workers])


def _signal_group(pid: int | None, signum: int) -> None:
    """Send `signum` to the process group a worker leads (or to the worker, before it has one)."""
    if pid is None:
        return
    for send in (os.killpg, os.kill):
        try:
            send(pid, signum)
            return
        except (ProcessLookupError, PermissionError):
            continue


@contextmanager
def _signals_stop_the_sweep() -> Iterator[None]:
    """While the sweep runs, SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        log.info("sweep pid %d: signal %s received, stopping the sweep", os.getpid(),
                 signal.Signals(signum).name)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {signum: signal.signal(signum, interrupt)
                for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _sweep_local(specs: list[Any], store: Path, workers: int, device: str | None,
                 threads: int | None, report: Callable[[SweepResult], None],
                 rerun: bool = False) -> None:
    import multiprocessing
    from multiprocessing.connection import wait as wait_for

    cuda_count = cuda_device_count() if device in ("auto", "cuda") else 0
    count = min(workers, len(specs))
    per_worker = decide_threads(threads, workers=count).threads
    context = multiprocessing.get_context("spawn")  # never fork: we hold a store and threads
    pending = deque(specs)
    deaths: Counter[str] = Counter()  # by run: its worker died while it held the run
    fresh = {spec.name for spec in specs} if rerun else set()  # rerun: until a run started
    pool: list[_Worker] = []
    with _signals_stop_the_sweep():
        try:
            pool = [_start_worker(context, per_worker, assign_device(device, i, cuda_count))
                    for i in range(count)]
            while pending or any(w.spec is not None for w in pool):
                for worker in pool:  # one run per free worker, none queued ahead
                    if worker.spec is None and pending:
                        worker.spec = pending.popleft()
                        log.debug("sweep: run %s assigned to worker pid %d", worker.spec.name,
                                  worker.process.pid)
                        try:
                            worker.connection.send((asdict(worker.spec), str(store),
                                                    worker.spec.name in fresh))
                        except OSError:  # it died while free: handled below as a death
                            pass
                busy = [w for w in pool if w.spec is not None]
                ready = wait_for([w.connection for w in busy] + [w.process.sentinel
                                                                   for w in busy])
                for index, worker in enumerate(pool):
                    if worker.spec is None:
                        continue
                    if worker.connection in ready or worker.process.sentinel in ready:
                        try:
                            result = worker.connection.recv()
                        except (EOFError, OSError):  # it died: start another in its place
                            result = None
                        if result is not None:
                            log.debug("sweep: worker pid %d returned run %s: %s",
                                      worker.process.pid, result.name, result.status)
                            worker.spec = None
                            report(result)
                            continue
                        lost, worker.spec = worker.spec, None
                        worker.process.join(timeout=WORKER_STOP_SECONDS)
                        log.info("sweep: worker pid %d died (exit code %s) while running %s",
                                 worker.process.pid, worker.process.exitcode, lost.name)
                        worker.connection.close()
                        pool[index] = _start_worker(context, per_worker, worker.device)
                        deaths[lost.name] += 1
                        fresh.discard(lost.name)  # its fresh run may have started: resume it
                        if deaths[lost.name] >= MAX_WORKER_DEATHS:
                            report(SweepResult(
                                lost.name, None, "failed",
                                f"its worker process died {deaths[lost.name]} times while "
                                "running it (killed, or out of memory?); the run stays "
                                "interrupted in the store and resumes from its checkpoint on "
                                "the next sweep"))
                        else:
                            pending.appendleft(lost)  # resumes from its checkpoint
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM / SIGHUP (see above)
            log.info("sweep pid %d: interrupted (%s), stopping the workers", os.getpid(),
                     stop or "SIGINT")
            raise
        finally:
            _stop_workers(pool)


# --------------------------------------------------------------------------- Ray


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError that names the extra to install."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            f"the Ray backend needs Ray, which is not installed ({error}); install it with "
            f"{RAY_EXTRA}, or use the local backend"
        ) from error
    return ray


def ray_journal() -> str:
    """The store journal mode of a Ray sweep: ``$LEARNSCOPE_STORE_JOURNAL``, else delete."""
    return os.environ.get(JOURNAL_ENV) or "delete"


def _ray_task_environment() -> dict[str, str]:
    """The variables a Ray task gets: the store journal mode, and LEARNSCOPE_LOG when set."""
    variables = {JOURNAL_ENV: ray_journal()}
    if os.environ.get(LOG_ENV):
        variables[LOG_ENV] = os.environ[LOG_ENV]
    return variables


def _ray_device(device: str, gpus: float) -> str:
    """A Ray task's device: with a GPU asked for, Ray makes it the task's only ``cuda``."""
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if device.startswith("cuda"):
        if gpus <= 0:
            raise ValueError(f"device {device!r} asked for, but the Ray cluster has no GPU; "
                             "use --device auto or cpu")
        return "cuda"  # cuda:N would name a GPU the task cannot see
    return device


def _sweep_ray(specs: list[Any], store: Path, address: str | None, device: str | None,
               threads: int | None, report: Callable[[SweepResult], None],
               rerun: bool = False) -> None:
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address in (None, "local") else address)
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        task_threads = threads or RAY_DEFAULT_THREADS
        task = ray.remote(run_spec)
        devices = [_ray_device(device or spec.device, gpus) for spec in specs]  # checks first
        refs = {}
        for spec, task_device in zip(specs, devices, strict=True):
            remote = task.options(
                num_cpus=task_threads, num_gpus=1 if task_device.startswith("cuda") else 0,
                max_retries=MAX_WORKER_DEATHS - 1,  # a dead worker: once more, resuming
                runtime_env={"env_vars": _ray_task_environment()},
            )
            ref = remote.remote(asdict(spec), str(store), device=task_device,
                                threads=task_threads, rerun=rerun)
            log.debug("sweep: run %s submitted as a Ray task (device %s)", spec.name,
                      task_device)
            refs[ref] = (spec, task_device)
        waiting = list(refs)
        try:
            while waiting:
                ready, waiting = ray.wait(waiting, num_returns=1)
                for ref in ready:
                    spec, task_device = refs[ref]
                    try:
                        result = ray.get(ref)
                    except Exception as error:  # noqa: BLE001 - a crashed worker or node
                        text = f"Ray task failed: {_describe(error)}"
                        result = SweepResult(spec.name, _mark_failed(str(store), spec.name,
                                                                     text, pid=None),
                                             "failed", text, task_device)
                    report(result)
        except BaseException:  # Ctrl-C: cancel what is left; those runs resume next time
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


# --------------------------------------------------------------------------- the sweep


def already_done(specs: Iterable[Any], store: str | os.PathLike[str], *,
                 rerun: bool = False) -> dict[str, SweepResult]:
    """The runs of ``specs`` a sweep would not start, as ``skipped`` results by name.

    Those finished or diverged in the store with the same name and settings fingerprint
    (unless ``rerun``), and those a live process owns (another sweep or ``learnscope run``),
    as :func:`learnscope.experiments.presets.plan` decides. Reads the store read-only; nothing
    when it does not exist yet.
    """
    from learnscope.experiments.identity import busy_message
    from learnscope.experiments.presets import plan

    specs = list(specs)
    if not Path(store).expanduser().exists():
        return {}
    skipped = {}
    for spec, claim in plan(specs, store, rerun=rerun):
        if claim.action == "reuse":
            skipped[spec.name] = SweepResult(spec.name, claim.run_id, "skipped",
                                             device=spec.device)
        elif claim.action == "busy":
            skipped[spec.name] = SweepResult(spec.name, claim.run_id, "skipped",
                                             busy_message(claim), spec.device)
    return skipped


def sweep(
    specs: Iterable[Any],
    store: str | os.PathLike[str],
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    device: str | None = "auto",
    threads: int | None = None,
    on_result: Callable[[SweepResult], None] | None = None,
    rerun: bool = False,
) -> list[SweepResult]:
    """Run ``specs`` (RunSpecs) in parallel, writing to ``store``; one result per spec, in order.

    backend: ``"local"`` (a pool of ``workers`` processes) or ``"ray"`` (one Ray task per run
    on the cluster at ``address``; ``workers`` is not used: Ray schedules by resources).
    device: ``"auto"`` (GPUs when there are, spread over the workers; else cpu), ``"cuda"``,
    a device used by every run (``"cpu"``, ``"cuda:1"``), or None (each spec's own device).
    threads: torch threads per run (local default: ``$OMP_NUM_THREADS``, else the cores
    split among the workers; Ray: 1). on_result: called in this process with each
    :class:`SweepResult` as soon as its run ends (skipped runs first). rerun: train every run
    afresh, even those finished in the store.
    See the module docstring for skipping, resuming, failures, Ctrl-C and the store of a Ray
    sweep. Raises ValueError for bad arguments, ImportError when Ray is asked for but missing,
    :class:`~learnscope.store.StoreError` for an unusable store, and KeyboardInterrupt after
    stopping the workers on Ctrl-C.
    """
    from learnscope.experiments.presets import run_identity
    from learnscope.experiments.status import record_plan
    from learnscope.store import open as open_store

    specs = list(specs)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use {' or '.join(BACKENDS)}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be an integer >= 1 (or None), got {threads!r}")
    if address is not None and backend != "ray":
        raise ValueError(f"address {address!r} is for the ray backend; the local backend runs "
                         "on this machine")
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"run names must be unique in a sweep (a name identifies a run in the "
                         f"store); repeated: {', '.join(repeated)}")
    if backend == "ray":
        import_ray()
    else:
        check_device(device, cuda_device_count() if device not in (None, "auto") else 0)
    store = Path(store).expanduser().resolve()
    # create the store (and its schema) once here, in the journal mode the workers will use
    open_store(store, journal=ray_journal() if backend == "ray" else None).close()
    for preset in dict.fromkeys(spec.preset for spec in specs):
        mine = [spec for spec in specs if spec.preset == preset]
        record_plan(store, preset, [spec.name for spec in mine],
                    {spec.name: run_identity(spec) for spec in mine})

    results: dict[str, SweepResult] = {}

    def report(result: SweepResult) -> None:
        results[result.name] = result
        if on_result is not None:
            on_result(result)

    skipped = already_done(specs, store, rerun=rerun)
    todo = []
    for spec in specs:
        if spec.name in skipped:
            report(skipped[spec.name])
        else:
            todo.append(spec)
    log.info("sweep: %d run(s) to train (%s backend), %d skipped", len(todo), backend,
             len(specs) - len(todo))
    if todo and backend == "local":
        _sweep_local(todo, store, workers, device, threads, report, rerun)
    elif todo:
        _sweep_ray(todo, store, address, device, threads, report, rerun)
    return [results[name] for name in names]
