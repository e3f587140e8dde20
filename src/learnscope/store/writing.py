"""The writing half of a :class:`~learnscope.store.db.Store`: creating, claiming and ending
runs, storing measurements (metric rows and weight snapshots) and artifact folders. Every write
is one transaction (see "Writes" in :mod:`learnscope.store.db`)."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .base import StoreBase
from .claims import _CLAIM_SQL, RunClaim, _decide_claim
from .connection import _WHERE_TO
from .errors import StoreError
from .ids import _id_prefix, new_run_id
from .provenance import _git_revision, _learnscope_version, _now, _own_start, _time_text
from .snapshots import as_snapshot, rows_per_chunk, write_row
from .validation import _as_int, _prepare_rows

# the store's writes log under the public module's name (learnscope.store.db)
log = logging.getLogger("learnscope.store.db")

#: Statuses a run can be stored with; all but ``'running'`` are terminal.
RUN_STATUSES = ("running", "finished", "failed", "diverged")

_TERMINAL = frozenset(RUN_STATUSES) - {"running"}


class StoreWriting(StoreBase):
    """The writes of a Store (see :class:`learnscope.store.Store`); a read-only Store refuses
    them with :class:`StoreError`."""

    # ---------------------------------------------------------------- writing

    def create_run(
        self,
        name: str,
        config: Mapping[str, Any] | None,
        *,
        experiment: str | None = None,
        total_steps: int | None = None,
    ) -> str:
        """Create a run with status ``'running'`` and return its id.

        The id is ``f"{name}-{UTC yyyymmdd-HHMMSS}-{4 random hex digits}"`` with ``name``
        sanitised to ``[A-Za-z0-9_.-]`` and cut to :data:`RUN_ID_NAME_CHARS` characters
        (see "Run ids" in the module docstring). ``config`` is stored as JSON (``sort_keys=True``,
        non-JSON values via ``str``); the learnscope version, the git revision of the
        learnscope source tree (when available), the host name and the pid are recorded.
        The run has no fingerprint (so :meth:`claim_run` never reuses it); presets and the
        quickstart create their runs with :meth:`claim_run` instead.
        """
        _git_revision()  # cached: not computed inside the write transaction
        with self._write() as conn:
            return self._insert_run(conn, name, config, experiment, total_steps)

    def _insert_run(self, conn: sqlite3.Connection, name: str, config: Mapping[str, Any] | None,
                    experiment: str | None, total_steps: int | None,
                    fingerprint: str | None = None, identity: str | None = None) -> str:
        """Insert a new ``'running'`` run owned by this process (inside ``conn``'s write)."""
        if not isinstance(name, str):
            raise TypeError(f"run name must be a string, got {name!r}")
        if experiment is not None and not isinstance(experiment, str):
            raise TypeError(f"experiment must be a string or None, got {experiment!r}")
        if total_steps is not None:
            total_steps = _as_int(total_steps, "total_steps")
            if total_steps <= 0:
                raise ValueError(f"total_steps must be positive or None, got {total_steps}")
        config_json = json.dumps(dict(config or {}), sort_keys=True, default=str)
        prefix = _id_prefix(name)
        version, git_rev = _learnscope_version(), _git_revision()
        host, pid = socket.gethostname(), os.getpid()
        now = datetime.now(timezone.utc)
        stamp = now.isoformat(timespec="microseconds")
        for _ in range(100):
            run_id = new_run_id(prefix, now)
            if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                break
        else:  # pragma: no cover - 100 collisions in 65536 ids
            raise StoreError(f"Could not find a free run id for {name!r}; try again.")
        conn.execute(
            "INSERT INTO runs (id, name, experiment, status, created_at, updated_at, "
            "total_steps, version, git_rev, host, pid, pid_start, config, fingerprint, "
            "identity) VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, name, experiment, stamp, stamp, total_steps, version, git_rev, host,
             pid, _own_start(pid), config_json, fingerprint, identity),
        )  # fmt: skip
        return run_id

    # ---------------------------------------------------------------- run identity

    def plan_run(self, name: str, fingerprint: str, identity: Mapping[str, Any], *,
                 rerun: bool = False) -> RunClaim:
        """What :meth:`claim_run` would do now, without writing (works read-only too).

        A ``"new"`` claim here has no ``run_id`` yet.
        """
        with self._lock:
            conn = self._db()
            if not self._has_identity(conn):  # an old store: nothing in it is reusable
                rows = [(*row, None, None, None) for row in conn.execute(
                    "SELECT id, name, status, created_at, updated_at, last_step, host, pid "
                    "FROM runs WHERE name = ? OR substr(name, 1, ?) = ? "
                    "ORDER BY created_at, rowid", (name, len(name) + 1, f"{name}~"))]
            else:
                rows = conn.execute(_CLAIM_SQL, (name, len(name) + 1, f"{name}~")).fetchall()
        return _decide_claim(rows, name, fingerprint, identity, rerun)

    def claim_run(
        self,
        name: str,
        fingerprint: str,
        identity: Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        *,
        experiment: str | None = None,
        total_steps: int | None = None,
        rerun: bool = False,
    ) -> RunClaim:
        """Decide and take a run of ``name`` with ``fingerprint`` in one write transaction.

        ``identity``: the settings that ``fingerprint`` hashes (stored with a new run, and
        compared with another run's to say what differs). ``"resume"`` makes this process the
        run's owner (status ``'running'``); ``"new"`` creates the run (owned by this process,
        with ``config``) and returns its id; ``"reuse"`` and ``"busy"`` change nothing. Two
        processes claiming at once are serialised by SQLite, so a run is never owned by two
        live processes and never created twice. See "Run identity" in the module docstring.
        """
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError(f"a run's fingerprint must be a non-empty string, got "
                             f"{fingerprint!r}")
        identity_json = json.dumps(dict(identity), sort_keys=True, default=str)
        _git_revision()  # cached: not computed inside the write transaction
        with self._write() as conn:
            rows = conn.execute(_CLAIM_SQL, (name, len(name) + 1, f"{name}~")).fetchall()
            claim = _decide_claim(rows, name, fingerprint, identity, rerun)
            if claim.action == "resume":
                conn.execute(
                    "UPDATE runs SET status = 'running', error = NULL, finished_at = NULL, "
                    "updated_at = ?, host = ?, pid = ?, pid_start = ? WHERE id = ?",
                    (_now(), socket.gethostname(), os.getpid(), _own_start(os.getpid()),
                     claim.run_id),
                )
            elif claim.action == "new":
                run_id = self._insert_run(conn, claim.name, config, experiment, total_steps,
                                          fingerprint, identity_json)
                claim = RunClaim("new", claim.name, run_id, None, None, claim.reason)
        log.debug("claim_run %s: %s %s (pid %d)", name, claim.action, claim.run_id, os.getpid())
        return claim

    def release_run(self, run_id: str) -> None:
        """Give up a ``'running'`` run without ending it (Ctrl-C): no process owns it now.

        It is then reported ``'interrupted'`` and the next claim resumes it.
        """
        with self._write() as conn:
            self._require_run(conn, run_id)
            conn.execute(
                "UPDATE runs SET pid = NULL, pid_start = NULL, updated_at = ? "
                "WHERE id = ? AND status = 'running'", (_now(), run_id))

    def update_run(self, run_id: str, *, config: Mapping[str, Any] | None = None,
                   total_steps: int | None = None) -> None:
        """Replace a run's stored config (JSON, as in :meth:`create_run`) and/or total_steps.

        None leaves that field as it is.
        """
        sets: list[str] = []
        params: list[Any] = []
        if config is not None:
            sets.append("config = ?")
            params.append(json.dumps(dict(config), sort_keys=True, default=str))
        if total_steps is not None:
            total_steps = _as_int(total_steps, "total_steps")
            if total_steps <= 0:
                raise ValueError(f"total_steps must be positive or None, got {total_steps}")
            sets.append("total_steps = ?")
            params.append(total_steps)
        with self._write() as conn:
            self._require_run(conn, run_id)
            if sets:
                conn.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?",
                             (*params, run_id))

    def set_status(self, run_id: str, status: str, *, error: str | None = None) -> None:
        """Set a run's status (one of :data:`RUN_STATUSES`) and its error text.

        ``'finished'``, ``'failed'`` and ``'diverged'`` are terminal and set ``finished_at``;
        ``'running'`` (resuming) clears it and records this process as the run's process.
        """
        if status not in RUN_STATUSES:
            raise ValueError(
                f"Invalid run status {status!r}; valid statuses are: {', '.join(RUN_STATUSES)}."
            )
        if error is not None and not isinstance(error, str):
            error = str(error)
        now = _now()
        log.debug("set_status %s: %s (pid %d)", run_id, status, os.getpid())
        with self._write() as conn:
            self._require_run(conn, run_id)
            if status in _TERMINAL:
                conn.execute(
                    "UPDATE runs SET status = ?, error = ?, finished_at = ?, updated_at = ? "
                    "WHERE id = ?",
                    (status, error, now, now, run_id),
                )
            else:
                conn.execute(
                    "UPDATE runs SET status = ?, error = ?, finished_at = NULL, updated_at = ?, "
                    "host = ?, pid = ?, pid_start = ? WHERE id = ?",
                    (status, error, now, socket.gethostname(), os.getpid(),
                     _own_start(os.getpid()), run_id),
                )

    def write_measurement(
        self,
        run_id: str,
        step: int,
        epoch: int | float | None,
        probe: str,
        rows: Iterable[tuple[str, int, str, float]],
        *,
        snapshots: Mapping[str, Any] | None = None,
        snapshot_dtype: str = "float32",
    ) -> int:
        """Store one measurement atomically and return the number of rows written.

        ``snapshots`` maps trajectory names to 1-D arrays of parameter values (the Weights
        probe); they are appended to the run's snapshot files as ``snapshot_dtype`` ("float32"
        or "float16") and indexed in the measurement's transaction (see
        :mod:`learnscope.store.snapshots`; read them with :meth:`snapshots`).

        ``rows`` are ``(layer, layer_index, measure, value)``. All rows, the measurement's
        row in ``measurements`` and the run's ``last_step``/``updated_at`` are written in one
        transaction. Rewriting a measurement replaces the values of the same
        ``(layer, measure)`` keys (never duplicates rows); keys only present in an earlier
        write are kept; an ``epoch`` of None keeps the epoch of an earlier write (e.g. the
        since-final pass adding rows to a measurement). NaN values are stored as NULL and read
        back as NaN; infinities are kept. An unknown ``run_id`` raises :class:`StoreError`.
        """
        step, epoch, prepared = _prepare_rows(run_id, step, epoch, probe, rows)
        values = {
            str(name): as_snapshot(array, snapshot_dtype, str(name))
            for name, array in (snapshots or {}).items()
        }
        with self._write() as conn:
            self._require_run(conn, run_id)
            if values:
                self._append_snapshots(conn, run_id, step, probe, values, snapshot_dtype)
            self._insert_rows(conn, run_id, [(step, epoch, probe, prepared, None)])
        log.debug("write_measurement %s: step %d, probe %s, %d row(s), %d snapshot(s)", run_id,
                  step, probe, len(prepared), len(values))
        return len(prepared)

    def write_measurements(
        self,
        run_id: str,
        measurements: Iterable[tuple],
    ) -> int:
        """Store several measurements ``(step, epoch, probe, rows[, completed_at])`` at once.

        Each is stored as :meth:`write_measurement` would store it (without snapshots), all of
        them or none, in one transaction instead of one per measurement (e.g. a training loop's
        per-update loss rows, written once per epoch). ``completed_at`` (seconds since the
        epoch, default now) is when the values were taken, what ``eta_seconds`` reads. Returns
        the number of rows written.
        """
        prepared = []
        for step, epoch, probe, rows, *when in measurements:
            step, epoch, checked = _prepare_rows(run_id, step, epoch, probe, rows)
            moment = None if not when or when[0] is None else _time_text(when[0])
            prepared.append((step, epoch, probe, checked, moment))
        if not prepared:
            return 0
        with self._write() as conn:
            self._require_run(conn, run_id)
            self._insert_rows(conn, run_id, prepared)
        return sum(len(entry[3]) for entry in prepared)

    def _insert_rows(self, conn: sqlite3.Connection, run_id: str,
                     measurements: list[tuple[int, float | None, str, list[tuple], str | None]],
                     ) -> None:
        """Metric rows, ``measurements`` rows and the run's ``last_step``, inside a write."""
        now = _now()
        conn.executemany(
            "INSERT OR REPLACE INTO metrics "
            "(run, step, probe, layer, layer_index, measure, value) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [row for _, _, _, rows, _ in measurements for row in rows],
        )
        for step, epoch, probe, _, completed_at in measurements:
            n_rows = conn.execute(
                "SELECT count(*) FROM metrics WHERE run = ? AND step = ? AND probe = ?",
                (run_id, step, probe),
            ).fetchone()[0]
            conn.execute(
                "INSERT INTO measurements (run, step, probe, epoch, n_rows, completed_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run, step, probe) DO UPDATE SET "
                "epoch = COALESCE(excluded.epoch, measurements.epoch), n_rows = excluded.n_rows, "
                "completed_at = excluded.completed_at",
                (run_id, step, probe, epoch, n_rows, completed_at or now),
            )
        last = max(entry[0] for entry in measurements)
        conn.execute(
            "UPDATE runs SET last_step = CASE WHEN last_step IS NULL OR last_step < ? "
            "THEN ? ELSE last_step END, updated_at = ?, host = ?, pid = ?, pid_start = ? "
            "WHERE id = ?",
            (last, last, now, socket.gethostname(), os.getpid(), _own_start(os.getpid()),
             run_id),
        )

    def _append_snapshots(
        self, conn: sqlite3.Connection, run_id: str, step: int, probe: str,
        values: Mapping[str, Any], dtype: str,
    ) -> None:
        """Write each snapshot after its trajectory's last indexed row; index it (in `conn`)."""
        for trajectory, array in values.items():
            last = conn.execute(
                "SELECT chunk, row, size, dtype FROM snapshots WHERE run = ? AND probe = ? "
                "AND trajectory = ? ORDER BY chunk DESC, row DESC LIMIT 1",
                (run_id, probe, trajectory),
            ).fetchone()
            if last is None:
                chunk, row = 0, 0
            else:
                if (last[2], last[3]) != (array.size, dtype):
                    raise ValueError(
                        f"trajectory {trajectory!r} of probe {probe!r} holds snapshots of "
                        f"{last[2]} {last[3]} values, this one has {array.size} {dtype}: one "
                        "trajectory keeps one size and dtype; give the new one another name"
                    )
                chunk, row = last[0], last[1] + 1
                if row >= rows_per_chunk(array.size, dtype):
                    chunk, row = chunk + 1, 0
            folder = self._snapshot_folder(run_id, probe, trajectory)
            try:
                write_row(folder, chunk, row, array)
            except OSError as exc:
                raise StoreError(
                    f"Cannot write the snapshot file in {folder}: {exc.strerror or exc}. "
                    f"{_WHERE_TO}"
                ) from exc
            conn.execute(
                "INSERT OR REPLACE INTO snapshots "
                "(run, probe, trajectory, step, chunk, row, size, dtype) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, probe, trajectory, step, chunk, row, array.size, dtype),
            )

    # ---------------------------------------------------------------- artifact folders

    def artifact_dir(self, run_id: str, step: int, probe: str) -> Path:
        """Folder ``<artifacts_root>/<run_id>/<probe>/step_<step:09d>/``, created on demand.

        ``probe`` (and ``run_id``) are sanitised to ``[A-Za-z0-9_.-]`` for the path. A
        read-only store returns the path without creating anything.
        """
        folder = self.artifact_path(run_id, step, probe)
        if self.read_only:
            return folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the artifact folder {folder}: {exc.strerror or exc}. {_WHERE_TO}"
            ) from exc
        return folder
