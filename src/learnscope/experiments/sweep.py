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
    worker process dies (killed, out of memory) the pool is restarted and the runs it held
    resume from their checkpoints; a run in flight at two such deaths is reported failed (it
    stays interrupted in the store and resumes on the next sweep). Ctrl-C stops the workers at
    once: their runs stay interrupted in the store and resume on the next sweep.

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

import math
import os
import shutil
import signal
import socket
import tempfile
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from learnscope.store import JOURNAL_ENV
from learnscope.threads import decide_threads, use_threads

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

_WORKER: dict[str, Any] = {}  # this worker process's slot, device and state folder


def _init_worker(folder: str, slots: int, threads: int, device: str | None,
                 cuda_count: int) -> None:
    """Pool initializer: claim a worker index, pick the device, set threads, ignore Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool on Ctrl-C
    index = 0
    for index in range(slots):  # O_EXCL creation is atomic: each index goes to one worker
        try:
            os.close(os.open(os.path.join(folder, f"slot-{index}"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            break
        except FileExistsError:
            continue
    use_threads(threads)
    _WORKER.update(index=index, folder=folder,
                   device=assign_device(device, index, cuda_count))


def _pool_task(spec: dict[str, Any], store: str, rerun: bool = False) -> SweepResult:
    """Run ``spec`` in a pool worker; the worker's state file names it while it runs."""
    marker = os.path.join(_WORKER["folder"], f"running-{_WORKER['index']}")
    temporary = f"{marker}.tmp"
    with open(temporary, "w") as out:
        out.write(spec["name"])
    os.replace(temporary, marker)
    try:
        return run_spec(spec, store, device=_WORKER["device"], rerun=rerun)
    finally:
        os.remove(marker)


def _in_flight(folder: str) -> set[str]:
    """Names of the runs the pool's workers were running (from their state files)."""
    names = set()
    for entry in Path(folder).glob("running-*"):
        if not entry.name.endswith(".tmp"):
            try:
                names.add(entry.read_text())
            except OSError:
                continue
    return names


def _terminate_workers(executor: ProcessPoolExecutor) -> None:
    """Stop the pool's processes now (their runs stay interrupted in the store)."""
    terminate = getattr(executor, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(executor, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


def _sweep_local(specs: list[Any], store: Path, workers: int, device: str | None,
                 threads: int | None, report: Callable[[SweepResult], None],
                 rerun: bool = False) -> None:
    import multiprocessing

    cuda_count = cuda_device_count() if device in ("auto", "cuda") else 0
    count = min(workers, len(specs))
    per_worker = decide_threads(threads, workers=count).threads
    context = multiprocessing.get_context("spawn")
    pending = deque(specs)
    deaths: Counter[str] = Counter()
    idle_breaks = 0  # pools that broke with no run in flight (workers that cannot start?)
    fresh = {spec.name for spec in specs} if rerun else set()  # rerun: until a run started
    while pending:
        folder = tempfile.mkdtemp(prefix="learnscope-sweep-")
        executor = ProcessPoolExecutor(
            max_workers=min(count, len(pending)), mp_context=context,
            initializer=_init_worker,
            initargs=(folder, count, per_worker, device, cuda_count),
        )
        try:
            futures = {executor.submit(_pool_task, asdict(spec), str(store),
                                       spec.name in fresh): spec
                       for spec in pending}
            pending.clear()
            lost = []
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in done:
                    spec = futures[future]
                    try:
                        report(future.result())
                    except BrokenProcessPool:
                        lost.append(spec)
                    except Exception as error:  # noqa: BLE001 - e.g. an unpicklable result
                        report(SweepResult(spec.name, None, "failed", _describe(error)))
            if lost:
                running = _in_flight(folder)
                idle_breaks += not running
                for spec in lost:
                    if spec.name in running:
                        deaths[spec.name] += 1
                        fresh.discard(spec.name)  # its fresh run started: resume it
                    if idle_breaks >= MAX_WORKER_DEATHS:
                        report(SweepResult(
                            spec.name, None, "failed",
                            "the sweep's worker processes died before running it, "
                            f"{idle_breaks} times (see the errors printed above)"))
                    elif deaths[spec.name] >= MAX_WORKER_DEATHS:
                        report(SweepResult(
                            spec.name, None, "failed",
                            f"its worker process died {deaths[spec.name]} times while running "
                            "it (killed, or out of memory?); the run stays interrupted in the "
                            "store and resumes from its checkpoint on the next sweep"))
                    else:
                        pending.append(spec)  # resumes from its checkpoint in a new pool
        except BaseException:  # Ctrl-C (KeyboardInterrupt) or an error here: stop at once
            _terminate_workers(executor)
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            shutil.rmtree(folder, ignore_errors=True)


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
                runtime_env={"env_vars": {JOURNAL_ENV: ray_journal()}},
            )
            ref = remote.remote(asdict(spec), str(store), device=task_device,
                                threads=task_threads, rerun=rerun)
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
    if todo and backend == "local":
        _sweep_local(todo, store, workers, device, threads, report, rerun)
    elif todo:
        _sweep_ray(todo, store, address, device, threads, report, rerun)
    return [results[name] for name in names]
