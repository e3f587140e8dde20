"""The reading half of a :class:`~learnscope.store.db.Store`: runs (with their status, progress
and ETA), metric values, series, weight snapshots and progress queries."""

from __future__ import annotations

import json
import math
import socket
import sqlite3
from typing import TYPE_CHECKING, Any

from .base import StoreBase
from .eta import _eta_seconds
from .provenance import _owner_alive
from .snapshots import SnapshotSeries
from .validation import _as_int, _listing, _name_list

if TYPE_CHECKING:
    import pandas as pd

_METRIC_COLUMNS = ["run", "step", "epoch", "probe", "layer", "layer_index", "measure", "value"]
_RUN_COLUMNS = [
    "id", "name", "experiment", "status", "created_at", "updated_at", "finished_at",
    "total_steps", "last_step", "progress", "eta_seconds", "measurements", "version", "git_rev",
    "host", "pid", "error", "config", "fingerprint",
]  # fmt: skip

_RUNS_SQL = """
SELECT r.id, r.name, r.experiment, r.status, r.created_at, r.updated_at, r.finished_at,
       r.total_steps, r.last_step,
       (SELECT count(*) FROM measurements WHERE run = r.id) AS measurements,
       r.version, r.git_rev, r.host, r.pid, r.error, r.config, {identity_columns}
FROM runs AS r
{where}
ORDER BY r.created_at, r.rowid
"""

_FINAL_SQL = """
SELECT r.id, f.step IS NOT NULL, f.value
FROM runs AS r
LEFT JOIN metrics AS f ON f.rowid = (
    SELECT rowid FROM metrics
    WHERE run = r.id AND measure = ?1 AND layer = ?2 ORDER BY step DESC LIMIT 1)
"""

_METRICS_SELECT = """
SELECT m.run, m.step, ms.epoch, m.probe, m.layer, m.layer_index, m.measure, m.value
FROM metrics AS m
JOIN measurements AS ms ON ms.run = m.run AND ms.step = m.step AND ms.probe = m.probe
"""

_METRICS_ORDER = "ORDER BY m.run, m.step, m.probe, m.layer_index, m.measure, m.layer"

_LATEST_SQL = f"""
WITH last AS (
    SELECT run, probe, layer, measure, max(step) AS step
    FROM metrics WHERE run = ? GROUP BY probe, layer, measure
)
{_METRICS_SELECT}
JOIN last ON last.run = m.run AND last.step = m.step AND last.probe = m.probe
          AND last.layer = m.layer AND last.measure = m.measure
{_METRICS_ORDER}
"""




