"""How far an experiment has come: planned runs, their states in the store, and an ETA.

A run exists in the store only once it starts, so an experiment's *plan* (the names of all its
runs) is recorded when it is launched (`learnscope run PRESET`, sweeps): a JSON file per
experiment in ``<store>.artifacts/plans/``. Launching again adds the new names to the plan. With
each name the plan keeps the identity (the settings the run's fingerprint hashes, see
:mod:`learnscope.experiments.identity`) of the latest launch, so a planned run is matched by name
*and* fingerprint: a run of that name with other settings (``NAME~<fingerprint prefix>``, or an
older run stored without a fingerprint) does not count for it.
:func:`summarise` then counts the planned runs that are done (finished), running, interrupted,
failed, diverged and pending (not started yet), and estimates the time left. Runs written by
any process count alike: `learnscope run`, a local sweep's workers, or Ray tasks on other hosts
writing to the same store (a run on another host is reported as running, as its process
cannot be checked from here).

ETA of an experiment: the work left is the sum of the running runs' own ETAs (from their recent
measurement rate, ``Store.runs()["eta_seconds"]``) plus, for every pending run (and every
interrupted one, from its progress), the typical duration of a finished run (median of
``finished_at - created_at``; else the projected duration of the running runs). That work is
divided by the number of runs progressing at once (at least one).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from learnscope.store import layout

DONE = ("finished",)
FAILED = ("failed", "diverged")
STATES = ("finished", "running", "interrupted", "failed", "diverged")
PENDING = "pending"  # planned, not in the store yet


def _artifacts_root(store_path: str | os.PathLike[str]) -> Path:
    return layout.artifacts_root(Path(store_path).expanduser().resolve())


def _plan_file(store_path: str | os.PathLike[str], experiment: str) -> Path:
    return layout.plan_file(_artifacts_root(store_path), experiment)


def record_plan(store_path: str | os.PathLike[str], experiment: str, names: list[str],
                identities: Mapping[str, Mapping[str, Any]] | None = None) -> None:
    """Add run `names` to the plan of `experiment` (kept beside the store; atomic write).

    `identities`: the identity of each named run (replacing the one an earlier launch recorded).
    Under torchrun only rank 0 records it: every rank launches the same plan.
    """
    from learnscope.distributed import launch_rank

    if launch_rank() != 0:
        return
    file = _plan_file(store_path, experiment)
    file.parent.mkdir(parents=True, exist_ok=True)
    known = planned(store_path, experiment)
    merged = known + [name for name in names if name not in set(known)]
    recorded = {**planned_identities(store_path, experiment), **dict(identities or {})}
    handle, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")
    with os.fdopen(handle, "w") as out:
        json.dump({"experiment": experiment, "runs": merged, "identities": recorded}, out,
                  indent=1, default=str)
    os.replace(temporary, file)


def planned(store_path: str | os.PathLike[str], experiment: str) -> list[str]:
    """Run names of `experiment`'s plan, in launch order ([] when none was recorded)."""
    file = _plan_file(store_path, experiment)
    if not file.exists():
        return []
    try:
        return list(json.loads(file.read_text())["runs"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"the plan file {file} is damaged ({error}); delete it and launch the experiment "
            "again to record its plan"
        ) from error


def planned_identities(store_path: str | os.PathLike[str], experiment: str
                       ) -> dict[str, dict[str, Any]]:
    """The identity recorded for each planned run name ({} for plans recorded without)."""
    file = _plan_file(store_path, experiment)
    if not file.exists():
        return {}
    try:
        return dict(json.loads(file.read_text()).get("identities") or {})
    except (ValueError, AttributeError, TypeError):
        return {}  # planned() reports a damaged file


def base_name(run_name: str) -> str:
    """The planned name of a run: its name without a ``~<fingerprint prefix>`` suffix."""
    return run_name.split("~", 1)[0]


def planned_experiments(store_path: str | os.PathLike[str]) -> list[str]:
    """Experiments with a recorded plan."""
    folder = layout.plans_folder(_artifacts_root(store_path))
    if not folder.exists():
        return []
    names = []
    for file in sorted(folder.glob("*.json")):
        try:
            names.append(json.loads(file.read_text())["experiment"])
        except (ValueError, KeyError, TypeError):
            continue
    return names


@dataclass
class ExperimentStatus:
    """Counts of an experiment's runs by state, and the estimated time left."""

    experiment: str
    planned: int
    counts: dict[str, int] = field(default_factory=dict)  # finished, running, ... pending
    eta_seconds: float = math.nan
    runs: pd.DataFrame | None = None  # the experiment's rows of Store.runs()

    @property
    def done(self) -> int:
        return self.counts.get("finished", 0)

    @property
    def failed(self) -> int:
        return sum(self.counts.get(state, 0) for state in FAILED)


def _durations(frame: pd.DataFrame) -> np.ndarray:
    finished = frame[frame["status"] == "finished"]
    if finished.empty:
        return np.array([])
    start = pd.to_datetime(finished["created_at"], utc=True, format="ISO8601")
    end = pd.to_datetime(finished["finished_at"], utc=True, format="ISO8601")
    seconds = (end - start).dt.total_seconds().to_numpy(dtype=float)
    return seconds[np.isfinite(seconds) & (seconds >= 0)]


def summarise(runs: pd.DataFrame, experiment: str, plan: list[str] | None = None,
              identities: Mapping[str, Mapping[str, Any]] | None = None) -> ExperimentStatus:
    """The state of `experiment` from ``Store.runs()`` (with ``eta_seconds``) and its plan.

    A run name that occurs several times (a failed attempt, then a successful one) counts once,
    by its most recent run. A planned name with an identity (`identities`, as recorded by
    :func:`record_plan`) counts only runs with its fingerprint (its name, or its name with a
    ``~`` suffix); the name's runs with other settings are left out.
    """
    mine = runs[runs["experiment"] == experiment].sort_values("created_at")
    identities = dict(identities or {})
    names = list(plan or [])
    if identities:
        from learnscope.experiments.identity import fingerprint

        bases = mine["name"].map(base_name)
        chosen = []
        for name in names:
            if name in identities:
                same = mine[(bases == name)
                            & (mine["fingerprint"] == fingerprint(identities[name]))]
                chosen += list(same.index[-1:])
        others = mine[~bases.isin(identities)]
        latest = pd.concat([mine.loc[chosen], others]).sort_values("created_at")
        latest = latest.drop_duplicates("name", keep="last")
        shown = set(latest["name"].map(base_name))
    else:
        latest = mine.drop_duplicates("name", keep="last")
        shown = set(latest["name"])
    names += [name for name in latest["name"] if base_name(name) not in set(names)]
    counts = {state: int((latest["status"] == state).sum()) for state in STATES}
    counts[PENDING] = len(set(names) - shown)

    running = latest[latest["status"] == "running"]
    durations = _durations(latest)
    if durations.size:
        typical = float(np.median(durations))
    else:  # no run finished yet: project the running ones to their end
        elapsed = (pd.Timestamp.now(tz="UTC")
                   - pd.to_datetime(running["created_at"], utc=True, format="ISO8601"))
        projected = elapsed.dt.total_seconds().to_numpy(dtype=float) + \
            running["eta_seconds"].to_numpy(dtype=float)
        projected = projected[np.isfinite(projected)]
        typical = float(np.median(projected)) if projected.size else math.nan
    interrupted = latest[latest["status"] == "interrupted"]
    left_share = 1.0 - interrupted["progress"].fillna(0.0).to_numpy(dtype=float)
    work = running["eta_seconds"].to_numpy(dtype=float).sum() if len(running) else 0.0
    if counts[PENDING] or len(interrupted):
        work += typical * (counts[PENDING] + float(left_share.sum()))
    if not len(running) and counts[PENDING] == 0 and not len(interrupted):
        eta = 0.0  # nothing left to do (finished or failed)
    else:
        eta = work / max(len(running), 1)
    return ExperimentStatus(experiment, len(names), counts, float(eta), latest)
