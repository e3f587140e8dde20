"""The `learnscope` command line: run presets, list runs, show a run's measures."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from learnscope import __version__
from learnscope.experiments.presets import PRESET_REGISTRY
from learnscope.progress import Task, format_duration, progress
from learnscope.scope import DEFAULT_STORE
from learnscope.store import Store, StoreError
from learnscope.store import open as open_store
from learnscope.threads import decide_threads, use_threads

app = typer.Typer(
    help="learnscope: watch what happens inside a network while it trains.",
    no_args_is_help=True,
    add_completion=False,
)
# Not a terminal (CI, logs, pipes): use a wide fixed width so tables are not truncated.
console = Console(width=None if sys.stdout.isatty() else 160)

PRESETS = PRESET_REGISTRY.names()  # quickstart, the presets with runs, trajectories
SHOWN_MEASURES = (
    "evaluations", "distinct", "distinct_frac", "max_frac", "entropy", "rel_entropy",
    "mutual_information", "jaccard_since_init", "weighted_jaccard_since_last",
)
# Compact column headers for the measure tables (full names are in the docs and the store).
HEADERS = {
    "evaluations": "E", "distinct": "|A|", "distinct_frac": "|A|/E", "max_frac": "max/E",
    "entropy": "H bits", "rel_entropy": "H/Hmax", "mutual_information": "MI(A;L)",
    "jaccard_since_init": "J init", "weighted_jaccard_since_last": "wJ last",
}

# named, not __name__: under `python -m learnscope.cli` that is "__main__"
log = logging.getLogger("learnscope.cli")

StoreOption = typer.Option(DEFAULT_STORE, "--store", "-s", help="Path of the SQLite run store.")


def _fail(message: str) -> None:
    if console.quiet:  # a torchrun rank other than 0: its errors still show, marked with it
        from learnscope.distributed import launch_rank

        print(f"rank {launch_rank()}: error: {message}", file=sys.stderr, flush=True)
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def _format(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _measure_table(title: str, latest, measures: tuple[str, ...]) -> Table:
    """Layers (rows, forward order) x measures (columns) of a run's latest values."""
    table = Table(title=title, header_style="bold")
    present = [m for m in measures if m in set(latest["measure"])]
    table.add_column("#", justify="right")
    table.add_column("layer")
    for measure in present:
        table.add_column(HEADERS.get(measure, measure), justify="right")
    frame = latest[latest["layer_index"] >= 0]
    wide = frame.pivot_table(index=["layer_index", "layer"], columns="measure", values="value",
                             aggfunc="last")
    for (index, layer), row in wide.sort_index().iterrows():
        table.add_row(str(index), escape(layer), *[_format(row.get(m, math.nan)) for m in present])
    table.caption = ", ".join(f"{HEADERS[m]} = {m}" for m in present if m in HEADERS)
    return table


def _checked(check, *args, **options):
    """check(*args, **options), a one-line error for a value the command line cannot use."""
    from learnscope.experiments.validation import UsageError

    try:
        return check(*args, **options)
    except UsageError as error:
        _fail(str(error))


@app.callback()
def global_options(
    ctx: typer.Context,
    log_level: str = typer.Option(None, "--log-level", metavar="LEVEL", help="Print "
                                  "learnscope's log messages of LEVEL and above to stderr: "
                                  "debug, info or warning (default: $LEARNSCOPE_LOG, else "
                                  "none). Applies to the processes a command starts too."),
) -> None:
    """Options of every command (given before the command's name)."""
    from learnscope import diagnostics

    try:
        if log_level is not None:
            diagnostics.enable_logging(diagnostics.parse_level(log_level, "--log-level"))
            os.environ[diagnostics.LOG_ENV] = log_level  # sweep workers, Ray tasks: the same
        elif (level := diagnostics.level_from_env()) is not None:  # an invalid one stops here
            diagnostics.enable_logging(level)
    except diagnostics.LogLevelError as error:
        if str(error) == diagnostics.reported_env_error:  # its line was printed at import
            raise typer.Exit(code=2) from None
        _fail(str(error))
    log.debug("learnscope %s: command %s", __version__, ctx.invoked_subcommand)


