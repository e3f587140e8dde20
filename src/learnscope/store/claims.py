"""Run identity and ownership: which run a (name, fingerprint) claim reuses, resumes or creates
(see "Run identity and ownership" in :mod:`learnscope.store.db`). The decision is pure; the
Store runs it inside its write transaction."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .provenance import _owner_alive


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one dict with dotted keys (lists and scalars are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def describe_difference(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 4) -> str:
    """``"max_steps 20 -> 100, recipe_options.epochs 6 -> 3"``: the settings that differ."""
    before, after = _flatten(dict(old)), _flatten(dict(new))
    missing = object()
    changes = [
        f"{key} {before.get(key, '(unset)')} -> {after.get(key, '(unset)')}"
        for key in sorted(set(before) | set(after))
        if before.get(key, missing) != after.get(key, missing)
    ]
    if not changes:
        return "the same settings under another fingerprint (the fingerprint's version changed)"
    shown = ", ".join(changes[:limit])
    return shown + (f" (and {len(changes) - limit} more)" if len(changes) > limit else "")


_CLAIM_SQL = """
SELECT id, name, status, created_at, updated_at, last_step, host, pid, fingerprint, identity,
       pid_start
FROM runs WHERE name = ? OR substr(name, 1, ?) = ?
ORDER BY created_at, rowid
"""

#: The reason of a new run when the store has no run of its name (nothing worth telling).
NO_RUN_REASON = "no run of this name in the store"

#: Actions of a :class:`RunClaim`.
CLAIM_ACTIONS = ("reuse", "resume", "new", "busy")


@dataclass(frozen=True)
class RunClaim:
    """What happens to a run of a given name and fingerprint (see "Run identity").

    action: ``"reuse"`` (a finished or diverged run with this fingerprint: nothing to do),
    ``"resume"`` (an unfinished one: continue it), ``"new"`` (none, or ``rerun``: start a
    fresh run called ``name``) or ``"busy"`` (a live process owns it: leave it alone).
    run_id: the run reused, resumed, owned by another process, or (claimed) created.
    name: the run's name: the name asked for, or with ``~`` and a short fingerprint when
    another run of that name has other settings. last_step: greatest measured step of the
    run (None: none yet). owner: ``"pid 1234 on host h"`` of a busy run. reason: one line
    saying why, e.g. ``"settings differ from finished run X: max_steps 20 -> 100"``.
    """

    action: str
    name: str
    run_id: str | None = None
    last_step: int | None = None
    owner: str | None = None
    reason: str = ""


def _decide_claim(rows: list[tuple], name: str, fingerprint: str, identity: Mapping[str, Any],
                  rerun: bool) -> RunClaim:
    """The :class:`RunClaim` for ``name`` + ``fingerprint`` given the rows of ``_CLAIM_SQL``."""
    keys = ("id", "name", "status", "created_at", "updated_at", "last_step", "host", "pid",
            "fingerprint", "identity", "pid_start")
    family = [dict(zip(keys, row, strict=True)) for row in rows]
    same = [r for r in family if r["fingerprint"] == fingerprint]
    me = (socket.gethostname(), os.getpid())

    def live(r: dict[str, Any]) -> bool:
        if r["status"] != "running" or (r["host"], r["pid"]) == me:
            return False
        return _owner_alive(r["host"], r["pid"], r["pid_start"], r["updated_at"])

    busy = [r for r in same if live(r)]
    if busy:
        r = busy[-1]
        owner = f"pid {r['pid']} on host {r['host']}"
        return RunClaim("busy", r["name"], r["id"], r["last_step"], owner,
                        f"run {r['id']} is being trained by {owner}")
    if same and not rerun:
        r = same[-1]
        if r["status"] in ("finished", "diverged"):
            return RunClaim("reuse", r["name"], r["id"], r["last_step"],
                            reason=f"{r['status']} run {r['id']} has the same settings")
        state = "failed" if r["status"] == "failed" else "interrupted"
        start = "its start" if r["last_step"] is None else f"step {r['last_step']}"
        return RunClaim("resume", r["name"], r["id"], r["last_step"],
                        reason=f"{state} run {r['id']} has the same settings; resumes from "
                               f"{start} (its last checkpoint at most)")
    if same:  # rerun
        return RunClaim("new", same[-1]["name"],
                        reason=f"--rerun: a fresh run instead of {same[-1]['id']}")
    taken = {r["name"] for r in family}
    chosen = name
    for size in (6, 10, 16, 64):
        if chosen not in taken:
            break
        chosen = f"{name}~{fingerprint[:size]}"
    if not family:
        return RunClaim("new", chosen, reason=NO_RUN_REASON)
    done = [r for r in family if r["status"] in ("finished", "diverged")]
    other = (done or family)[-1]
    status = other["status"] if other["status"] != "running" else "unfinished"
    if other["fingerprint"] is None:
        why = (f"{status} run {other['id']} was stored without a fingerprint (an older "
               "learnscope) and is never reused")
    else:
        previous = json.loads(other["identity"]) if other["identity"] else {}
        why = (f"settings differ from {status} run {other['id']}: "
               f"{describe_difference(previous, identity)}")
    return RunClaim("new", chosen, reason=why)
