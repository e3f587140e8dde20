"""The local backend: a pool of spawned worker processes, each fed one run at a time."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from learnscope.threads import decide_threads, use_threads

from .devices import assign_device, cuda_device_count
from .results import SweepResult
from .run_spec import run_spec

log = logging.getLogger("learnscope.experiments.sweep")  # one logger for the whole sweep

#: A run in flight when its worker process dies this many times is reported failed.
MAX_WORKER_DEATHS = 2

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


#: Set in a worker once it was told to stop (SIGTERM): it takes no further run.
_stop_requested = threading.Event()


def _stop_run(signum: int, frame: Any) -> None:
    """A worker's SIGTERM handler: stop the run as Ctrl-C would (it stays resumable)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the run is being stopped
    _stop_requested.set()
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
        if _stop_requested.is_set():  # the signal landed where the run could not stop on it
            return "stopped by a signal"


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