BlocksOption = typer.Option(None, help="entropycurve: comma-separated blocks per stage, the "
                            "depth 6n+2 of each family (1,3: resnet8 and resnet20; default "
                            "1,2,3,4,5).")
DownloadOption = typer.Option(False, "--download", help="Fetch a missing dataset (cifar10, mnist, "
                              "fashion-mnist, omniglot; MD5-checked) into $LEARNSCOPE_DATA, "
                              "else ./data, before anything runs.")
# `--dry-run true` reaches the command as an extra argument, which it explains (validation)
EXTRA_ARGS = {"allow_extra_args": True}


@app.command(context_settings=EXTRA_ARGS)
def run(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=f"What to run: {', '.join(PRESETS)}."),
    store: Path = StoreOption,
    scale: str = typer.Option("small", help="Preset scale: 'small' (digits, CPU minutes) or "
                              "'paper' (the paper's settings: CIFAR-10; equisep: 10x10 MNIST "
                              "'cm', 600 epochs)."),
    epochs: int = typer.Option(None, help="Training epochs per network (quickstart: 8; "
                               "presets: the recipe's)."),
    steps: int = typer.Option(None, help="Stop each run after this many updates."),
    seeds: str = typer.Option(None, help="Comma-separated seeds (presets)."),
    models: str = typer.Option(None, help="Comma-separated model names (presets; equisep: fnn, "
                               "fnn_nobn, fnn_linear, mlp, small_cnn, resnet8, ...)."),
    dataset: str = typer.Option(None, help="Dataset name (presets; default by scale; equisep "
                                "also cm, cfm, cc: MNIST, Fashion-MNIST, CIFAR-10 at 10x10; ccg: "
                                "CIFAR-10's green channel at 10x10)."),
    schedule: str = typer.Option(None, help="Measurement schedule, e.g. 'every 1 until 40; "
                                 "epochs 100; end' (presets)."),
    device: str = typer.Option("cpu", help="Device to train on (presets), e.g. cuda."),
    depths: str = typer.Option(None, help="equisep: comma-separated depths (the reference's "
                               "layer_num; default 2,6,18 or 1..8 for equisep-depth)."),
    optimizers: str = typer.Option(None, help="equisep: comma-separated subset of sgd, "
                                   "momentum, adam."),
    per_class: int = typer.Option(None, help="equisep: training samples per class (default "
                                  "100)."),
    imbalance: float = typer.Option(None, help="equisep: long-tailed training set, ratio of the "
                                    "largest to the smallest class (uses the imbalanced "
                                    "fuzziness)."),
    blocks: str = BlocksOption,
    download: bool = DownloadOption,
    fit_from_input: bool = typer.Option(False, "--fit-from-input", help="equisep: fit the law "
                                        "over the input and every layer, as the reference's "
                                        "code does (default: the layers after the input)."),
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
    rerun: bool = typer.Option(False, "--rerun", help="Train every run afresh, even when a "
                               "finished run with the same settings is in the store."),
) -> None:
    """Run the quickstart or an experiment preset; measurements go to the store.

    A run finished in the store with the same name and settings (fingerprint) is reused, an
    unfinished one resumes from its checkpoint, one that another live process trains is left
    to it; other settings start a new run. Ctrl-C leaves the run interrupted and prints the
    command that resumes it.
    """
    from learnscope.experiments import validation

    _checked(validation.extra_arguments, "run", name, ctx.args)
    if name not in PRESET_REGISTRY:
        _fail(str(PRESET_REGISTRY.unknown(name)))
    name = PRESET_REGISTRY.canonical(name)
    _checked(validation.run_device, device)
    if name in ("quickstart", "trajectories"):
        _checked(validation.not_for, name, {
            "--steps": steps, "--seeds": seeds, "--models": models, "--dataset": dataset,
            "--schedule": schedule, "--depths": depths, "--optimizers": optimizers,
            "--per-class": per_class, "--imbalance": imbalance, "--blocks": blocks,
            "--download": download, "--scale": None if scale == "small" else scale,
            **({"--every": every} if name == "trajectories" else {})})
    if name == "trajectories":
        from learnscope.trajectory.cli import run_trajectories

        options = _checked(
            validation.trajectory_options, epochs=epochs, iterations=iterations,
            networks=networks, depth=depth, width=width, activation=activation,
            optimizer=optimizer, lr=lr, snapshot_every=snapshot_every, projection=projection,
            fit_on=fit_on, track=track, setting=setting, pretrain=pretrain,
            pretrain_iterations=pretrain_iterations, train_on=train_on, landscape=landscape,
            resolution=resolution, seed=seed, device=device)
        _set_threads(threads, dry_run=dry_run)
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
                        fit_from_input=fit_from_input or None, threads=threads)
            return
        epochs, every = _checked(validation.quickstart_options, epochs=epochs, every=every,
                                 seed=seed)
        _set_threads(threads, dry_run=dry_run)
        _run_quickstart(store, epochs=epochs, every=every, seed=seed, dry_run=dry_run,
                        rerun=rerun)
    except KeyboardInterrupt:
        _interrupted(name)


