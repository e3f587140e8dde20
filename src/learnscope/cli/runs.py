"""Reading the store: `learnscope runs` (every run), `show` (one run's latest measures or
its trajectory map) and `status` (each experiment's progress against its plan)."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from learnscope.cli.options import StoreOption
from learnscope.cli.output import (
    SHOWN_MEASURES,
    STATUS_COLOURS,
    console,
    fail,
    format_value,
    measure_table,
    reading,
    status_text,
)
from learnscope.progress import format_duration
from learnscope.store import StoreError


def runs(store: Path = StoreOption) -> None:
    """List the runs in the store with status and progress.

    A finished run whose final test accuracy is at chance level shows as
    ``finished (chance-level)``; a failed run shows the last line of its stored error.
    """
    from learnscope.health import assess_runs, short_error

    with reading(store, "run `learnscope run quickstart` first or pass --store PATH") as s:
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
                      status_text(health[row["id"]], short_error(row["error"])), shown,
                      format_duration(row["eta_seconds"]), str(row["measurements"]),
                      str(row["updated_at"]))
    console.print(table)



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

    with reading(store, "pass --store PATH") as s:
        try:
            info = s.run(run_ref)
            latest = s.latest(info["id"])
            is_map = has_map(s, info["id"])
            health = assess_run(s, info)
        except StoreError as error:
            fail(str(error))
    if is_map:
        from learnscope.cli.trajectories import show_map

        show_map(store, info["id"], out=out, score=score)
        return
    measures = tuple(measure) if measure else SHOWN_MEASURES
    unknown = sorted(set(measures) - set(latest["measure"]))
    if measure and unknown:
        fail(f"unknown measure(s) {unknown}; this run has: {sorted(set(latest['measure']))}")
    model_rows = latest[latest["layer_index"] < 0]
    summary = ", ".join(f"{r.measure} {format_value(r.value)}" for r in model_rows.itertuples())
    console.print(f"[bold]{info['id']}[/] status {status_text(health)}, last step "
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
    console.print(measure_table(f"latest measures of {info['id']}", latest, measures))


def _or_none(value) -> str:
    return "-" if value is None else str(value)



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

    with reading(store, "run an experiment first (learnscope run PRESET) or pass --store PATH"
                  ) as s:
        frame = s.runs()
        health = assess_runs(s, frame)
    known = list(dict.fromkeys(
        [e for e in frame["experiment"] if isinstance(e, str)] + planned_experiments(store)))
    if experiment is not None and experiment not in known:
        fail(f"no experiment {experiment!r} in {store}; experiments there: "
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
            fail(str(error))
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
                       status_text(health[row["id"]], short_error(row["error"])), shown,
                       format_duration(row["eta_seconds"]), str(row["updated_at"]))
    console.print(detail)
    _print_next_launch(store, planned(store, experiment), planned_identities(store, experiment))


def _print_next_launch(store: Path, names: list[str], identities: dict) -> None:
    """Per planned run with recorded settings: what launching the plan again would do."""
    from learnscope.experiments.identity import describe, fingerprint

    if not identities:
        return
    console.print("[bold]launched again[/] (the plan's latest settings):")
    with reading(store, "pass --store PATH") as s:
        for name in names:
            if name in identities:
                claim = s.plan_run(name, fingerprint(identities[name]), identities[name])
                console.print(f"{escape(name)}: {escape(describe(claim))}", soft_wrap=True)
