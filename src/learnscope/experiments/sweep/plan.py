"""Which runs of a sweep need no process: finished in the store, or owned by another."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .results import SweepResult


def already_done(specs: Iterable[Any], store: str | os.PathLike[str], *,
                 rerun: bool = False) -> dict[str, SweepResult]:
    """The runs of ``specs`` a sweep would not start, as ``skipped`` results by name.

    Those finished or diverged in the store with the same name and settings fingerprint
    (unless ``rerun``), and those a live process owns (another sweep or ``learnscope run``),
    as :func:`learnscope.experiments.presets.plan` decides. Reads the store read-only; nothing
    when it does not exist yet.
    """
    from learnscope.experiments.identity import busy_message
    from learnscope.experiments.presets import plan

    specs = list(specs)
    if not Path(store).expanduser().exists():
        return {}
    skipped = {}
    for spec, claim in plan(specs, store, rerun=rerun):
        if claim.action == "reuse":
            skipped[spec.name] = SweepResult(spec.name, claim.run_id, "skipped",
                                             device=spec.device)
        elif claim.action == "busy":
            skipped[spec.name] = SweepResult(spec.name, claim.run_id, "skipped",
                                             busy_message(claim), spec.device)
    return skipped
