"""Command-line parts of weight trajectories: `learnscope run trajectories`, `learnscope project`,
and the map view of `learnscope show RUN`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from learnscope.cli.options import StoreOption
from learnscope.cli.output import check_store, console, fail, format_value, reading


def run_trajectories(store: Path, *, dry_run: bool, **options: Any) -> None:
    """`learnscope run trajectories`: train the networks, project, save the map, draw it."""
    from learnscope.experiments.status import record_plan
    from learnscope.experiments.trajectories import (
        EXPERIMENT,
        TASKS,
        map_name,
        plan,
        run_experiment,
        settings_from,
    )
    from learnscope.progress import progress

    try:
        settings = settings_from(**options)
    except (TypeError, ValueError) as error:
        fail(str(error))
    networks = plan(settings)
    table = Table(title=f"trajectories: {len(networks)} networks, projection "
                  f"{settings.projection} (fit on {settings.fit_on})", header_style="bold")
    for column in ("run", "group", "seed", "starts from", "trains on"):
        table.add_column(column)
    for network in networks:
        start = (f"{settings.pretrain} ({settings.pretrain_iterations} epochs)"
                 if network.group == "pretrained" else "random init")
        table.add_row(network.name, network.group, str(network.seed), start,
                      f"{settings.train_on} ({settings.iterations} epochs)")
    console.print(table)
    tasks = ", ".join(f"{key} = {TASKS[key]}" for key in dict.fromkeys(
        [settings.train_on] + ([settings.pretrain] if "pretrained" in settings.groups() else [])))
    console.print(f"snapshots every {settings.snapshot_every} updates of {settings.track}; "
                  f"map run {map_name(settings)}; tasks: {escape(tasks)}")
    if dry_run:
        return
    check_store(store)
    record_plan(store, EXPERIMENT, [n.name for n in networks])

    def report(network: Any, run_id: str, status: str) -> None:
        console.print(f"{network.name}: {status} ({run_id})")

    try:
        with progress():
            map_ids = run_experiment(settings, store, on_network=report)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        fail(str(error))
    for map_id in map_ids:
        show_map(store, map_id)


def show_map(store: Path, run_ref: str, out: Path | None = None, score: str | None = None,
             landscape: bool = True) -> Path:
    """Redraw a map run from the store (no refitting): a table of networks and a PNG/PDF."""
    from learnscope.trajectory.maps import load_map
    from learnscope.viz.figures import save
    from learnscope.viz.trajectories import trajectory_figure

    with reading(store, "pass --store PATH") as s:
        info = s.run(run_ref)
        tmap = load_map(s, info["id"])
    score = score or tmap.meta.get("score") or next(iter(tmap.scores), None)
    table = Table(title=f"{info['id']} {escape(info['name'])}: {escape(tmap.projection)}, "
                  f"trajectory {escape(tmap.trajectory)}", header_style="bold")
    for column in ("network", "group", "snapshots", "steps", f"first {score}",
                   f"last {score}"):
        table.add_column(column)
    values = tmap.scores.get(score) if score else None
    for i, network in enumerate(tmap.networks):
        steps = tmap.steps[i]
        first = last = "-"
        if values is not None:
            first, last = format_value(float(values[i][0])), format_value(float(values[i][-1]))
        table.add_row(escape(network), tmap.groups[i] or "-", str(len(steps)),
                      f"{steps[0]}..{steps[-1]}", first, last)
    console.print(table)
    path = Path(out) if out is not None else Path(store).parent / f"{info['name']}.png"
    figure = trajectory_figure(tmap, score=score, landscape=landscape)
    written = save(figure, path)
    console.print(f"figure: {escape(str(written))}")
    return written


def project_command(
    runs: list[str] = typer.Argument(..., metavar="RUNS...", help="Network runs: ids, id "
                                     "prefixes or names; the first is 'first' for --fit-on."),
    store: Path = StoreOption,
    projection: str = typer.Option("autoencoder", help="pca, autoencoder, som, "
                                   "autoencoder-som, autoencoder-tsne, tsne, umap."),
    fit_on: str = typer.Option("all", help="Fit on 'all' networks or the 'first' only."),
    trajectory: str = typer.Option(None, help="Which stored trajectory (default: the only one)."),
    landscape: str = typer.Option("interpolate", help="interpolate or none."),
    resolution: int = typer.Option(40, help="Landscape grid points per axis."),
    score: str = typer.Option("test_accuracy", help="Score of the colours and the landscape."),
    seed: int = typer.Option(0, help="Random state of the projection."),
    name: str = typer.Option(None, help="Name of the new map run."),
    out: Path = typer.Option(None, "--out", "-o", help="Figure file (.png or .pdf)."),
) -> None:
    """Project the weight snapshots of stored runs to 2-D, as a new map run (no training)."""
    from learnscope.experiments.trajectories import project_runs

    if fit_on not in ("all", "first"):
        fail(f"--fit-on must be 'all' or 'first', got {fit_on!r}")
    if not store.exists():
        fail(f"no store at {store}; pass --store PATH")
    try:
        run_id = project_runs(store, runs, name=name, projection=projection, fit_on=fit_on,
                              trajectory=trajectory, landscape=landscape,
                              resolution=resolution, score=score, random_state=seed)
    except (ValueError, TypeError, KeyError, ImportError) as error:
        fail(str(error))
    except Exception as error:  # StoreError and friends: one line, no traceback
        from learnscope.store import StoreError

        if isinstance(error, StoreError):
            fail(str(error))
        raise
    console.print(f"map run {run_id}")
    show_map(store, run_id, out=out, score=score)