def _set_threads(threads: int | None, *, dry_run: bool) -> None:
    """Set torch's (and BLAS's) threads for this run (a dry run only says what it would set);
    called once every value is checked, so a refusal is the command's only line."""
    chosen = (decide_threads if dry_run else use_threads)(threads)
    console.print(f"threads: {chosen.threads} ({escape(chosen.reason)}; set with --threads)")


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
    _check_store(store)
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
            console.print(_measure_table(title, latest, SHOWN_MEASURES))
    console.print(f"Stored in {escape(str(store))}. Try: learnscope runs --store "
                  f"{escape(str(store))}")


def open_for_reading(store: Path) -> Store:
    """`store` opened read-only; a note (not a Python warning) when SQLite reads it immutable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the notice is printed below instead
        opened = open_store(store, read_only=True)
    if opened.notice:
        console.print(f"[yellow]note:[/] {escape(opened.notice)}.", soft_wrap=True)
    return opened


@contextmanager
def _reading(store: Path, todo: str) -> Iterator[Store]:
    """The store at `store` opened read-only; a clean error when it is missing or unusable."""
    if not store.exists():
        _fail(f"no store at {store}; {todo}")
    try:
        opened = open_for_reading(store)
    except StoreError as error:
        _fail(str(error))
    with opened:
        yield opened


def _check_store(store: Path) -> None:
    try:
        open_store(store).close()  # fail early, before training, on an unusable store path
    except StoreError as error:
        _fail(str(error))


def _expand_preset(name: str, scale: str, *, device: str | None = None,
                   **options: str | int | float | bool | None) -> list:
    """The RunSpecs of preset `name` with the command line's overrides (shared by run, sweep).

    options: the raw values of epochs, steps, dataset, schedule, per_class, imbalance, every,
    download, and seeds, models, depths, optimizers, blocks (comma-separated text); None means
    the preset's setting. Every value is checked first (experiments.validation).
    """
    from learnscope.experiments import validation
    from learnscope.experiments.presets import expand

    download = bool(options.pop("download", False))
    overrides = _checked(validation.preset_options, name, scale, **options)
    if device is not None:
        overrides["device"] = device
    try:
        specs = expand(name, scale, **overrides)
    except ValueError as error:
        _fail(str(error))
    _checked(validation.runs_fit, name, specs, models=overrides.get("models"),
             download=download)
    return specs


def _print_plan(specs: list, store: Path, *, rerun: bool) -> None:
    """One line per run: reused, resumed (from which step) or started fresh, and why."""
    from learnscope.experiments.identity import describe
    from learnscope.experiments.presets import plan

    try:
        planned = plan(specs, store, rerun=rerun)
    except (StoreError, ValueError) as error:
        _fail(str(error))
    for spec, claim in planned:
        console.print(f"{escape(spec.name)}: {escape(describe(claim))}", soft_wrap=True)


def _print_runs(name: str, scale: str, specs: list, *, dry_run: bool) -> None:
    """The table of a preset's runs; with dry_run, each run's full config as well."""
    table = Table(title=f"{name} at {scale} scale: {len(specs)} runs", header_style="bold")
    for column in ("run", "model", "dataset", "recipe", "seed", "steps", "schedule"):
        table.add_column(column)
    for spec in specs:
        recipe = spec.recipe + (f" {spec.recipe_options}" if spec.recipe_options else "")
        table.add_row(spec.name, spec.model, spec.dataset, escape(recipe), str(spec.seed),
                      str(spec.max_steps or "-"), escape(spec.schedule))
    console.print(table)
    if dry_run:
        for spec in specs:
            console.print_json(data=spec.config())


def _run_preset(name: str, store: Path, *, scale: str, epochs: int | None, steps: int | None,
                seeds: str | None, models: str | None, dataset: str | None,
                schedule: str | None, device: str, dry_run: bool, depths: str | None = None,
                optimizers: str | None = None, per_class: int | None = None,
                imbalance: float | None = None, blocks: str | None = None,
                every: int | None = None, download: bool = False, rerun: bool = False,
                fit_from_input: bool | None = None, threads: int | None = None) -> None:
    from learnscope.data import DatasetNotFoundError
    from learnscope.experiments import validation
    from learnscope.experiments.presets import execute, run_identity

    specs = _expand_preset(name, scale, device=device, epochs=epochs, steps=steps,
                           dataset=dataset, schedule=schedule, seeds=seeds, models=models,
                           depths=depths, optimizers=optimizers, per_class=per_class,
                           imbalance=imbalance, blocks=blocks, every=every, download=download,
                           fit_from_input=fit_from_input)
    _set_threads(threads, dry_run=dry_run)
    _print_runs(name, scale, specs, dry_run=dry_run)
    if dry_run:
        _print_plan(specs, store, rerun=rerun)
        return
    _checked(validation.ensure_data, specs, download)  # before the store: a missing dataset
    _checked(validation.run_lengths, specs)
    _check_store(store)
    from learnscope.experiments.status import record_plan

    try:  # the identities tell the plan's runs from runs of other settings (`status`)
        identities = {spec.name: run_identity(spec) for spec in specs}
    except ValueError as error:  # a recipe or schedule that cannot be resolved
        _fail(str(error))
    record_plan(store, name, [spec.name for spec in specs], identities)
    with progress() as report:  # the trainer reports each run's steps into it
        overall = report.task(f"{name}: runs", total=len(specs))
        for spec in specs:
            try:
                run_id, status = execute(spec, store, rerun=rerun,
                                         notify=lambda line: console.print(escape(line)))
            except DatasetNotFoundError as error:
                _fail(error.for_command_line())
            except FileNotFoundError as error:
                _fail(str(error))
            overall.advance()
            if status != "busy":  # a busy run's line named its owner already
                console.print(f"{spec.name}: {status} ({run_id})")
        overall.finish()


SWEEP_COLOURS = {"finished": "green", "skipped": "white", "diverged": "red", "failed": "red"}


@app.command("sweep", context_settings=EXTRA_ARGS)
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
    store: Path = StoreOption,
    scale: str = typer.Option("small", help="Preset scale: 'small' (digits, CPU minutes) or "
                              "'paper' (the paper's settings)."),
    epochs: int = typer.Option(None, help="Training epochs per network."),
    steps: int = typer.Option(None, help="Stop each run after this many updates."),
    seeds: str = typer.Option(None, help="Comma-separated seeds."),
    models: str = typer.Option(None, help="Comma-separated model names."),
    dataset: str = typer.Option(None, help="Dataset name (default by scale; equisep also cm, "
                                "cfm, cc)."),
    schedule: str = typer.Option(None, help="Measurement schedule, e.g. 'every 1 until 40; "
                                 "epochs 100; end'."),
    depths: str = typer.Option(None, help="equisep: comma-separated depths (layer_num)."),
    optimizers: str = typer.Option(None, help="equisep: comma-separated subset of sgd, "
                                   "momentum, adam."),
    per_class: int = typer.Option(None, help="equisep: training samples per class."),
    imbalance: float = typer.Option(None, help="equisep: long-tailed training set, ratio of the "
                                    "largest to the smallest class."),
    blocks: str = BlocksOption,
    download: bool = DownloadOption,
    fit_from_input: bool = typer.Option(False, "--fit-from-input", help="equisep: fit the law "
                                        "over the input and every layer, as the reference's "
                                        "code does."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the runs, whether each is "
                                 "reused, resumed or started fresh, and how they would be "
                                 "spread; run nothing."),
    rerun: bool = typer.Option(False, "--rerun", help="Train every run afresh, even when a "
                               "finished run with the same settings is in the store."),
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

    _checked(validation.extra_arguments, "sweep", name, ctx.args)
    if name not in PRESET_REGISTRY:
        _fail(str(PRESET_REGISTRY.unknown(name, " for a sweep", known=[*presets.sweepable()])))
    name = PRESET_REGISTRY.canonical(name)
    if name not in presets.sweepable():
        _fail(f"preset {name!r} is not for a sweep ({' and '.join(presets.run_only())} run with "
              f"`learnscope run`); presets with runs: {', '.join(presets.sweepable())}")
    if backend not in sweeping.BACKENDS:
        _fail(f"unknown backend {backend!r}; use {' or '.join(sweeping.BACKENDS)}")
    if backend == "ray":
        if workers is not None:
            _fail("--workers is for the local backend; Ray runs as many tasks at once as the "
                  "cluster has resources for (--threads sets the CPUs of each)")
        try:
            sweeping.import_ray()
        except ImportError as error:
            _fail(str(error))
    elif address is not None:
        _fail("--address is for --backend ray; the local backend runs on this machine")
    try:
        cuda_count = sweeping.cuda_device_count()
        if backend == "local":
            sweeping.check_device(device, cuda_count)
    except ValueError as error:
        _fail(str(error))
    specs = _expand_preset(name, scale, epochs=epochs, steps=steps, dataset=dataset,
                           schedule=schedule, seeds=seeds, models=models, depths=depths,
                           optimizers=optimizers, per_class=per_class, imbalance=imbalance,
                           blocks=blocks, download=download,
                           fit_from_input=fit_from_input or None)
    _print_runs(name, scale, specs, dry_run=dry_run)
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
        _print_plan(specs, store, rerun=rerun)
        skipped = sweeping.already_done(specs, store, rerun=rerun) if store.exists() else {}
        console.print(f"Would run {len(specs) - len(skipped)} of {len(specs)} runs with "
                      f"{where}; {len(skipped)} skipped (finished in the store with the same "
                      "settings, or trained by another process).")
        return
    _checked(validation.ensure_data, specs, download)  # once here, not in every worker
    _checked(validation.run_lengths, specs)
    _check_store(store)
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
            _fail(str(error))
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


@app.command()
def runs(store: Path = StoreOption) -> None:
    """List the runs in the store with status and progress.

    A finished run whose final test accuracy is at chance level shows as
    ``finished (chance-level)``; a failed run shows the last line of its stored error.
    """
    from learnscope.health import assess_runs, short_error

    with _reading(store, "run `learnscope run quickstart` first or pass --store PATH") as s:
        frame = s.runs()
        health = assess_runs(s, frame)
    if frame.empty:
        console.print(f"The store {escape(str(store))} has no runs yet.")
        return
    table = Table(title=f"runs in {escape(str(store))}", header_style="bold")
    table.add_column("id", no_wrap=True, min_width=max(len(str(i)) for i in frame["id"]))
    table.add_column("experiment")
    table.add_column("status", min_width=len("finished (chance-level)"))
    for column in ("progress", "ETA", "measurements", "updated"):
        table.add_column(column)
    for _, row in frame.iterrows():
        progress = row["progress"]
        shown = "-" if progress is None or math.isnan(progress) else f"{100 * progress:.0f}%"
        table.add_row(row["id"], str(row["experiment"] or "-"),
                      _status_text(health[row["id"]], short_error(row["error"])), shown,
                      format_duration(row["eta_seconds"]), str(row["measurements"]),
                      str(row["updated_at"]))
    console.print(table)


def _status_text(health, error: str = "") -> str:
    """A run's status for a table cell: coloured, chance level marked, an error below it."""
    colour = "yellow" if health.chance_level else STATUS_COLOURS.get(health.status, "white")
    text = f"[{colour}]{escape(health.label)}[/]"
    return text + (f"\n[dim]{escape(error)}[/]" if error else "")


