"""When to measure: schedules are predicates on the global training step.

A step counts optimizer updates done: step 0 is the initial network, step s the network after s
updates, and the last step of a run of T updates is T.

    every(100) | at([0, 8, 40])                       # steps 0, 8, 40, 100, 200, ...
    every(1).until(40) | at_epochs([100]) | end()     # the paper's entropy-curve points
    parse("every 1 until 40; epochs 100; end")        # the same, from a command line

Epoch-based schedules (`every_epoch`, `at_epochs`, `end`) need the run's timeline: `bind(
steps_per_epoch, total_steps)` returns a schedule that knows it (the trainer and Scope bind them).
"""

from __future__ import annotations

import copy
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

    def bind(self, steps_per_epoch: int | None, total_steps: int | None) -> Schedule:
        """This schedule for a run with that timeline (step-based schedules are unchanged)."""
        return self

    def until(self, last: int) -> Schedule:
        """Only the steps <= `last` of this schedule."""
        return Window(self, 0, last)

    def since(self, first: int) -> Schedule:
        """Only the steps >= `first` of this schedule."""
        return Window(self, first, None)


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

    def bind(self, steps_per_epoch: int | None, total_steps: int | None) -> Schedule:
        return Union(*(p.bind(steps_per_epoch, total_steps) for p in self.parts))

    def __repr__(self) -> str:
        return " | ".join(repr(p) for p in self.parts)


class Window(Schedule):
    """The steps of `inner` within [first, last] (last None: no upper end)."""

    def __init__(self, inner: Schedule, first: int, last: int | None) -> None:
        if first < 0 or (last is not None and last < first):
            raise ValueError(f"invalid step window [{first}, {last}]")
        self.inner, self.first, self.last = inner, first, last

    def __call__(self, step: int) -> bool:
        inside = step >= self.first and (self.last is None or step <= self.last)
        return inside and self.inner(step)

    def bind(self, steps_per_epoch: int | None, total_steps: int | None) -> Schedule:
        return Window(self.inner.bind(steps_per_epoch, total_steps), self.first, self.last)

    def __repr__(self) -> str:
        text = repr(self.inner)
        if self.first:
            text += f".since({self.first})"
        if self.last is not None:
            text += f".until({self.last})"
        return text


class _NeedsTimeline(Schedule):
    """Base of schedules defined in epochs or relative to the end of the run."""

    steps_per_epoch: int | None = None
    total_steps: int | None = None

    def _require(self, what: str) -> int:
        value = getattr(self, what)
        if value is None:
            raise ValueError(
                f"{self!r} needs the run's {what.replace('_', ' ')}; bind it first with "
                ".bind(steps_per_epoch, total_steps) (the trainer does this), or pass "
                "steps_per_epoch / total_steps to Scope"
            )
        return value

    def bind(self, steps_per_epoch: int | None, total_steps: int | None) -> Schedule:
        bound = copy.copy(self)
        bound.steps_per_epoch, bound.total_steps = steps_per_epoch, total_steps
        return bound


class EveryEpoch(_NeedsTimeline):
    """Fires every `fraction` of an epoch: steps round(j * fraction * steps_per_epoch)."""

    def __init__(self, fraction: float = 1.0) -> None:
        if not fraction > 0:
            raise ValueError(f"every_epoch(fraction) needs fraction > 0, got {fraction!r}")
        self.fraction = fraction

    def __call__(self, step: int) -> bool:
        period = self.fraction * self._require("steps_per_epoch")
        j = round(step / period)
        return round(j * period) == step

    def __repr__(self) -> str:
        return f"every_epoch({self.fraction})"


class AtEpochs(_NeedsTimeline):
    """Fires after the listed numbers of completed epochs (epoch e -> step e * steps_per_epoch)."""

    def __init__(self, epochs: Iterable[float]) -> None:
        epochs = list(epochs)
        if any(e < 0 for e in epochs):
            raise ValueError(f"at_epochs needs epochs >= 0, got {epochs}")
        self.epochs = sorted(set(epochs))

    def __call__(self, step: int) -> bool:
        per_epoch = self._require("steps_per_epoch")
        return any(round(e * per_epoch) == step for e in self.epochs)

    def __repr__(self) -> str:
        return f"at_epochs({self.epochs})"


class End(_NeedsTimeline):
    """Fires at the last step of the run (total_steps), the fully trained network."""

    def __call__(self, step: int) -> bool:
        return step == self._require("total_steps")

    def __repr__(self) -> str:
        return "end()"


def every(k: int, start: int = 0) -> Every:
    """Measure every k steps, from `start` (default 0) on."""
    return Every(k, start)


def at(steps: Iterable[int]) -> At:
    """Measure at exactly these steps."""
    return At(steps)


def every_epoch(fraction: float = 1.0) -> EveryEpoch:
    """Measure every `fraction` of an epoch (1.0: at every epoch boundary, from step 0)."""
    return EveryEpoch(fraction)


def at_epochs(epochs: Iterable[float]) -> AtEpochs:
    """Measure after these numbers of completed epochs (0: the initial network)."""
    return AtEpochs(epochs)


def end() -> End:
    """Measure the final network (the last step of the run)."""
    return End()


def parse(text: str) -> Schedule:
    """A schedule from text: parts joined by ';' (or '|'), each one of

    - `every K` (optionally `from A` and/or `until B`): every K steps, within [A, B];
    - `at S1 S2 ...`: those steps;
    - `epochs E1 E2 ...`: after those numbers of epochs;
    - `every-epoch [F]`: every F epochs (default 1);
    - `end`: the last step.

    Example: "every 1 until 40; epochs 100; end".
    """
    parts: list[Schedule] = []
    for chunk in text.replace("|", ";").split(";"):
        words = chunk.split()
        if not words:
            continue
        try:
            parts.append(_parse_part(words))
        except (ValueError, IndexError) as error:
            raise ValueError(
                f"cannot read schedule part {chunk.strip()!r} ({error}); expected 'every K "
                "[from A] [until B]', 'at S ...', 'epochs E ...', 'every-epoch [F]' or 'end'"
            ) from None
    if not parts:
        raise ValueError(f"empty schedule {text!r}; e.g. 'every 100; end'")
    return parts[0] if len(parts) == 1 else Union(*parts)


def _parse_part(words: list[str]) -> Schedule:
    head, rest = words[0].lower(), words[1:]
    if head == "every":
        schedule: Schedule = Every(int(rest[0]))
        options = dict(zip(rest[1::2], rest[2::2], strict=False))
        unknown = set(options) - {"from", "until"}
        if unknown or len(rest[1:]) % 2:
            raise ValueError(f"unexpected words {rest[1:]}")
        if "from" in options or "until" in options:
            last = int(options["until"]) if "until" in options else None
            schedule = Window(schedule, int(options.get("from", 0)), last)
        return schedule
    if head == "at":
        return At(int(w) for w in rest)
    if head == "epochs":
        return AtEpochs(float(w) for w in rest)
    if head == "every-epoch":
        return EveryEpoch(float(rest[0]) if rest else 1.0)
    if head == "end" and not rest:
        return End()
    raise ValueError(f"unknown schedule kind {head!r}")
