"""What every command prints with: the console, one-line errors, measure tables, and opening a
store for reading with a clean error."""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from learnscope.store import Store, StoreError
from learnscope.store import open as open_store

# Not a terminal (CI, logs, pipes): use a wide fixed width so tables are not truncated.
console = Console(width=None if sys.stdout.isatty() else 160)

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
STATUS_COLOURS = {"finished": "green", "running": "cyan", "failed": "red", "diverged": "red",
                  "interrupted": "yellow", "pending": "white"}


def fail(message: str) -> None:
    """Print `error: message` (one line, no traceback) and end the command with exit code 2."""
    if console.quiet:  # a torchrun rank other than 0: its errors still show, marked with it
        from learnscope.distributed import launch_rank

        print(f"rank {launch_rank()}: error: {message}", file=sys.stderr, flush=True)
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code=2)


def checked(check, *args, **options):
    """check(*args, **options), a one-line error for a value the command line cannot use."""
    from learnscope.experiments.validation import UsageError

    try:
        return check(*args, **options)
    except UsageError as error:
        fail(str(error))


def format_value(value: float) -> str:
    """A measure's value for a table cell: '-' when missing, integers with separators."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


def measure_table(title: str, latest, measures: tuple[str, ...]) -> Table:
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
        table.add_row(str(index), escape(layer),
                      *[format_value(row.get(m, math.nan)) for m in present])
    table.caption = ", ".join(f"{HEADERS[m]} = {m}" for m in present if m in HEADERS)
    return table


def status_text(health, error: str = "") -> str:
    """A run's status for a table cell: coloured, chance level marked, an error below it."""
    colour = "yellow" if health.chance_level else STATUS_COLOURS.get(health.status, "white")
    text = f"[{colour}]{escape(health.label)}[/]"
    return text + (f"\n[dim]{escape(error)}[/]" if error else "")


def open_for_reading(store: Path) -> Store:
    """`store` opened read-only; a note (not a Python warning) when SQLite reads it immutable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the notice is printed below instead
        opened = open_store(store, read_only=True)
    if opened.notice:
        console.print(f"[yellow]note:[/] {escape(opened.notice)}.", soft_wrap=True)
    return opened


@contextmanager
def reading(store: Path, todo: str) -> Iterator[Store]:
    """The store at `store` opened read-only; a clean error when it is missing or unusable."""
    if not store.exists():
        fail(f"no store at {store}; {todo}")
    try:
        opened = open_for_reading(store)
    except StoreError as error:
        fail(str(error))
    with opened:
        yield opened


def check_store(store: Path) -> None:
    """Fail early, before training, on an unusable store path."""
    try:
        open_store(store).close()
    except StoreError as error:
        fail(str(error))
