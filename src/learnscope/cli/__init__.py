"""The `learnscope` command line: run presets, list runs, show a run's measures.

One module per job: `options` (the options `run` and `sweep` share, declared once), `output`
(console, one-line errors, tables, reading the store), `run`, `sweep`, `preset_runs` (what the
two share), `runs` (runs, show, status), `export`, `trajectories` (run trajectories, project);
`plot` and `dashboard` are defined in learnscope.viz.cli and learnscope.dashboard.cli. Nothing
here imports torch until a command needs it.
"""

from __future__ import annotations

import logging
import os

import typer

from learnscope import __version__
from learnscope.cli.export import export_command
from learnscope.cli.options import EXTRA_ARGS, PRESETS
from learnscope.cli.output import console, fail, open_for_reading
from learnscope.cli.run import run
from learnscope.cli.runs import runs, show, status
from learnscope.cli.sweep import sweep_command
from learnscope.cli.trajectories import project_command
from learnscope.dashboard.cli import dashboard_command
from learnscope.viz.cli import plot_app

__all__ = ["PRESETS", "app", "console", "main", "open_for_reading"]

app = typer.Typer(
    help="learnscope: watch what happens inside a network while it trains.",
    no_args_is_help=True,
    add_completion=False,
)

# named, not __name__: under `python -m learnscope.cli` that is "__main__"
log = logging.getLogger("learnscope.cli")


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
        fail(str(error))
    log.debug("learnscope %s: command %s", __version__, ctx.invoked_subcommand)


# in the order of `learnscope --help`
app.command(context_settings=EXTRA_ARGS)(run)
app.command("sweep", context_settings=EXTRA_ARGS)(sweep_command)
app.command()(runs)
app.command()(show)
app.command()(status)
app.add_typer(plot_app, name="plot")
app.command("dashboard")(dashboard_command)
app.command("export")(export_command)
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
