"""`learnscope plot ...`: draw the paper's figures, or any measure of a run, into PNG/PDF files.

matplotlib is imported only when a command runs, so `import learnscope.cli` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from learnscope.defaults import DEFAULT_STORE
from learnscope.store import StoreError
from learnscope.viz.runs import FigureError

plot_app = typer.Typer(
    help="Draw the figures of the activation-pattern paper (figure1-4), heatmaps or curves "
    "of any measure of a run, the equi-separation law (equisep, equisep-dynamics) and weight "
    "trajectories (trajectories), from a run store, as PNG or PDF.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)

FORMATS = ("png", "pdf")

StoreOption = typer.Option(DEFAULT_STORE, "--store", "-s", help="Path of the SQLite run store.")
RunsArgument = typer.Argument(
    None, metavar="RUNS...", show_default=False,
    help="Runs: ids, unique id prefixes or names (the latest run of that name).",
)
ExperimentOption = typer.Option(
    None, "--experiment", "-e",
    help="Also draw every run of this experiment/preset (early, entropycurve, methods, "
    "quickstart), the latest run of each name.",
)
FormatOption = typer.Option(
    None, "--format", "-f",
    help="Comma-separated formats to write, e.g. png,pdf: one file per format, named like "
    "--out with that suffix.",
)
ProbeOption = typer.Option(
    None, "--probe", help="Probe to read when a run has several pattern probes "
    "(default: 'patterns').",
)
XOption = typer.Option("step", "--x", help="x axis: step or epoch.")


OutOptions = {
    name: typer.Option(None, "--out", "-o", show_default=False,
                       help=f"Output file, .png or .pdf (default {name}.png).")
    for name in ("figure1", "figure2", "figure3", "figure4", "heatmap", "curves", "equisep",
                 "equisep-dynamics", "trajectories")
}


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def _outputs(out: Path | None, formats: str | None, default: str) -> list[Path]:
    """The files to write, from --out and --format (checked before anything is drawn)."""
    if formats is None:
        path = out if out is not None else Path(f"{default}.png")
        if path.suffix.lower() not in tuple(f".{f}" for f in FORMATS):
            _fail(f"cannot write {path}: the suffix {path.suffix or '(none)'!r} is not a "
                  f"figure format; end --out in .png or .pdf, or pass --format png,pdf")
        return [path]
    chosen = [f.strip().lower().lstrip(".") for f in formats.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        _fail(f"unknown format(s) {', '.join(unknown) or '(none)'} in --format {formats!r}; "
              f"use any of {', '.join(FORMATS)}, e.g. --format png,pdf")
    base = out if out is not None else Path(default)
    if base.suffix.lower() in tuple(f".{f}" for f in FORMATS):
        base = base.with_suffix("")
    return [base.with_name(f"{base.name}.{f}") for f in dict.fromkeys(chosen)]


def _draw(store: Path, outputs: list[Path], make: Callable[[Any], Any]) -> None:
    """Draw the figure with `make(store_path)` and write it to every output path."""
    if not store.is_file():
        _fail(f"no run store at {store}; run an experiment first (e.g. `learnscope run "
              "quickstart`) or pass the path of an existing store with --store PATH")
    from learnscope.viz import figures

    try:
        figure = make(store)
        for path in outputs:
            figures.save(figure, path)
            console.print(f"wrote {escape(str(path))}")
    except (FigureError, StoreError) as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"cannot write the figure: {error}; choose another --out PATH")


def _runs_or_fail(runs: list[str] | None, experiment: str | None) -> list[str]:
    if not runs and experiment is None:
        _fail("no runs given: name one or more runs (id, id prefix or name; see `learnscope "
              "runs`) or pass --experiment NAME (e.g. early, entropycurve, methods)")
    return list(runs or [])


@plot_app.command("figure1")
def figure1_command(
    runs: list[str] = RunsArgument,
    experiment: str = ExperimentOption,
    store: Path = StoreOption,
    out: Path = OutOptions["figure1"],
    formats: str = FormatOption,
    probe: str = ProbeOption,
) -> None:
    """Figure 1: early training of each run, last and first activation layer (preset `early`).

    Panels per run and layer: (A) distinct patterns / their maximum, (B) change of the number of
    distinct patterns (clipped), (C) share of the most frequent pattern, (D) relative entropy,
    (E) weighted Jaccard similarity to the initial network; x = training step.
    """
    refs = _runs_or_fail(runs, experiment)
    outputs = _outputs(out, formats, "figure1")
    from learnscope.viz.figures import figure1

    _draw(store, outputs, lambda s: figure1(s, refs, experiment=experiment, probe=probe))


@plot_app.command("figure2")
def figure2_command(
    runs: list[str] = RunsArgument,
    experiment: str = ExperimentOption,
    store: Path = StoreOption,
    out: Path = OutOptions["figure2"],
    formats: str = FormatOption,
    measure: str = typer.Option("rel_entropy", "--measure", "-m", help="Measure per layer."),
    probe: str = ProbeOption,
) -> None:
    """Figure 2: mean relative entropy per layer over seeds, +-1 s.d. (preset `entropycurve`).

    Columns: model families; rows: the k-th measured step of every run; one colour per depth.
    """
    refs = _runs_or_fail(runs, experiment)
    outputs = _outputs(out, formats, "figure2")
    from learnscope.viz.figures import figure2

    _draw(store, outputs, lambda s: figure2(s, refs, experiment=experiment, measure=measure,
                                            probe=probe))


@plot_app.command("figure3")
def figure3_command(
    runs: list[str] = RunsArgument,
    experiment: str = ExperimentOption,
    store: Path = StoreOption,
    out: Path = OutOptions["figure3"],
    formats: str = FormatOption,
    probe: str = ProbeOption,
) -> None:
    """Figure 3: layer x epoch heatmaps per method (preset `methods`).

    Rows: relative entropy, weighted Jaccard to the final network, hash-list occupancy (or, in
    exact mode, patterns per evaluation); one colour scale per row.
    """
    refs = _runs_or_fail(runs, experiment)
    outputs = _outputs(out, formats, "figure3")
    from learnscope.viz.figures import figure3

    _draw(store, outputs, lambda s: figure3(s, refs, experiment=experiment, probe=probe))


@plot_app.command("figure4")
def figure4_command(
    runs: list[str] = RunsArgument,
    experiment: str = ExperimentOption,
    store: Path = StoreOption,
    out: Path = OutOptions["figure4"],
    formats: str = FormatOption,
    probe: str = ProbeOption,
) -> None:
    """Figure 4: the five measures of Figure 1 over the whole training, every layer.

    One row per run, one line per layer coloured by depth (preset `methods`).
    """
    refs = _runs_or_fail(runs, experiment)
    outputs = _outputs(out, formats, "figure4")
    from learnscope.viz.figures import figure4

    _draw(store, outputs, lambda s: figure4(s, refs, experiment=experiment, probe=probe))


MeasureOption = typer.Option(..., "--measure", "-m", show_default=False,
                             help="Measure to draw, e.g. rel_entropy (see `learnscope show RUN`).")
RunArgument = typer.Argument(..., metavar="RUN", show_default=False,
                             help="Run id, unique id prefix, or name.")


@plot_app.command("heatmap")
def heatmap_command(
    run: str = RunArgument,
    measure: str = MeasureOption,
    store: Path = StoreOption,
    out: Path = OutOptions["heatmap"],
    formats: str = FormatOption,
    x: str = XOption,
    probe: str = ProbeOption,
) -> None:
    """Heatmap of one measure of one run: activation layer x step, with a colour bar."""
    outputs = _outputs(out, formats, "heatmap")
    from learnscope.viz.figures import heatmap

    _draw(store, outputs, lambda s: heatmap(s, run, measure, x=x, probe=probe))


@plot_app.command("curves")
def curves_command(
    run: str = RunArgument,
    measure: str = MeasureOption,
    store: Path = StoreOption,
    out: Path = OutOptions["curves"],
    formats: str = FormatOption,
    x: str = XOption,
    probe: str = ProbeOption,
) -> None:
    """One measure of one run over steps, a line per layer coloured by depth (colour bar)."""
    outputs = _outputs(out, formats, "curves")
    from learnscope.viz.figures import curves

    _draw(store, outputs, lambda s: curves(s, run, measure, x=x, probe=probe))


SeparationProbeOption = typer.Option(
    "separation", "--probe", help="Name of the separation probe whose rows to draw."
)


@plot_app.command("equisep")
def equisep_command(
    runs: list[str] = typer.Argument(..., metavar="RUN...", show_default=False,
                                     help="Run id, unique id prefix, or name; several runs "
                                     "are drawn in one plot."),
    step: int = typer.Option(None, "--step", help="Measured step to draw (default: the last "
                             "of each run)."),
    store: Path = StoreOption,
    out: Path = OutOptions["equisep"],
    formats: str = FormatOption,
    probe: str = SeparationProbeOption,
    fit_from_input: bool = typer.Option(False, "--fit-from-input", help="Refit the law over "
                                        "the input and every layer (l >= 0, as the reference's "
                                        "code does) instead of drawing the stored fit."),
) -> None:
    """Equi-separation law: fuzziness D_l (log scale) per layer l at one step, with the fit.

    Markers: D_l of the input (l = 0) and of every layer; dashed line: the stored fit over its
    layer range, labelled with the decay ratio rho and Pearson r (preset `equisep`, or any run
    with the ls.Separation probe); with --fit-from-input, the fit over l = 0..L instead.
    """
    outputs = _outputs(out, formats, "equisep")
    from learnscope.viz.separation import equisep

    first = 0 if fit_from_input else None
    _draw(store, outputs, lambda s: equisep(s, runs, step=step, probe=probe, fit_first=first))


@plot_app.command("equisep-dynamics")
def equisep_dynamics_command(
    run: str = RunArgument,
    store: Path = StoreOption,
    out: Path = OutOptions["equisep-dynamics"],
    formats: str = FormatOption,
    x: str = typer.Option("auto", "--x", help="x axis: auto (epoch where known, else step), "
                          "step or epoch."),
    probe: str = SeparationProbeOption,
) -> None:
    """Separation over training: D_l per layer (log y), Pearson r and rho of the fit."""
    outputs = _outputs(out, formats, "equisep-dynamics")
    from learnscope.viz.separation import equisep_dynamics

    _draw(store, outputs, lambda s: equisep_dynamics(s, run, probe=probe, x=x))


@plot_app.command("trajectories")
def trajectories_command(
    run: str = RunArgument,
    store: Path = StoreOption,
    out: Path = OutOptions["trajectories"],
    formats: str = FormatOption,
    score: str = typer.Option(None, "--score", help="Score that shades the snapshots, e.g. "
                              "test_accuracy (default: the map's chosen score, else the "
                              "landscape's, else the first)."),
    no_landscape: bool = typer.Option(False, "--no-landscape",
                                      help="Leave out the score landscape under the lines."),
) -> None:
    """Weight trajectories of a run's trajectory map, in the projected plane.

    One line per network (networks of a group share a colour family and line style), the
    snapshots shaded by a score, start (circle) and end (star), over the score landscape when
    the map has one. The map comes from `learnscope run trajectories` or `learnscope
    project RUN...`.
    """
    outputs = _outputs(out, formats, "trajectories")
    from learnscope.viz.trajectories import trajectory_figure_from_store

    _draw(store, outputs, lambda s: trajectory_figure_from_store(
        s, run, score=score, landscape=not no_landscape))