class StoreReading(StoreBase):
    """The queries of a Store (see :class:`learnscope.store.Store`); they work read-only."""

    # ---------------------------------------------------------------- internals

    def _check_names(
        self, conn: sqlite3.Connection, column: str, names: list[str], run_id: str | None
    ) -> None:
        """Raise ValueError if any of ``names`` does not occur in ``column``."""
        table = "measurements" if column == "probe" else "metrics"
        where, params = ("WHERE run = ?", (run_id,)) if run_id is not None else ("", ())
        available = [
            row[0]
            for row in conn.execute(
                f"SELECT DISTINCT {column} FROM {table} {where} ORDER BY {column}", params
            )
        ]
        missing = [name for name in names if name not in set(available)]
        if not missing:
            return
        scope = f"run {run_id}" if run_id is not None else f"the store {self.path}"
        unknown = ", ".join(repr(name) for name in missing)
        if available:
            known = f"Available {column}s: {_listing(available)}."
        else:
            known = f"There are no {column}s in {scope} yet."
        raise ValueError(f"Unknown {column} {unknown} in {scope}. {known}")

    def _runs_frame(self, where: str = "", params: tuple[Any, ...] = ()) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        with self._lock:
            conn = self._db()
            identity_columns = ("r.fingerprint, r.pid_start" if self._has_identity(conn)
                                else "NULL AS fingerprint, NULL AS pid_start")
            sql = _RUNS_SQL.format(where=where, identity_columns=identity_columns)
            frame = pd.read_sql_query(sql, conn, params=params)
        for column in ("total_steps", "last_step", "pid"):
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
        frame["measurements"] = frame["measurements"].astype("int64")
        total = frame["total_steps"].astype("float64").to_numpy(na_value=np.nan)
        last = frame["last_step"].astype("float64").to_numpy(na_value=-1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            progress = np.clip(last / total, 0.0, 1.0)
        frame["progress"] = np.where(total > 0, progress, np.nan)
        host = socket.gethostname()
        interrupted = [  # this host's process is gone, or the run was released (Ctrl-C)
            status == "running" and (pd.isna(pid) or (
                run_host == host and not _owner_alive(run_host, pid, start, None)))
            for status, run_host, pid, start in zip(
                frame["status"], frame["host"], frame["pid"], frame["pid_start"], strict=True
            )
        ]
        frame.loc[np.asarray(interrupted, dtype=bool), "status"] = "interrupted"
        rows = [
            (run_id, status, None if pd.isna(total) else int(total),
             None if pd.isna(last) else int(last))
            for run_id, status, total, last in zip(
                frame["id"], frame["status"], frame["total_steps"], frame["last_step"],
                strict=True,
            )
        ]  # fmt: skip
        with self._lock:
            eta = _eta_seconds(self._db(), rows)
        frame["eta_seconds"] = np.array([eta[row[0]] for row in rows], dtype="float64")
        return frame[_RUN_COLUMNS].reset_index(drop=True)

    def _metrics_frame(self, sql: str, params: list[Any]) -> pd.DataFrame:
        import pandas as pd

        frame = pd.read_sql_query(sql, self._db(), params=params)
        frame = frame.astype(
            {"step": "int64", "epoch": "float64", "layer_index": "int64", "value": "float64"}
        )
        return frame[_METRIC_COLUMNS].reset_index(drop=True)

    # ---------------------------------------------------------------- progress queries

    def has_measurement(self, run_id: str, step: int, probe: str) -> bool:
        """Whether the measurement ``(run_id, step, probe)`` has been completely stored."""
        step = _as_int(step, "step")
        with self._lock:
            conn = self._db()
            found = conn.execute(
                "SELECT 1 FROM measurements WHERE run = ? AND step = ? AND probe = ?",
                (run_id, step, probe),
            ).fetchone()
            if found is None:
                self._require_run(conn, run_id)
            return found is not None

    def measured_steps(self, run_id: str, probe: str | None = None) -> list[int]:
        """Sorted steps with a completed measurement (of ``probe``, or of any probe)."""
        with self._lock:
            conn = self._db()
            self._require_run(conn, run_id)
            if probe is None:
                cursor = conn.execute(
                    "SELECT DISTINCT step FROM measurements WHERE run = ? ORDER BY step",
                    (run_id,),
                )
            else:
                cursor = conn.execute(
                    "SELECT step FROM measurements WHERE run = ? AND probe = ? ORDER BY step",
                    (run_id, probe),
                )
            return [int(row[0]) for row in cursor]

    # ---------------------------------------------------------------- reading

    def runs(self) -> pd.DataFrame:
        """One row per run, ordered by creation time (columns: see the module docstring).

        Columns: id, name, experiment, status, created_at, updated_at, finished_at,
        total_steps, last_step, progress, eta_seconds, measurements, version, git_rev, host,
        pid, error, config (JSON text). ``progress`` is ``last_step / total_steps``
        clipped to [0, 1] (0 before the first measurement), NaN when ``total_steps`` is
        unknown. ``eta_seconds`` estimates the seconds still needed (see "Estimated time to
        completion" in the module docstring; NaN when unknown, 0.0 when finished).
        ``status`` is ``'interrupted'`` for a ``'running'`` run of this host whose process is
        gone. Integer columns that may be missing use pandas' nullable ``Int64``.
        """
        return self._runs_frame()

    def run(self, ref: str) -> dict[str, Any]:
        """The run ``ref`` (exact id, else unique id prefix, else most recent by name).

        Returns a dict with the keys of a :meth:`runs` row, as plain Python values (missing
        values are None, ``progress`` and ``eta_seconds`` are NaN when unknown) and
        ``config`` parsed to a dict.
        Raises :class:`StoreError` when no run or several runs match.
        """
        with self._lock:
            run_id = self._resolve(self._db(), ref)
            frame = self._runs_frame("WHERE r.id = ?", (run_id,))
        import pandas as pd

        record: dict[str, Any] = {}
        for column, value in frame.iloc[0].items():
            if column in ("progress", "eta_seconds"):
                record[column] = float(value)
            elif value is None or (not isinstance(value, str) and pd.isna(value)):
                record[column] = None
            elif hasattr(value, "item"):  # numpy scalar
                record[column] = value.item()
            else:
                record[column] = value
        record["config"] = json.loads(record["config"]) if record["config"] else {}
        return record

    def metrics(
        self,
        run: str | None = None,
        layer: str | list[str] | None = None,
        measure: str | list[str] | None = None,
        probe: str | None = None,
        *,
        since_step: int | None = None,
        steps: list[int] | None = None,
    ) -> pd.DataFrame:
        """Metric values in long form.

        Columns: run, step, epoch, probe, layer, layer_index, measure, value; sorted by run,
        step, probe, layer_index, measure. ``run`` is resolved like :meth:`run` (None: all
        runs). A ``layer``, ``measure`` or ``probe`` that does not occur (in the run, or in
        the store when ``run`` is None) raises :class:`ValueError` listing the available
        names. ``since_step`` keeps only the rows with ``step > since_step`` (for polling a
        run that is being written); ``steps`` only the rows of those steps (e.g. a thinned
        set, so a view of a long run reads a fraction of its rows).
        """
        layers = _name_list(layer, "layer")
        measures = _name_list(measure, "measure")
        if since_step is not None:
            since_step = _as_int(since_step, "since_step")
        with self._lock:
            conn = self._db()
            run_id = self._resolve(conn, run) if run is not None else None
            clauses: list[str] = []
            params: list[Any] = []
            if run_id is not None:
                clauses.append("m.run = ?")
                params.append(run_id)
            for column, names in (("layer", layers), ("measure", measures)):
                if names is None:
                    continue
                self._check_names(conn, column, names, run_id)
                clauses.append(f"m.{column} IN ({', '.join('?' * len(names))})")
                params.extend(names)
            if probe is not None:
                self._check_names(conn, "probe", [probe], run_id)
                clauses.append("m.probe = ?")
                params.append(probe)
            if since_step is not None:
                clauses.append("m.step > ?")
                params.append(since_step)
            if steps is not None:
                wanted = sorted({_as_int(step, "steps") for step in steps})
                clauses.append(f"m.step IN ({', '.join('?' * len(wanted))})")
                params.extend(wanted)
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            return self._metrics_frame(f"{_METRICS_SELECT} {where} {_METRICS_ORDER}", params)

    def series(self, run: str) -> pd.DataFrame:
        """The distinct ``(probe, layer, layer_index, measure)`` series that ``run`` has.

        Sorted by probe, layer_index, layer, measure; ``run`` is resolved like :meth:`run`.
        """
        import pandas as pd

        with self._lock:
            conn = self._db()
            run_id = self._resolve(conn, run)
            # DISTINCT over the primary key's columns reads only that (covering) index; the
            # layer index of each series is then one indexed lookup.
            keys = conn.execute(
                "SELECT DISTINCT probe, layer, measure FROM metrics WHERE run = ?", (run_id,)
            ).fetchall()
            rows = [
                (probe, layer, conn.execute(
                    "SELECT layer_index FROM metrics WHERE run = ? AND measure = ? "
                    "AND layer = ? AND probe = ? LIMIT 1",
                    (run_id, measure, layer, probe),
                ).fetchone()[0], measure)
                for probe, layer, measure in keys
            ]  # fmt: skip
        frame = pd.DataFrame(rows, columns=["probe", "layer", "layer_index", "measure"])
        frame = frame.astype({"layer_index": "int64"})
        frame = frame.sort_values(["probe", "layer_index", "layer", "measure"], kind="stable")
        return frame.reset_index(drop=True)

    def trajectories(self, run: str) -> pd.DataFrame:
        """The weight trajectories stored for ``run``, one row each.

        Columns: probe, trajectory, snapshots (count), size (values per snapshot), dtype,
        first_step, last_step; sorted by probe, then trajectory in the order first written.
        ``run`` is resolved like :meth:`run`. Empty when the run has no snapshots.
        """
        import pandas as pd

        columns = ["probe", "trajectory", "snapshots", "size", "dtype", "first_step",
                   "last_step"]
        with self._lock:
            conn = self._db()
            run_id = self._resolve(conn, run)
            rows = [] if not self._has_snapshot_table(conn) else conn.execute(
                "SELECT probe, trajectory, count(*), max(size), max(dtype), min(step), "
                "max(step) FROM snapshots WHERE run = ? GROUP BY probe, trajectory "
                "ORDER BY probe, min(rowid)", (run_id,),
            ).fetchall()
        return pd.DataFrame(rows, columns=columns)

    def snapshots(
        self, run: str, trajectory: str | None = None, *, probe: str | None = None
    ) -> SnapshotSeries:
        """The stored snapshots of one trajectory of ``run`` (see :meth:`trajectories`).

        ``trajectory`` may be left out when the run has exactly one (e.g. "all"); ``probe``
        when only one probe stored that trajectory. Unknown names raise :class:`ValueError`
        listing the ones there are. The values stay on disk until asked for
        (:meth:`~learnscope.store.snapshots.SnapshotSeries.array`).
        """
        import numpy as np

        with self._lock:
            conn = self._db()
            run_id = self._resolve(conn, run)
            known = [] if not self._has_snapshot_table(conn) else conn.execute(
                "SELECT probe, trajectory FROM snapshots WHERE run = ? "
                "GROUP BY probe, trajectory ORDER BY probe, min(rowid)", (run_id,),
            ).fetchall()
            listing = ", ".join(f"{t!r} (probe {p!r})" for p, t in known) or "none"
            if not known:
                raise ValueError(
                    f"run {run_id} has no weight snapshots; record them with the Weights probe "
                    "(ls.Weights() in the Scope's probes, or `learnscope run trajectories`)"
                )
            matches = [(p, t) for p, t in known
                       if (trajectory is None or t == trajectory) and (probe is None or p == probe)]
            if len(matches) != 1:
                what = "no" if not matches else "more than one"
                raise ValueError(
                    f"run {run_id} has {what} trajectory matching trajectory={trajectory!r}, "
                    f"probe={probe!r}; its trajectories: {listing}"
                )
            probe_name, name = matches[0]
            rows = conn.execute(
                "SELECT step, chunk, row, size, dtype FROM snapshots WHERE run = ? AND "
                "probe = ? AND trajectory = ? ORDER BY step", (run_id, probe_name, name),
            ).fetchall()
        table = np.asarray([r[:3] for r in rows], dtype=np.int64).reshape(-1, 3)
        return SnapshotSeries(
            run=run_id, probe=probe_name, trajectory=name, steps=table[:, 0],
            size=int(rows[0][3]), dtype=str(rows[0][4]),
            folder=self._snapshot_folder(run_id, probe_name, name),
            chunks=table[:, 1], rows=table[:, 2],
        )

    def final_values(self, measure: str, layer: str = "model") -> dict[str, float]:
        """Per run, the value of ``measure`` at ``layer`` at its greatest step (runs without
        one are left out; NaN when that value is NaN). One indexed look-up per run, so cheap
        enough for views that poll (e.g. the final ``test_accuracy`` of every run)."""
        with self._lock:
            rows = self._db().execute(_FINAL_SQL, (measure, layer)).fetchall()
        return {str(run): (math.nan if value is None else float(value))
                for run, found, value in rows if found}

    def latest(self, run: str) -> pd.DataFrame:
        """For each (probe, layer, measure) of ``run``, its row with the greatest step.

        Same columns and order as :meth:`metrics`; ``run`` is resolved like :meth:`run`.
        """
        with self._lock:
            run_id = self._resolve(self._db(), run)
            return self._metrics_frame(_LATEST_SQL, [run_id])
