"""When to measure: schedules are predicates on the global training step.

    every(100) | at([0, 8, 40])      # steps 0, 8, 40, 100, 200, ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable


class Schedule(ABC):
    """A set of training steps at which to measure; combine schedules with `|`."""

    @abstractmethod
    def __call__(self, step: int) -> bool:
        """Whether to measure at global step `step`."""

    def __or__(self, other: Schedule) -> Schedule:
        if not isinstance(other, Schedule):
            return NotImplemented
        return Union(self, other)

    def steps_until(self, total: int) -> list[int]:
        """The steps in [0, total) at which the schedule fires."""
        return [s for s in range(total) if self(s)]


class Every(Schedule):
    """Fires at start, start + k, start + 2k, ..."""

    def __init__(self, k: int, start: int = 0) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"every(k) needs an integer k >= 1, got {k!r}")
        if not isinstance(start, int) or start < 0:
            raise ValueError(f"every(k, start) needs an integer start >= 0, got {start!r}")
        self.k, self.start = k, start

    def __call__(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.k == 0

    def __repr__(self) -> str:
        return f"every({self.k})" if self.start == 0 else f"every({self.k}, start={self.start})"


class At(Schedule):
    """Fires at the listed steps."""

    def __init__(self, steps: Iterable[int]) -> None:
        steps = list(steps)
        bad = [s for s in steps if not isinstance(s, int) or isinstance(s, bool) or s < 0]
        if bad:
            raise ValueError(f"at([...]) needs integer steps >= 0, got {bad}")
        self.steps = frozenset(steps)

    def __call__(self, step: int) -> bool:
        return step in self.steps

    def __repr__(self) -> str:
        return f"at({sorted(self.steps)})"


class Union(Schedule):
    """Fires when any of its parts fires."""

    def __init__(self, *parts: Schedule) -> None:
        self.parts = parts

    def __call__(self, step: int) -> bool:
        return any(part(step) for part in self.parts)

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.parts)


def every(k: int, start: int = 0) -> Every:
    """Measure every k steps, from `start` (default 0) on."""
    return Every(k, start)


def at(steps: Iterable[int]) -> At:
    """Measure at exactly these steps."""
    return At(steps)
