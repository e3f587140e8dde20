"""How many CPU threads a learnscope process uses: one rule for every entry point.

PyTorch starts as many intra-op threads as the machine has physical cores, and numpy's BLAS
as many as it sees, whatever the process may actually use and however many sibling processes
(sweep workers, torchrun ranks) share those cores. Oversubscribed threads spin and wait for
each other: on a 2-core machine under load a measured step of the `early` preset took 6 s with
the default threads and 2.6 s with one, and a 100 x 100 matrix product in numpy's BLAS (the
separation probe's class moments) 40 times longer with two threads than with one.

The rule (:func:`choose_threads`, a pure function): an explicit request (``--threads``) wins;
else a valid ``OMP_NUM_THREADS`` in the environment; else the cores this process may run on
(its CPU affinity, capped by a cgroup CPU quota) divided by the processes sharing them (sweep
workers, or the local ranks of a torchrun job, ``LOCAL_WORLD_SIZE``), at least 1.
:func:`use_threads` applies it: torch's intra-op threads and, through threadpoolctl, the BLAS
libraries numpy loaded. The command line (``learnscope run``, ``learnscope sweep`` workers,
Ray tasks) calls it once per process; library functions (``train``, ``execute``) leave the
caller's settings alone, so a script may call :func:`use_threads` itself.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

THREADS_ENV = "OMP_NUM_THREADS"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadChoice:
    """The threads chosen for a process and why (``reason`` is one line for the user)."""

    threads: int
    reason: str


def available_cores(affinity: int | None = None, quota: float | None = None) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (>= 1).

    Both default to what the operating system says (``os.sched_getaffinity``, else
    ``os.cpu_count()``; ``/sys/fs/cgroup/cpu.max``, cgroup v2); an infinite quota is none.
    """
    if affinity is None:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not Linux
            affinity = os.cpu_count() or 1
    if quota is None:
        quota = cgroup_quota()
    cores = max(1, int(affinity))
    if quota is not None and 0 < quota < math.inf:
        cores = min(cores, max(1, math.ceil(quota)))
    return cores


def cgroup_quota(path: Path = CGROUP_CPU_MAX) -> float | None:
    """CPUs' worth of time the cgroup allows (``cpu.max``: quota / period), None when unlimited."""
    try:
        quota, period = path.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def choose_threads(*, requested: int | None = None, environment: str | None = None,
                   cores: int = 1, processes: int = 1) -> ThreadChoice:
    """Threads for one process (pure: every input is an argument).

    Args:
        requested: an explicit count (``--threads``); wins when given.
        environment: the value of ``OMP_NUM_THREADS`` (None when unset); used when it is an
            integer >= 1, ignored otherwise.
        cores: the cores this process may run on (:func:`available_cores`).
        processes: processes sharing those cores (sweep workers, local torchrun ranks).
    Raises ValueError for a requested count below 1.
    """
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
            raise ValueError(f"threads must be an integer >= 1, got {requested!r}; pass "
                             "--threads 1 or more, or leave it out to use the cores available")
        return ThreadChoice(requested, "asked for with --threads")
    if environment is not None and environment.strip().isdigit() and int(environment) >= 1:
        return ThreadChoice(int(environment), f"{THREADS_ENV}={environment.strip()}")
    processes = max(1, int(processes))
    threads = max(1, cores // processes)
    share = f", shared by {processes} processes" if processes > 1 else ""
    return ThreadChoice(threads, f"{cores} core(s) available to this process{share}")


def local_processes(workers: int = 1) -> int:
    """Processes sharing this machine's cores: ``workers`` x the local ranks of a torchrun job."""
    try:
        ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        ranks = 1
    return max(1, workers) * max(1, ranks)


def decide_threads(requested: int | None = None, *, workers: int = 1) -> ThreadChoice:
    """:func:`choose_threads` for this process: its environment, cores and torchrun ranks."""
    return choose_threads(requested=requested, environment=os.environ.get(THREADS_ENV),
                          cores=available_cores(), processes=local_processes(workers))


def use_threads(requested: int | None = None, *, workers: int = 1) -> ThreadChoice:
    """Decide (:func:`decide_threads`) and apply: torch's intra-op threads and numpy's BLAS."""
    import torch

    choice = decide_threads(requested, workers=workers)
    torch.set_num_threads(choice.threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings it; without it only torch is limited
        return choice
    threadpool_limits(choice.threads, user_api="blas")
    return choice
