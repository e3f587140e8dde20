"""`learnscope export`: write a run's values as CSV, Parquet or TensorBoard event files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from learnscope.cli.options import StoreOption
from learnscope.cli.output import console, fail, open_for_reading

FORMAT_HELP = "csv|parquet|tensorboard"
SUFFIXES = {"csv": ".csv", "parquet": ".parquet"}
EXTRAS = {
    "parquet": ("pyarrow", "Parquet export"),
    "tensorboard": ("tensorboard", "TensorBoard export"),
}


def default_destination(fmt: str, run_id: str) -> Path:
    """`<run id>.csv`, `<run id>.parquet`, or `tb/<run id>` (relative to the working folder)."""
    return Path("tb") / run_id if fmt == "tensorboard" else Path(run_id + SUFFIXES[fmt])


def export_command(
    run_ref: str = typer.Argument(..., metavar="RUN", help="Run id, unique id prefix, or name."),
    format: str = typer.Option("csv", "--format", "-f", help=FORMAT_HELP),
    out: Path = typer.Option(
        None, "--out", "-o",
        help="Destination file (csv, parquet) or folder (tensorboard); default <run id>.csv, "
        "<run id>.parquet or tb/<run id>.",
    ),
    store: Path = StoreOption,
    measure: list[str] = typer.Option(
        None, "--measure", "-m", help="Export only these measures (repeatable); default: all."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing destination."),
) -> None:
    """Export a run's values: a long-form table (CSV, Parquet) or TensorBoard event files.

    Tables: one row per value. TensorBoard: one scalar series per probe, layer and measure.
    """
    from learnscope.exports._common import require
    from learnscope.exports.tables import frame_of, write_frame
    from learnscope.exports.tensorboard import write_run
    from learnscope.store import StoreError

    fmt = format.strip().lower()
    if fmt not in ("csv", "parquet", "tensorboard"):
        fail(f"unknown format {format!r}; use one of: {FORMAT_HELP.replace('|', ', ')}")
    if fmt in EXTRAS:
        try:
            require(*EXTRAS[fmt], extra=fmt)
        except ImportError as error:
            fail(str(error))
    if not store.is_file():
        fail(f"no store at {store}; pass --store PATH")
    measures = list(measure) if measure else None
    try:
        with open_for_reading(store) as s:
            record = s.run(run_ref)
            dest = out if out is not None else default_destination(fmt, record["id"])
            frame = frame_of(s, [record], measures, None, None)
            if fmt == "tensorboard":
                series = write_run(frame, record, dest, force)
            else:
                write_frame(frame, dest, fmt, force)
    except (StoreError, ValueError, ImportError, OSError) as error:
        fail(str(error))
    what = f"{series} scalar series" if fmt == "tensorboard" else f"{len(frame):,} rows"
    console.print(f"Exported {what} of run {escape(record['id'])} to {escape(str(dest))}")
    if fmt == "tensorboard":
        console.print(f"View them with: tensorboard --logdir {escape(str(dest.parent))}")