@app.command()
def show(
    run_ref: str = typer.Argument(..., metavar="RUN", help="Run id, unique id prefix, or name."),
    store: Path = StoreOption,
    measure: list[str] = typer.Option(
        None, "--measure", "-m", help="Measures to show (repeatable); default: the main ones."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="Trajectory map runs: figure file "
                             "(.png or .pdf; default next to the store, named after the run)."),
    score: str = typer.Option(None, help="Trajectory map runs: score of the colours."),
) -> None:
    """Print a run's latest measures per layer; redraw a trajectory map run's figure.

    A map run (from `learnscope run trajectories` or `learnscope project`) is redrawn from the
    store without refitting its projection.
    """
    from learnscope.health import assess_run
    from learnscope.trajectory.maps import has_map

    with _reading(store, "pass --store PATH") as s:
        try:
            info = s.run(run_ref)
            latest = s.latest(info["id"])
            is_map = has_map(s, info["id"])
            health = assess_run(s, info)
        except StoreError as error:
            _fail(str(error))
    if is_map:
        from learnscope.trajectory.cli import show_map

        show_map(store, info["id"], out=out, score=score)
        return
    measures = tuple(measure) if measure else SHOWN_MEASURES
    unknown = sorted(set(measures) - set(latest["measure"]))
    if measure and unknown:
        _fail(f"unknown measure(s) {unknown}; this run has: {sorted(set(latest['measure']))}")
    model_rows = latest[latest["layer_index"] < 0]
    summary = ", ".join(f"{r.measure} {_format(r.value)}" for r in model_rows.itertuples())
    console.print(f"[bold]{info['id']}[/] status {_status_text(health)}, last step "
                  f"{_or_none(info['last_step'])}" + (f"; {summary}" if summary else ""))
    if health.chance_level:
        console.print(f"[yellow]warning:[/] {escape(health.note)}; its measures describe a "
                      "network that learned nothing")
    if health.error:
        console.print(f"[red]error:[/] {escape(health.error)}")
    if latest.empty:
        what = "it failed before its first measurement" if health.status in ("failed",
                                                                             "diverged") \
            else "no measurements yet"
        console.print(f"{escape(info['id'])}: {what}.")
        return
    console.print(_measure_table(f"latest measures of {info['id']}", latest, measures))


