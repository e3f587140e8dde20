"""The Ray backend: one Ray task per run on a cluster; the store journal its tasks use."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from learnscope.diagnostics import LOG_ENV
from learnscope.store import JOURNAL_ENV

from .local_pool import MAX_WORKER_DEATHS
from .results import SweepResult, describe_error
from .run_spec import _mark_failed, run_spec

log = logging.getLogger("learnscope.experiments.sweep")  # one logger for the whole sweep

RAY_EXTRA = "pip install 'learnscope[ray]'"
#: Torch threads of a Ray task when ``threads`` is not given.
RAY_DEFAULT_THREADS = 1


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
                        text = f"Ray task failed: {describe_error(error)}"
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
