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

Modules: ``results`` (:class:`SweepResult`), ``devices`` (which device each worker trains
on), ``run_spec`` (one run in a worker or task), ``plan`` (the runs a sweep skips),
``local_pool`` (worker processes, their process groups, signals and parent watch),
``ray_runner`` (Ray tasks); :func:`sweep` here ties them together. All log to the
``learnscope.experiments.sweep`` logger.
"""


from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .devices import assign_device, check_device, cuda_device_count, default_workers
from .local_pool import (
    MAX_WORKER_DEATHS,
    ORPHAN_GRACE_SECONDS,
    PARENT_POLL_SECONDS,
    WORKER_STOP_SECONDS,
    _sweep_local,
)
from .plan import already_done
from .ray_runner import (
    RAY_DEFAULT_THREADS,
    RAY_EXTRA,
    _sweep_ray,
    import_ray,
    ray_journal,
)
from .ray_runner import (
    _ray_device as _ray_device,  # tests check it
)
from .results import OUTCOMES, SweepResult
from .run_spec import run_spec

__all__ = [
    "BACKENDS", "MAX_WORKER_DEATHS", "ORPHAN_GRACE_SECONDS", "OUTCOMES",
    "PARENT_POLL_SECONDS", "RAY_DEFAULT_THREADS", "RAY_EXTRA",
    "SweepResult", "already_done", "assign_device", "check_device", "cuda_device_count",
    "default_workers", "import_ray", "ray_journal", "run_spec", "sweep",
    "WORKER_STOP_SECONDS",
]

log = logging.getLogger("learnscope.experiments.sweep")  # one logger for the whole sweep

BACKENDS = ("local", "ray")


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
