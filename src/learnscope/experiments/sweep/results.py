"""The outcome of one run of a sweep (:class:`SweepResult`) and how a failure reads."""

from __future__ import annotations

import math
from dataclasses import dataclass

from learnscope.diagnostics import describe_error  # noqa: F401 - kept here for old imports

#: Statuses of a :class:`SweepResult`.
OUTCOMES = ("finished", "skipped", "diverged", "failed")


@dataclass(frozen=True)
class SweepResult:
    """The outcome of one run of a sweep.

    status: ``finished``, ``diverged`` (a non-finite loss; a result, not an error),
    ``skipped`` (finished or diverged in the store already with the same settings, or owned by
    another live process: ``error`` names it) or ``failed``. error: why it failed or was
    skipped while unfinished (one line); traceback: the full Python traceback of a failure
    inside the run. run_id is None when the run failed before it was created in the store.
    device: where it trained.
    seconds: wall time of the run in its worker (NaN when it did not run).
    """

    name: str
    run_id: str | None
    status: str
    error: str | None = None
    device: str | None = None
    seconds: float = math.nan
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the run did not fail."""
        return self.status != "failed"


