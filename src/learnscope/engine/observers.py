"""Who watches measurement passes: progress without the engine knowing any display.

A pass reports its progress to the innermost registered *observer*, a callable
``observer(description, total) -> task`` whose task has ``advance(samples)`` and ``finish()``.
The job's display (`learnscope.progress`) registers one while it is active; with none registered
a pass reports nothing. This module imports nothing, so any layer may register an observer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class PassTask(Protocol):
    """What an observer returns for one pass: told of the samples done, then finished."""

    def advance(self, amount: float = 1) -> None: ...

    def finish(self) -> None: ...


Observer = Callable[[str, Any], PassTask]

_OBSERVERS: list[Observer] = []


def register(observer: Observer) -> None:
    """Make `observer` the innermost one: passes report to it until it is removed."""
    _OBSERVERS.append(observer)


def remove(observer: Observer) -> None:
    """Stop reporting to `observer` (no error if it is not registered)."""
    if observer in _OBSERVERS:
        _OBSERVERS.remove(observer)


def current() -> Observer | None:
    """The innermost registered observer, or None."""
    return _OBSERVERS[-1] if _OBSERVERS else None
