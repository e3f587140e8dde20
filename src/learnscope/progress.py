"""Progress of long jobs: a rich bar with ETA on a terminal, plain periodic lines elsewhere.

Every long job of learnscope (training, a measurement pass, a figure over many runs, a sweep)
reports through :func:`progress`::

    with progress() as report:
        task = report.task("train resnet20", total=3000)
        for step in range(3000):
            ...
            task.update(completed=step + 1)

On a terminal this draws a rich progress bar with elapsed time and ETA. When standard error is
not a terminal (CI, a log file, a pipe) it prints one plain line per task every ``interval``
seconds and when the task finishes, e.g.::

    train resnet20: 1200/3000 (40%), 0:00:31 elapsed, ETA 0:00:47

The mode can be forced with the environment variable ``LEARNSCOPE_PROGRESS`` = ``bar``,
``plain`` or ``off``.

Library code deep inside a job (e.g. a measurement pass) reports into the display of the job that
runs it, if any, through :func:`current`; it shows nothing when no display is active. Such inner
tasks are *transient*: their bar disappears when they finish, and in plain mode they print only
when they last longer than ``interval`` (so a measurement every step does not flood a log).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from learnscope.engine import observers

T = TypeVar("T")
MODES = ("bar", "plain", "off")
DEFAULT_INTERVAL = 10.0  # seconds between two plain lines of one task


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` (``D days, H:MM:SS`` past a day); ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0 or seconds == float("inf"):
        return "-"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {clock}" if days else clock


def resolve_mode(mode: str | None = None, stream: TextIO | None = None) -> str:
    """The progress mode: ``mode`` if given, else ``$LEARNSCOPE_PROGRESS``, else by terminal.

    Under torchrun every rank other than 0 shows nothing (``off``): rank 0 reports the shared job.
    """
    from learnscope.distributed import launch_rank

    chosen = mode or os.environ.get("LEARNSCOPE_PROGRESS") or None
    if chosen is None:
        stream = stream if stream is not None else sys.stderr
        chosen = "bar" if getattr(stream, "isatty", lambda: False)() else "plain"
    elif chosen not in MODES:
        raise ValueError(
            f"unknown progress mode {chosen!r} (from LEARNSCOPE_PROGRESS or the mode argument); "
            f"use one of {', '.join(MODES)}"
        )
    return "off" if launch_rank() != 0 else chosen


class Task:
    """One job's progress; update it with completed or advanced units, rename, finish."""

    def __init__(self, reporter: Reporter, description: str, total: float | None,
                 transient: bool = False) -> None:
        self._reporter = reporter
        self.description = description
        self.total = total
        self.transient = transient
        self._printed = False
        self.completed = 0.0
        self.started = time.monotonic()
        self.finished = False
        self._last_line = self.started
        self._rich_id = reporter._add_rich(self)

    def update(
        self,
        completed: float | None = None,
        *,
        total: float | None = None,
        advance: float | None = None,
        description: str | None = None,
    ) -> None:
        """Set ``completed`` (or add ``advance``); optionally a new ``total`` or ``description``."""
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        if completed is not None:
            self.completed = float(completed)
        if advance is not None:
            self.completed += float(advance)
        self._reporter._changed(self)

    def advance(self, amount: float = 1) -> None:
        """Add ``amount`` completed units."""
        self.update(advance=amount)

    def finish(self) -> None:
        """Mark the task done (its last plain line is printed once)."""
        if not self.finished:
            self.finished = True
            self._reporter._changed(self, final=True)

    def eta_seconds(self) -> float | None:
        """Seconds left at the average rate so far; None before any progress or without total."""
        elapsed = time.monotonic() - self.started
        if not self.total or self.completed <= 0 or elapsed <= 0:
            return None
        rate = self.completed / elapsed
        return max(self.total - self.completed, 0.0) / rate

    def line(self) -> str:
        """The plain-text status line of this task."""
        elapsed = format_duration(time.monotonic() - self.started)
        done = f"{self.completed:,.0f}"
        if self.total:
            share = 100.0 * self.completed / self.total
            text = f"{done}/{self.total:,.0f} ({share:.0f}%), {elapsed} elapsed"
            text += ", done" if self.finished else f", ETA {format_duration(self.eta_seconds())}"
        else:
            text = f"{done}, {elapsed} elapsed" + (", done" if self.finished else "")
        return f"{self.description}: {text}"


class Reporter:
    """Owns the tasks of one display; use through :func:`progress`."""

    def __init__(self, mode: str, *, console: Console | None, stream: TextIO,
                 interval: float) -> None:
        self.mode = mode
        self.stream = stream
        self.interval = interval
        self.tasks: list[Task] = []
        self._rich: Progress | None = None
        if mode == "bar":
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
            self._rich = Progress(*columns, console=console or Console(stderr=True),
                                  transient=False)

    def task(self, description: str, total: float | None = None, *,
             transient: bool = False) -> Task:
        """Start a task; ``total`` may be None (unknown) and set later with ``update``.

        A ``transient`` task's bar is removed when it finishes, and in plain mode it prints only
        if it runs longer than the interval.
        """
        task = Task(self, description, total, transient)
        self.tasks.append(task)
        return task

    def track(self, items: Iterable[T], description: str,
              total: float | None = None) -> Iterator[T]:
        """Iterate over ``items``, advancing a task per item."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        task = self.task(description, total)
        for item in items:
            yield item
            task.advance()
        task.finish()

    def pass_task(self, description: str, total: float | None) -> Task:
        """A transient task for one measurement pass (the engine's observer interface)."""
        return self.task(description, total, transient=True)

    def _add_rich(self, task: Task) -> int | None:
        if self._rich is None:
            return None
        return self._rich.add_task(task.description, total=task.total)

    def _changed(self, task: Task, final: bool = False) -> None:
        if self._rich is not None and task._rich_id is not None:
            if final and task.transient:
                self._rich.remove_task(task._rich_id)
                task._rich_id = None
            else:
                self._rich.update(task._rich_id, completed=task.completed, total=task.total,
                                  description=task.description)
            return
        if self.mode != "plain":
            return
        now = time.monotonic()
        if final and task.transient and not task._printed:
            return
        if final or now - task._last_line >= self.interval:
            task._last_line = now
            task._printed = True
            print(task.line(), file=self.stream, flush=True)

    def __enter__(self) -> Reporter:
        if self._rich is not None:
            self._rich.start()
        _ACTIVE.append(self)
        observers.register(self.pass_task)  # measurement passes report here (engine.observers)
        return self

    def __exit__(self, *exc_info: object) -> None:
        observers.remove(self.pass_task)
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._rich is not None:
            self._rich.stop()


_ACTIVE: list[Reporter] = []


def current() -> Reporter | None:
    """The innermost active display (a :func:`progress` block), or None outside any."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextmanager
def progress(
    mode: str | None = None,
    *,
    console: Console | None = None,
    stream: TextIO | None = None,
    interval: float = DEFAULT_INTERVAL,
) -> Iterator[Reporter]:
    """A progress display for the duration of a ``with`` block (see the module docstring).

    Args:
        mode: ``bar``, ``plain`` or ``off``; default from ``LEARNSCOPE_PROGRESS``, else ``bar``
            when ``stream`` is a terminal and ``plain`` otherwise.
        console: rich console of the bar (default: one on standard error).
        stream: where plain lines go (default: standard error).
        interval: seconds between two plain lines of a task (its final line always prints).
    """
    stream = stream if stream is not None else sys.stderr
    reporter = Reporter(resolve_mode(mode, stream), console=console, stream=stream,
                        interval=interval)
    with reporter:
        yield reporter