def _or_none(value) -> str:
    return "-" if value is None else str(value)


STATUS_COLOURS = {"finished": "green", "running": "cyan", "failed": "red", "diverged": "red",
                  "interrupted": "yellow", "pending": "white"}


@app.command()
def status(
    experiment: str = typer.Argument(None, help="Experiment (preset) name; default: all."),
    store: Path = StoreOption,
) -> None:
    """How many runs of each experiment are done, running, failed or pending, with ETA.

    Planned runs are those named when the experiment was launched (`learnscope run PRESET` or
    `learnscope sweep PRESET`, with either backend: every run writes to the same store), with
    the settings of the latest launch: a run of that name with other settings does not count.
    With an EXPERIMENT, its runs are listed one by one as well, each with what launching the
    plan again would do (reuse, resume from step N, start fresh and why).
    """
    from learnscope.experiments.status import (
        PENDING,
        STATES,
        planned,
        planned_experiments,
        planned_identities,
        summarise,
    )
    from learnscope.health import CHANCE_MARGIN, assess_runs, short_error

    with _reading(store, "run an experiment first (learnscope run PRESET) or pass --store PATH"
                  ) as s:
        frame = s.runs()
        health = assess_runs(s, frame)
    known = list(dict.fromkeys(
        [e for e in frame["experiment"] if isinstance(e, str)] + planned_experiments(store)))
    if experiment is not None and experiment not in known:
        _fail(f"no experiment {experiment!r} in {store}; experiments there: "
              f"{', '.join(known) if known else 'none yet'}")
    chosen = [experiment] if experiment is not None else known
    if not chosen:
        console.print(f"The store {escape(str(store))} has no experiments yet.")
        return
    states = (*STATES, PENDING)
    table = Table(title=f"experiments in {escape(str(store))}", header_style="bold")
    table.add_column("experiment")
    table.add_column("planned", justify="right")
    for state in states:
        table.add_column(f"[{STATUS_COLOURS[state]}]{state}[/]", justify="right")
    table.add_column("ETA", justify="right")
    summaries = []
    for name in chosen:
        try:
            summary = summarise(frame, name, planned(store, name),
                                planned_identities(store, name))
        except ValueError as error:
            _fail(str(error))
        summaries.append(summary)
        table.add_row(escape(name), str(summary.planned),
                      *[str(summary.counts.get(state, 0)) for state in states],
                      format_duration(summary.eta_seconds))
    console.print(table)
    for summary in summaries:
        chance = [row["name"] for _, row in summary.runs.iterrows()
                  if health[row["id"]].chance_level]
        if chance:
            console.print(f"[yellow]{escape(summary.experiment)}: {len(chance)} finished run(s) "
                          f"at chance level[/] (final test accuracy at most 1/classes "
                          f"+ {100 * CHANCE_MARGIN:g} points): "
                          f"{escape(', '.join(chance))}")
    if experiment is None:
        return
    runs_of = summaries[0].runs
    detail = Table(title=f"runs of {escape(experiment)}", header_style="bold")
    for column in ("run", "id", "status", "progress", "ETA", "updated"):
        detail.add_column(column)
    for _, row in runs_of.iterrows():
        share = row["progress"]
        shown = "-" if share is None or math.isnan(share) else f"{100 * share:.0f}%"
        detail.add_row(escape(row["name"]), row["id"],
                       _status_text(health[row["id"]], short_error(row["error"])), shown,
                       format_duration(row["eta_seconds"]), str(row["updated_at"]))
    console.print(detail)
    _print_next_launch(store, planned(store, experiment), planned_identities(store, experiment))


