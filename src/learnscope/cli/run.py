"""`learnscope run`: the quickstart, a paper preset's runs one after the other, or the
weight-trajectory experiment."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape

from learnscope.cli import options as shared
from learnscope.cli.output import (
    SHOWN_MEASURES,
    check_store,
    checked,
    console,
    fail,
    measure_table,
)
from learnscope.cli.preset_runs import expand_preset, print_plan, print_runs, set_threads
from learnscope.progress import Task, progress
from learnscope.store import open as open_store


def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"What to run: {', '.join(shared.PRESETS)}."),
    store: Path = shared.StoreOption,
    scale: str = shared.ScaleOption,
    epochs: int = shared.EpochsOption,
    steps: int = shared.StepsOption,
    seeds: str = shared.SeedsOption,
    models: str = shared.ModelsOption,
    dataset: str = shared.DatasetOption,
    schedule: str = shared.ScheduleOption,
    device: str = typer.Option("cpu", help="Device to train on (presets), e.g. cuda."),
    depths: str = shared.DepthsOption,
    optimizers: str = shared.OptimizersOption,
    per_class: int = shared.PerClassOption,
    imbalance: float = shared.ImbalanceOption,
    blocks: str = shared.BlocksOption,
    download: bool = shared.DownloadOption,
    fit_from_input: bool = shared.FitFromInputOption,
    all_lrs: bool = shared.AllLrsOption,
    every: int = typer.Option(None, help="Quickstart: measure every k training steps (default "
                              "10)."),
    seed: int = typer.Option(0, help="Quickstart: random seed; trajectories: seed of the first "
                             "network (the others take the next ones) and of the projection."),
    networks: int = typer.Option(3, help="trajectories: networks per group."),
    iterations: int = typer.Option(None, help="trajectories: training epochs on the task "
                                   "(default 10; --epochs means the same)."),
    depth: int = typer.Option(2, help="trajectories: hidden layers of the MLP."),
    width: int = typer.Option(64, help="trajectories: units per hidden layer."),
    activation: str = typer.Option("relu", help="trajectories: relu, lrelu, prelu, relu6, "
                                   "hardtanh."),
    optimizer: str = typer.Option("sgd", help="trajectories: sgd, momentum or adam."),
    lr: float = typer.Option(None, help="trajectories: learning rate (default sgd 0.1, "
                             "momentum 0.05, adam 1e-3)."),
    snapshot_every: int = typer.Option(4, help="trajectories: updates between snapshots."),
    projection: str = typer.Option("autoencoder", help="trajectories: pca, autoencoder, som, "
                                   "autoencoder-som, autoencoder-tsne, tsne, umap."),
    fit_on: str = typer.Option("all", help="trajectories: fit the projection on 'all' networks "
                               "or on the 'first' only."),
    track: str = typer.Option("all", help="trajectories: all, average-hidden, layer:NAME, "
                              "first-layers:N."),
    setting: str = typer.Option("compare", help="trajectories: compare (scratch and pre-trained "
                                "groups), scratch or pretrained."),
    pretrain: str = typer.Option("digits-0-4", help="trajectories: pre-training task "
                                 "(digits-0-4, mnist1d, omniglot, mnist, ...)."),
    pretrain_iterations: int = typer.Option(10, help="trajectories: pre-training epochs."),
    train_on: str = typer.Option("digits-5-9", help="trajectories: the task every network "
                                 "learns (digits-5-9, mnist, ...)."),
    landscape: str = typer.Option("interpolate", help="trajectories: score landscape under the "
                                  "paths: interpolate, evaluate (the network at every grid "
                                  "point; pca / autoencoder / som, --track all) or none."),
    resolution: int = typer.Option(40, help="trajectories: landscape grid points per axis."),
    threads: int = typer.Option(None, min=1, help="Torch (and BLAS) threads (default: "
                                "$OMP_NUM_THREADS, else the CPU cores this process may use, "
                                "divided among local torchrun ranks)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run, and whether "
                                 "each run is reused, resumed or started fresh; run nothing."),
    rerun: bool = shared.RerunOption,
) -> None:
    """Run the quickstart or an experiment preset; measurements go to the store.

    A run finished in the store with the same name and settings (fingerprint) is reused, an
    unfinished one resumes from its checkpoint, one that another live process trains is left
    to it; other settings start a new run. Ctrl-C leaves the run interrupted and prints the
    command that resumes it.
    """
    from learnscope.experiments import validation
    from learnscope.experiments.presets import PRESET_REGISTRY

    checked(validation.extra_arguments, "run", name, ctx.args)
    if name not in PRESET_REGISTRY:
        fail(str(PRESET_REGISTRY.unknown(name)))
    name = PRESET_REGISTRY.canonical(name)
    checked(validation.run_device, device)
    if name in ("quickstart", "trajectories"):
        checked(validation.not_for, name, {
            "--steps": steps, "--seeds": seeds, "--models": models, "--dataset": dataset,
            "--schedule": schedule, "--depths": depths, "--optimizers": optimizers,
            "--per-class": per_class, "--imbalance": imbalance, "--blocks": blocks,
            "--download": download, "--scale": None if scale == "small" else scale,
            "--fit-from-input": fit_from_input or None, "--all-lrs": all_lrs or None,
            **({"--every": every} if name == "trajectories" else {})})
    if name == "trajectories":
        from learnscope.cli.trajectories import run_trajectories

        options = checked(
            validation.trajectory_options, epochs=epochs, iterations=iterations,
            networks=networks, depth=depth, width=width, activation=activation,
            optimizer=optimizer, lr=lr, snapshot_every=snapshot_every, projection=projection,
            fit_on=fit_on, track=track, setting=setting, pretrain=pretrain,
            pretrain_iterations=pretrain_iterations, train_on=train_on, landscape=landscape,
            resolution=resolution, seed=seed, device=device)
        set_threads(threads, dry_run=dry_run)
        try:
            run_trajectories(store, dry_run=dry_run, **options)
        except KeyboardInterrupt:
            _interrupted(name)
        return
    try:
        if name != "quickstart":
            _run_preset(name, store, scale=scale, epochs=epochs, steps=steps, seeds=seeds,
                        models=models, dataset=dataset, schedule=schedule, device=device,
                        dry_run=dry_run, depths=depths, optimizers=optimizers,
                        per_class=per_class, imbalance=imbalance, blocks=blocks, every=every,
                        download=download, rerun=rerun,
                        fit_from_input=fit_from_input or None, all_lrs=all_lrs or None,
                        threads=threads)
            return
        epochs, every = checked(validation.quickstart_options, epochs=epochs, every=every,
                                 seed=seed)
        set_threads(threads, dry_run=dry_run)
        _run_quickstart(store, epochs=epochs, every=every, seed=seed, dry_run=dry_run,
                        rerun=rerun)
    except KeyboardInterrupt:
        _interrupted(name)



def _interrupted(name: str) -> None:
    """Ctrl-C: one line with the command that resumes the interrupted run(s); exit code 130."""
    import shlex

    arguments = [a for a in sys.argv[1:] if a != "--rerun"]  # resume, do not start afresh
    if not arguments or arguments[0] != "run":  # called other than as `learnscope run ...`
        arguments = ["run", name]
    console.print(f"[yellow]interrupted[/]: the run in progress is left interrupted in the "
                  f"store; resume it with: {escape(shlex.join(['learnscope', *arguments]))}",
                  soft_wrap=True)
    raise typer.Exit(code=130)


def _run_quickstart(store: Path, *, epochs: int, every: int, seed: int, dry_run: bool,
                    rerun: bool) -> None:
    from learnscope.experiments.quickstart import NETS, plan_quickstart, run_quickstart

    console.print(
        f"[bold]quickstart[/]: nets {', '.join(NETS)} on digits, {epochs} epochs, "
        f"measuring every {every} steps, store {escape(str(store))}"
    )
    if dry_run:
        from learnscope.experiments.identity import describe

        for net, claim in plan_quickstart(store, epochs=epochs, every_k=every, seed=seed,
                                          rerun=rerun):
            console.print(f"quickstart-{net}: {escape(describe(claim))}", soft_wrap=True)
        return
    check_store(store)
    from learnscope.experiments.quickstart import quickstart_identity
    from learnscope.experiments.status import record_plan

    record_plan(store, "quickstart", [f"quickstart-{net}" for net in NETS],
                {f"quickstart-{net}": quickstart_identity(net, epochs=epochs, every_k=every,
                                                          seed=seed) for net in NETS})
    with progress() as report:
        tasks: dict[str, Task] = {}

        def on_step(net: str, step: int, total: int) -> None:
            if net not in tasks:
                tasks[net] = report.task(f"train + measure {net}", total=total)
            tasks[net].update(completed=step)
            if step >= total:
                tasks[net].finish()

        outcome = run_quickstart(store, epochs=epochs, every_k=every, seed=seed, on_step=on_step,
                                 rerun=rerun, notify=lambda line: console.print(escape(line)))
    with open_store(store, read_only=True) as s:
        for result in outcome:
            if result.status == "busy":
                continue  # its message was printed; the other process shows its results
            latest = s.latest(result.run_id)
            how = " (reused: finished earlier with the same settings)" \
                if result.status == "skipped" else ""
            title = (f"{result.net}: run {result.run_id}{how}, test accuracy "
                     f"{result.test_accuracy:.3f} (final measures per layer)")
            console.print(measure_table(title, latest, SHOWN_MEASURES))
    console.print(f"Stored in {escape(str(store))}. Try: learnscope runs --store "
                  f"{escape(str(store))}")



def _run_preset(name: str, store: Path, *, scale: str, epochs: int | None, steps: int | None,
                seeds: str | None, models: str | None, dataset: str | None,
                schedule: str | None, device: str, dry_run: bool, depths: str | None = None,
                optimizers: str | None = None, per_class: int | None = None,
                imbalance: float | None = None, blocks: str | None = None,
                every: int | None = None, download: bool = False, rerun: bool = False,
                fit_from_input: bool | None = None, all_lrs: bool | None = None,
                threads: int | None = None) -> None:
    from learnscope.data import DatasetNotFoundError
    from learnscope.experiments import validation
    from learnscope.experiments.presets import execute, run_identity

    specs = expand_preset(name, scale, device=device, epochs=epochs, steps=steps,
                           dataset=dataset, schedule=schedule, seeds=seeds, models=models,
                           depths=depths, optimizers=optimizers, per_class=per_class,
                           imbalance=imbalance, blocks=blocks, every=every, download=download,
                           fit_from_input=fit_from_input, all_lrs=all_lrs)
    set_threads(threads, dry_run=dry_run)
    print_runs(name, scale, specs, dry_run=dry_run)
    if dry_run:
        print_plan(specs, store, rerun=rerun)
        return
    checked(validation.ensure_data, specs, download)  # before the store: a missing dataset
    checked(validation.run_lengths, specs)
    check_store(store)
    from learnscope.experiments.status import record_plan

    try:  # the identities tell the plan's runs from runs of other settings (`status`)
        identities = {spec.name: run_identity(spec) for spec in specs}
    except ValueError as error:  # a recipe or schedule that cannot be resolved
        fail(str(error))
    record_plan(store, name, [spec.name for spec in specs], identities)
    with progress() as report:  # the trainer reports each run's steps into it
        overall = report.task(f"{name}: runs", total=len(specs))
        for spec in specs:
            try:
                run_id, status = execute(spec, store, rerun=rerun,
                                         notify=lambda line: console.print(escape(line)))
            except DatasetNotFoundError as error:
                fail(error.for_command_line())
            except FileNotFoundError as error:
                fail(str(error))
            overall.advance()
            if status != "busy":  # a busy run's line named its owner already
                console.print(f"{spec.name}: {status} ({run_id})")
        overall.finish()
