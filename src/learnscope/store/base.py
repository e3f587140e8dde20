"""The part of a :class:`~learnscope.store.db.Store` that its reading and writing halves share:
the connection and its lifecycle (process and thread rules), write transactions, and looking
up runs by id, id prefix or name."""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from . import layout
from .connection import (
    _connect,
    _connect_read_only,
    _file_journal_mode,
    _immutable_notice,
    _journal_mode,
    write_transaction,
)
from .errors import StoreError
from .validation import _as_int

Self = TypeVar("Self", bound="StoreBase")

_MAX_LISTED = 10

# Connections of Stores that were inherited by a forked child. They are never closed or
# garbage-collected in the child (closing would touch the parent's WAL/lock state).
_ABANDONED: list[sqlite3.Connection] = []

# Stores whose immutable opening this process has warned about (once per path).
_NOTIFIED: set[str] = set()


class StoreBase:
    """Connection, lifecycle and run look-up of a Store (see :class:`learnscope.store.Store`)."""

    def __init__(
        self, path: str | os.PathLike[str], *, read_only: bool = False, journal: str | None = None
    ) -> None:
        """Open or create the store at ``path`` (the ``.db`` file); see the class docstring."""
        self.path: Path = Path(path).expanduser().resolve()
        self.read_only: bool = bool(read_only)
        self._journal = journal
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        #: Whether SQLite reads the file as immutable (see "Read-only access"); then
        #: ``notice`` says so in one line (also given once per process as a RuntimeWarning).
        self.immutable: bool = False
        self.notice: str | None = None
        if self.read_only:
            self._conn, self.immutable = _connect_read_only(self.path)
        else:
            self._conn = _connect(self.path, _journal_mode(journal))
        if self.immutable:
            self.journal_mode: str = _file_journal_mode(self.path)
            self.notice = _immutable_notice(self.path)
            if str(self.path) not in _NOTIFIED:
                _NOTIFIED.add(str(self.path))
                warnings.warn(f"learnscope: {self.notice}.", RuntimeWarning, stacklevel=2)
        else:
            mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
            self.journal_mode = str(mode).lower()

    # ---------------------------------------------------------------- lifecycle

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        mode = ", read-only" if self.read_only else ""
        mode += ", immutable" if self.immutable else ""
        return f"Store({str(self.path)!r}, {state}{mode})"

    def __enter__(self: Self) -> Self:
        """Return the store itself; it is closed when the ``with`` block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the store."""
        self.close()

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickle by path (read-only flag, journal): the receiving process opens its own."""
        if self.read_only:
            return (functools.partial(type(self), read_only=True), (str(self.path),))
        if self._journal is not None:
            return (functools.partial(type(self), journal=self._journal), (str(self.path),))
        return (type(self), (str(self.path),))

    def close(self) -> None:
        """Close the connection. Safe to call twice; the Store is unusable afterwards."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            if os.getpid() == self._pid:
                conn.close()
            else:
                _ABANDONED.append(conn)

    @property
    def artifacts_root(self) -> Path:
        """Folder for large per-measurement files: ``<db path without suffix>.artifacts``."""
        return layout.artifacts_root(self.path)

    def artifact_path(self, run_id: str, step: int, probe: str) -> Path:
        """The folder :meth:`artifact_dir` returns, without creating it (see
        :mod:`learnscope.store.layout`); ``run_id`` must be an exact run id."""
        step = _as_int(step, "step")
        with self._lock:
            self._require_run(self._db(), run_id)
        return layout.measurement_folder(self.artifacts_root, run_id, probe, step)

    # ---------------------------------------------------------------- internals

    def _db(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StoreError(
                f"The store {self.path} has been closed; open it again with "
                "learnscope.store.open(path)."
            )
        if os.getpid() != self._pid:
            raise StoreError(
                f"The store {self.path} was opened in process {self._pid} and cannot be used "
                f"in process {os.getpid()} (a forked child): SQLite connections must not cross "
                "fork(). Open a new Store in the child process."
            )
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE ... COMMIT`` transaction; rolled back on any error."""
        with self._lock:
            conn = self._db()
            if self.read_only:
                raise StoreError(
                    f"The store {self.path} was opened read-only; open it with "
                    "learnscope.store.open(path) to write."
                )
            with write_transaction(conn, self.path):
                yield conn

    def _known_runs(self, conn: sqlite3.Connection) -> str:
        total = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        if total == 0:
            return "The store has no runs yet."
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?",
                (_MAX_LISTED,),
            )
        ]
        more = f", {len(ids)} most recent of {total}" if total > len(ids) else ""
        return f"Known runs ({total} in all{more}): {', '.join(ids)}."

    def _require_run(self, conn: sqlite3.Connection, run_id: str) -> None:
        if not isinstance(run_id, str):
            raise TypeError(f"run_id must be a string, got {run_id!r}")
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            raise StoreError(
                f"Unknown run id {run_id!r} in the store {self.path}. {self._known_runs(conn)}"
            )

    def _resolve(self, conn: sqlite3.Connection, ref: str) -> str:
        """Run id for ``ref``: exact id, else unique id prefix, else most recent by name."""
        if not isinstance(ref, str) or not ref:
            raise StoreError(
                f"A run must be given as a non-empty id, id prefix or name, got {ref!r}. "
                f"{self._known_runs(conn)}"
            )
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (ref,)).fetchone() is not None:
            return ref
        matches = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM runs WHERE substr(id, 1, ?) = ? "
                "ORDER BY created_at DESC, rowid DESC",
                (len(ref), ref),
            )
        ]
        if len(matches) == 1:
            return matches[0]
        named = conn.execute(
            "SELECT id FROM runs WHERE name = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (ref,),
        ).fetchone()
        if named is not None:
            return str(named[0])
        if matches:
            shown = ", ".join(matches[:_MAX_LISTED])
            extra = f" (showing {_MAX_LISTED})" if len(matches) > _MAX_LISTED else ""
            raise StoreError(
                f"Run {ref!r} is ambiguous in the store {self.path}: it is the prefix of "
                f"{len(matches)} run ids{extra}: {shown}. Give more of the id."
            )
        raise StoreError(
            f"No run matches {ref!r} (as id, id prefix or name) in the store {self.path}. "
            f"{self._known_runs(conn)}"
        )

    def _has_identity(self, conn: sqlite3.Connection) -> bool:
        # a store older than schema version 3 opened read-only has no identity columns
        return any(row[1] == "fingerprint" for row in conn.execute("PRAGMA table_info(runs)"))

    def _has_snapshot_table(self, conn: sqlite3.Connection) -> bool:
        # a store of schema version 1 opened read-only has no snapshots table (yet)
        return conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshots'"
        ).fetchone() is not None

    def _snapshot_folder(self, run_id: str, probe: str, trajectory: str) -> Path:
        return layout.snapshot_folder(self.artifacts_root, run_id, probe, trajectory)
