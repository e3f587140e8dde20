"""Run identity: the fingerprint of a run's settings, and taking a run before training it.

A run is its name plus a fingerprint: the sha256 of the canonical JSON (sorted keys, no
whitespace) of its *identity*, the fully resolved settings that decide what it measures
(model and options, dataset and options, the resolved training recipe, steps, seed, schedule,
probe and options) plus :data:`MEASUREMENT_VERSION`. Presets, the quickstart and the
trajectories experiment take each run with :func:`claim` (``Store.claim_run``, one SQLite
write transaction): a finished run with the same name and fingerprint is reused, an unfinished
one is resumed, a run owned by another live process is left to it, and anything else starts a
new run, named ``NAME~<6 hex digits of the fingerprint>`` when another run of that name has
other settings. Runs stored before fingerprints existed are never reused.

The device is not part of the identity: it changes floating-point rounding only, so a run
started on one device may be resumed on another, and a sweep (which picks a device per worker)
reuses runs trained elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: Version of what a run with given settings measures. Bump it when a change makes the same
#: settings measure something else: a model's, dataset's, recipe's or probe's default, the
#: definition of a measure, the trainer's order of operations. Stored runs of an older version
#: are then started afresh instead of being reused. It is independent of the package version,
#: so a release that changes only docs, display or speed keeps every stored run valid.
MEASUREMENT_VERSION = 1


def canonical(identity: Mapping[str, Any]) -> str:
    """The canonical JSON text of ``identity`` (sorted keys, no whitespace; tuples as lists)."""
    return json.dumps(dict(identity), sort_keys=True, separators=(",", ":"), default=str)


def fingerprint(identity: Mapping[str, Any]) -> str:
    """sha256 (hex) of :func:`canonical` ``identity``: equal settings, equal fingerprint."""
    return hashlib.sha256(canonical(identity).encode()).hexdigest()


def with_version(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (made JSON-plain) with ``measurement_version``: a run's identity."""
    return {**json.loads(canonical(settings)), "measurement_version": MEASUREMENT_VERSION}


def claim(store: Any, name: str, identity: Mapping[str, Any], config: Mapping[str, Any], *,
          experiment: str | None, total_steps: int | None = None, rerun: bool = False) -> Any:
    """Take the run ``name`` with ``identity`` in ``store`` (an open Store): a RunClaim."""
    return store.claim_run(name, fingerprint(identity), identity, config,
                           experiment=experiment, total_steps=total_steps, rerun=rerun)


def busy_message(claim_: Any) -> str:
    """One line for a run that another live process trains."""
    return f"run {claim_.run_id} is being trained by {claim_.owner}; skipped"


def describe(claim_: Any) -> str:
    """One line saying what will happen to a planned run, and why (for --dry-run, status)."""
    if claim_.action == "reuse":
        return f"reused ({claim_.reason})"
    if claim_.action == "resume":
        return f"resumed ({claim_.reason})"
    if claim_.action == "busy":
        return f"skipped ({claim_.reason}, not started twice)"
    return f"started fresh as {claim_.name} ({claim_.reason})"
