"""`learnscope sweep`: a preset's runs in parallel, in local worker processes or as Ray
tasks."""

from __future__ import annotations

import math
import time
from pathlib import Path

import typer
from rich.markup import escape

from learnscope.cli import options as shared
from learnscope.cli import preset_runs
from learnscope.cli.output import check_store, checked, console, fail
from learnscope.progress import format_duration, progress
from learnscope.store import StoreError
from learnscope.threads import decide_threads

SWEEP_COLOURS = {"finished": "green", "skipped": "white", "diverged": "red", "failed": "red"}


def sweep_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Preset: early, entropycurve, methods, equisep, "
                               "equisep-depth."),
    workers: int = typer.Option(None, min=1, help="Runs at once (local backend; default: one "
                                "per CUDA GPU, else 2)."),
    backend: str = typer.Option("local", help="local: processes on this machine; ray: one Ray "
                                "task per run on a Ray cluster (needs the ray extra: pip install "
                                "'learnscope\\[ray]')."),
    address: str = typer.Option(None, help="ray: the cluster (default: start Ray on this "
                                "machine; 'auto': the cluster this machine joined with `ray "
                                "start`; ray://HOST:10001)."),
    device: str = typer.Option("auto", help="auto (GPUs spread over the workers when there "
                               "are, else cpu), cpu, cuda, or cuda:N for every run."),
    threads: int = typer.Option(None, min=1, help="Torch threads per run (local default: "
                                "$OMP_NUM_THREADS, else the CPU cores divided by the workers; "
                                "ray: 1 CPU per task)."),
    store: Path = shared.StoreOption,
    scale: str = shared.ScaleOption,
    epochs: int = shared.EpochsOption,
    steps: int = shared.StepsOption,
    seeds: str = shared.SeedsOption,
    models: str = shared.ModelsOption,
    dataset: str = shared.DatasetOption,
    schedule: str = shared.ScheduleOption,
    depths: str = shared.DepthsOption,
    optimizers: str = shared.OptimizersOption,
    per_class: int = shared.PerClassOption,
    imbalance: float = shared.ImbalanceOption,
    blocks: str = shared.BlocksOption,
    download: bool = shared.DownloadOption,
    fit_from_input: bool = shared.FitFromInputOption,
    all_lrs: bool = shared.AllLrsOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the runs, whether each is "
                                 "reused, resumed or started fresh, and how they would be "
                                 "spread; run nothing."),
    rerun: bool = shared.RerunOption,
) -> None:
    """Run a preset's runs in parallel: worker processes here, or Ray tasks on a cluster.

    Runs finished in the store with the same settings (fingerprint) are skipped, unfinished ones
    resume from their checkpoint, runs another live process trains are left to it; one line per
    run as it ends, then a summary. Exit code 1 when a run failed. With --backend ray
    the store must be on storage shared by every node, at the same absolute path (tasks open it
    with LEARNSCOPE_STORE_JOURNAL=delete; see docs/store.md). `learnscope status PRESET` shows
    the progress from any shell.
    """
    from learnscope.experiments import presets, validation
    from learnscope.experiments import sweep as sweeping
    from learnscope.experiments.presets import PRESET_REGISTRY

    checked(validation.extra_arguments, "sweep", name, ctx.args)
    if name not in PRESET_REGISTRY:
        fail(str(PRESET_REGISTRY.unknown(name, " for a sweep", known=[*presets.sweepable()])))
    name = PRESET_REGISTRY.canonical(name)
    if name not in presets.sweepable():
        fail(f"preset {name!r} is not for a sweep ({' and '.join(presets.run_only())} run with "
              f"`learnscope run`); presets with runs: {', '.join(presets.sweepable())}")
    if backend not in sweeping.BACKENDS:
        fail(f"unknown backend {backend!r}; use {' or '.join(sweeping.BACKENDS)}")
    if backend == "ray":
        if workers is not None:
            fail("--workers is for the local backend; Ray runs as many tasks at once as the "
                  "cluster has resources for (--threads sets the CPUs of each)")
        try:
            sweeping.import_ray()
        except ImportError as error:
            fail(str(error))
    elif address is not None:
        fail("--address is for --backend ray; the local backend runs on this machine")
    try:
        cuda_count = sweeping.cuda_device_count()
        if backend == "local":
            sweeping.check_device(device, cuda_count)
    except ValueError as error:
        fail(str(error))
    specs = preset_runs.expand_preset(name, scale, epochs=epochs, steps=steps, dataset=dataset,
                           schedule=schedule, seeds=seeds, models=models, depths=depths,
                           optimizers=optimizers, per_class=per_class, imbalance=imbalance,
                           blocks=blocks, download=download,
                           fit_from_input=fit_from_input or None,
                           all_lrs=all_lrs or None)
    preset_runs.print_runs(name, scale, specs, dry_run=dry_run)
    if backend == "local":
        count = workers or sweeping.default_workers(device, cuda_count)
        used = max(1, min(count, len(specs)))  # no more workers than runs
        per_worker = decide_threads(threads, workers=used).threads
        devices = sorted({sweeping.assign_device(device, i, cuda_count) for i in range(used)})
        where = f"{used} worker process(es) x {per_worker} thread(s), on {', '.join(devices)}"
    else:
        count = 1
        where = (f"Ray tasks ({address or 'a local Ray instance'}), "
                 f"{threads or sweeping.RAY_DEFAULT_THREADS} CPU(s) each, device {device}, "
                 f"store journal {sweeping.ray_journal()}")
    if dry_run:
        preset_runs.print_plan(specs, store, rerun=rerun)
        skipped = sweeping.already_done(specs, store, rerun=rerun) if store.exists() else {}
        console.print(f"Would run {len(specs) - len(skipped)} of {len(specs)} runs with "
                      f"{where}; {len(skipped)} skipped (finished in the store with the same "
                      "settings, or trained by another process).")
        return
    checked(validation.ensure_data, specs, download)  # once here, not in every worker
    checked(validation.run_lengths, specs)
    check_store(store)
    console.print(f"[bold]sweep {escape(name)}[/]: {len(specs)} runs, {where}, store "
                  f"{escape(str(store))}")
    started = time.monotonic()
    with progress() as report:
        overall = report.task(f"{name}: runs", total=len(specs))

        def on_result(result) -> None:
            overall.advance()
            colour = SWEEP_COLOURS.get(result.status, "white")
            took = "" if math.isnan(result.seconds) else f", {format_duration(result.seconds)}"
            where_run = f", {result.device}" if result.status != "skipped" else ""
            line = (f"{escape(result.name)}: [{colour}]{result.status}[/] "
                    f"({result.run_id or 'no run'}{took}{where_run})")
            if result.error:
                line += f": {escape(result.error)}"
            console.print(line)

        try:
            results = sweeping.sweep(specs, store, workers=count, backend=backend,
                                     address=address, device=device, threads=threads,
                                     on_result=on_result, rerun=rerun)
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: the runs in progress were stopped; they "
                          "stay interrupted in the store and resume when the same sweep is "
                          "started again")
            raise typer.Exit(code=130) from None
        except (ValueError, ImportError, StoreError) as error:
            fail(str(error))
        overall.finish()
    counts = {status: sum(r.status == status for r in results)
              for status in sweeping.OUTCOMES}
    for result in results:
        if result.status == "failed" and result.traceback:
            console.print(f"[red]{escape(result.name)}[/] failed:\n{escape(result.traceback)}")
    elapsed = time.monotonic() - started
    summary = ", ".join(f"[{SWEEP_COLOURS[k]}]{v} {k}[/]" for k, v in counts.items())
    console.print(f"[bold]sweep {escape(name)}[/]: {summary} in {format_duration(elapsed)}. "
                  f"Progress and ETA: learnscope status {escape(name)} --store "
                  f"{escape(str(store))}")
    if counts["failed"]:
        raise typer.Exit(code=1)