def _print_next_launch(store: Path, names: list[str], identities: dict) -> None:
    """Per planned run with recorded settings: what launching the plan again would do."""
    from learnscope.experiments.identity import describe, fingerprint

    if not identities:
        return
    console.print("[bold]launched again[/] (the plan's latest settings):")
    with _reading(store, "pass --store PATH") as s:
        for name in names:
            if name in identities:
                claim = s.plan_run(name, fingerprint(identities[name]), identities[name])
                console.print(f"{escape(name)}: {escape(describe(claim))}", soft_wrap=True)


# Commands defined next to the feature they drive (each module imports its heavy parts lazily).
from learnscope.viz.cli import plot_app  # noqa: E402

app.add_typer(plot_app, name="plot")

from learnscope.dashboard.cli import dashboard_command  # noqa: E402

app.command("dashboard")(dashboard_command)

from learnscope.exports.cli import export_command  # noqa: E402

app.command("export")(export_command)

from learnscope.trajectory.cli import project_command  # noqa: E402

app.command("project")(project_command)


def main() -> None:
    """Entry point of the console script (and of `torchrun -m learnscope.cli`).

    Under torchrun each rank tears its process group down and ends explicitly
    (`distributed.run_and_end`): left to the interpreter's exit, gloo can abort a finished rank.
    Only rank 0 prints (other ranks print their errors, prefixed with their rank).
    """
    from learnscope import distributed

    # the ranks run the same command: rank 0 alone prints its tables, plans and summaries
    console.quiet = distributed.launch_rank() != 0
    distributed.run_and_end(app)


if __name__ == "__main__":
    main()
