"""A preset's runs on the command line, shared by `run` and `sweep`: expanded with the
command line's overrides, listed as a table, planned (reused, resumed or fresh), and the
threads they train with."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from learnscope.cli.output import checked, console, fail
from learnscope.store import StoreError
from learnscope.threads import decide_threads, use_threads


def set_threads(threads: int | None, *, dry_run: bool) -> None:
    """Set torch's (and BLAS's) threads for this run (a dry run only says what it would set);
    called once every value is checked, so a refusal is the command's only line."""
    chosen = (decide_threads if dry_run else use_threads)(threads)
    console.print(f"threads: {chosen.threads} ({escape(chosen.reason)}; set with --threads)")



def expand_preset(name: str, scale: str, *, device: str | None = None,
                   **options: str | int | float | bool | None) -> list:
    """The RunSpecs of preset `name` with the command line's overrides (shared by run, sweep).

    options: the raw values of epochs, steps, dataset, schedule, per_class, imbalance, every,
    download, and seeds, models, depths, optimizers, blocks (comma-separated text); None means
    the preset's setting. Every value is checked first (experiments.validation).
    """
    from learnscope.experiments import validation
    from learnscope.experiments.presets import expand

    download = bool(options.pop("download", False))
    overrides = checked(validation.preset_options, name, scale, **options)
    if device is not None:
        overrides["device"] = device
    try:
        specs = expand(name, scale, **overrides)
    except ValueError as error:
        fail(str(error))
    checked(validation.runs_fit, name, specs, models=overrides.get("models"),
             download=download)
    return specs


def print_plan(specs: list, store: Path, *, rerun: bool) -> None:
    """One line per run: reused, resumed (from which step) or started fresh, and why."""
    from learnscope.experiments.identity import describe
    from learnscope.experiments.presets import plan

    try:
        planned = plan(specs, store, rerun=rerun)
    except (StoreError, ValueError) as error:
        fail(str(error))
    for spec, claim in planned:
        console.print(f"{escape(spec.name)}: {escape(describe(claim))}", soft_wrap=True)


def print_runs(name: str, scale: str, specs: list, *, dry_run: bool) -> None:
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
