"""Opening a store's SQLite connection: creating it with its schema, or read-only (immutable when
its folder cannot be written), journal modes, busy timeouts and write transactions (see
"Concurrency", "Journal modes", "Writes", "Read-only access" and "Schema check" in
:mod:`learnscope.store.db`)."""

from __future__ import annotations

import os
import random
import sqlite3
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError
from .schema import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SchemaMismatch,
    ensure_schema,
    mismatch_message,
    schema_differences,
)

#: Seconds a write waits for another process's write to finish before giving up.
BUSY_TIMEOUT_S = 60.0

#: SQLite journal modes a store can be opened with (see "Journal modes" above).
JOURNAL_MODES = ("wal", "delete")

#: Environment variable choosing the journal mode when ``Store(journal=None)``; default wal.
JOURNAL_ENV = "LEARNSCOPE_STORE_JOURNAL"

#: Seconds an open in ``delete`` mode waits for other connections to a WAL store to close.
JOURNAL_SWITCH_TIMEOUT_S = 5.0

_SCHEMA_REMEDY = (
    "The file was changed outside learnscope, or is damaged: restore it from a copy, or move "
    "it away (learnscope then starts a new store at that path)."
)
_WHERE_TO = "Choose a writable location with --store PATH (or pass another path to the store)."


def _open_error(path: Path, what: str, todo: str = _WHERE_TO) -> StoreError:
    return StoreError(f"Cannot open the learnscope store at {path}: {what}. {todo}")


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLite's "database is locked/busy" (worth retrying)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return True
    message = str(exc).lower()
    return "database is locked" in message or "database is busy" in message


class _JournalSwitchBusy(Exception):
    """A WAL store could not be switched to ``delete`` mode: other connections have it open."""


def _journal_mode(journal: str | None) -> str:
    """The journal mode to open with: ``journal``, else ``$LEARNSCOPE_STORE_JOURNAL``, else wal."""
    source = "the journal argument"
    if journal is None:
        journal, source = os.environ.get(JOURNAL_ENV) or "wal", f"${JOURNAL_ENV}"
    mode = str(journal).strip().lower()
    if mode not in JOURNAL_MODES:
        raise StoreError(
            f"Unknown store journal mode {journal!r} (from {source}); use 'wal' (one host, the "
            "default) or 'delete' (a store on shared storage written from several hosts)."
        )
    return mode


def _init_connection(conn: sqlite3.Connection, journal: str = "wal") -> str:
    """Configure a fresh connection and ensure the schema; return the journal mode.

    ``journal`` is ``"wal"`` or ``"delete"`` (see "Journal modes" in the module docstring);
    ``synchronous`` is NORMAL with WAL (safe there) and FULL with a rollback journal.

    Switching a new database to WAL takes a lock for which SQLite does not call the busy
    handler, so when several processes open a new store at the same moment some of them get
    "database is locked" at once. Every step here is idempotent, so the whole sequence is
    retried (with back-off) for up to :data:`BUSY_TIMEOUT_S` seconds. Switching a WAL store
    to ``delete`` fails the same way for as long as another connection has it open; that is
    given up after :data:`JOURNAL_SWITCH_TIMEOUT_S` seconds with :class:`_JournalSwitchBusy`.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    switch_deadline = time.monotonic() + JOURNAL_SWITCH_TIMEOUT_S
    delay = 0.002
    while True:
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            mode = str(conn.execute(f"PRAGMA journal_mode = {journal.upper()}").fetchone()[0])
            mode = mode.lower()
            conn.execute(f"PRAGMA synchronous = {'NORMAL' if mode == 'wal' else 'FULL'}")
            conn.execute("PRAGMA foreign_keys = ON")
            ensure_schema(conn)
            return mode
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() + delay > deadline:
                raise
            if journal != "wal" and time.monotonic() + delay > switch_deadline:
                current = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if current == "wal":
                    raise _JournalSwitchBusy(str(exc)) from exc
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 0.1)


def _writable_hint(path: Path) -> str:
    """``"; the folder ... is not writable"`` when that explains a failure, else ``""``."""
    try:
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return f"; the folder {path.parent} is not writable for this user"
        if path.exists() and not os.access(path, os.W_OK):
            return "; the file is read-only for this user"
    except OSError:
        pass
    return ""


def _connect(path: Path, journal: str = "wal") -> sqlite3.Connection:
    """Open (creating if needed) the database at ``path`` and make sure it is a store.

    ``journal``: ``"wal"`` or ``"delete"``, already validated (see :func:`_journal_mode`).
    """
    try:
        is_dir = path.is_dir()
    except OSError as exc:
        raise _open_error(path, f"it cannot be accessed ({exc.strerror or exc})") from exc
    if is_dir:
        raise _open_error(
            path,
            "that path is a directory, not a database file",
            f"Pass the path of a .db file instead, e.g. {path / 'runs.db'}.",
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise _open_error(path, "the file exists but this user cannot read and write it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        what = f"{exc.filename or path.parent} exists and is not a folder"
        raise _open_error(path, what) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise _open_error(path, f"cannot create the folder {path.parent} ({reason})") from exc
    try:
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        what = f"SQLite cannot open or create the file ({exc}){_writable_hint(path)}"
        raise _open_error(path, what) from exc
    try:
        mode = _init_connection(conn, journal)
    except _JournalSwitchBusy as exc:
        conn.close()
        raise _open_error(
            path,
            f"journal mode {journal!r} was asked for, but the store is in WAL mode and open in "
            f"another connection (a run, sweep or dashboard), so SQLite cannot switch it ({exc})",
            "Every process writing to a store at the same time must use the same journal "
            f"mode: stop the others (runs, sweeps, dashboards) first, or set {JOURNAL_ENV} to "
            "the same value for all of them.",
        ) from exc
    except SchemaMismatch as exc:
        conn.close()
        raise _open_error(path, str(exc), _SCHEMA_REMEDY) from exc
    except ValueError as exc:
        conn.close()
        raise _open_error(
            path, str(exc), "Move that file away, or choose another location with --store PATH."
        ) from exc
    except sqlite3.DatabaseError as exc:
        conn.close()
        message = str(exc)
        if "not a database" in message or "malformed" in message:
            raise _open_error(
                path,
                f"the file exists but is not a usable SQLite database ({message})",
                "Move that file away, or choose another location with --store PATH.",
            ) from exc
        what = f"the database cannot be written ({message}){_writable_hint(path)}"
        raise _open_error(path, what) from exc
    if journal == "delete" and mode != "delete":
        conn.close()
        raise _open_error(
            path,
            f"journal mode 'delete' was asked for, but SQLite kept the journal mode {mode!r}",
            f"Open it with journal 'wal' (unset {JOURNAL_ENV}), or move the store to another "
            "location.",
        )
    if journal == "wal" and mode != "wal":
        warnings.warn(
            f"learnscope store {path}: SQLite could not switch to WAL mode (journal mode is "
            f"{mode!r}); concurrent writers will block readers. Network file systems often "
            "cause this - prefer a local disk, or journal 'delete' for a store shared by "
            f"several hosts (${JOURNAL_ENV}=delete).",
            RuntimeWarning,
            stacklevel=3,
        )
    return conn


def _folder_writable(folder: Path) -> bool:
    """Whether this process may create files in ``folder``.

    ``access(2)`` answers no for a read-only mount even to root (EROFS), and for a folder
    whose permissions forbid it to anyone else.
    """
    try:
        return os.access(folder, os.W_OK | os.X_OK)
    except OSError:
        return False


def _cannot_open(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is SQLite's "unable to open database file" (SQLITE_CANTOPEN)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith("SQLITE_CANTOPEN") or "unable to open database file" in str(exc)


def _file_journal_mode(path: Path) -> str:
    """``"wal"`` when the database header of ``path`` marks a WAL database, else ``"delete"``."""
    try:
        with path.open("rb") as file:
            header = file.read(20)
    except OSError:
        return "delete"
    return "wal" if len(header) == 20 and header[18] == 2 else "delete"


def _immutable_notice(path: Path) -> str:
    """What a Store opened with ``immutable=1`` tells its user (see "Read-only access")."""
    notice = (
        f"opened the store {path} read-only and immutable: its folder {path.parent} cannot be "
        "written, so SQLite cannot create the -wal/-shm files that reading a WAL store needs; "
        "changes made by a running writer will not be seen"
    )
    wal = path.with_name(path.name + "-wal")
    try:
        size = wal.stat().st_size
    except OSError:
        size = 0
    if size:
        notice += f", nor the {size:,} bytes of recent changes in {wal.name}"
    return notice


def _open_read_only(path: Path, *, immutable: bool) -> tuple[sqlite3.Connection, int, int, int]:
    """A ``mode=ro`` connection to ``path`` (``immutable=1`` too when asked) and its
    application id, schema version and number of schema objects."""
    query = "mode=ro&immutable=1" if immutable else "mode=ro"
    conn = sqlite3.connect(
        f"{path.as_uri()}?{query}",
        uri=True,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=False,
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA query_only = ON")
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        n_objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except BaseException:
        conn.close()
        raise
    return conn, app_id, version, n_objects


def _connect_read_only(path: Path) -> tuple[sqlite3.Connection, bool]:
    """Open the existing store at ``path`` read-only (``mode=ro``); create nothing.

    Returns the connection and whether it is immutable: when SQLite cannot open a WAL store
    because its folder cannot be written (no ``-wal``/``-shm`` files can be made there), the
    store is opened again with ``immutable=1``, which reads the ``.db`` file alone.
    """
    todo_missing = (
        "Start a run that writes to it (e.g. `learnscope run quickstart --store PATH`), or "
        "pass the path of an existing store with --store PATH."
    )
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:
        raise _open_error(path, f"it cannot be accessed ({exc.strerror or exc})") from exc
    if not exists:
        raise _open_error(path, "the file does not exist", todo_missing)
    if is_dir:
        raise _open_error(
            path,
            "that path is a directory, not a database file",
            f"Pass the path of a .db file instead, e.g. {path / 'runs.db'}.",
        )
    if not os.access(path, os.R_OK):
        raise _open_error(path, "this user cannot read the file", "Check its permissions.")
    move_away = "Pass the path of a learnscope store with --store PATH."
    immutable = False
    try:
        try:
            conn, app_id, version, n_objects = _open_read_only(path, immutable=False)
        except sqlite3.OperationalError as exc:
            if not _cannot_open(exc) or _folder_writable(path.parent):
                raise
            immutable = True
            conn, app_id, version, n_objects = _open_read_only(path, immutable=True)
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if "not a database" in message or "malformed" in message:
            what = f"the file exists but is not a usable SQLite database ({message})"
            raise _open_error(path, what, move_away) from exc
        what = f"the database cannot be read ({message}){_writable_hint(path)}"
        raise _open_error(path, what, "Try again in a moment.") from exc
    except sqlite3.Error as exc:
        raise _open_error(path, f"SQLite cannot open the file read-only ({exc})") from exc
    if app_id != APPLICATION_ID:
        conn.close()
        if app_id == 0 and n_objects == 0:
            raise _open_error(
                path,
                "the file is empty, not (yet) a learnscope store",
                "If a run is creating it right now, try again in a moment; otherwise "
                + move_away[0].lower()
                + move_away[1:],
            )
        what = (
            "it is an SQLite database but not a learnscope store "
            f"(application_id {app_id:#x}, expected {APPLICATION_ID:#x})"
        )
        raise _open_error(path, what, move_away)
    if version > SCHEMA_VERSION:
        conn.close()
        what = (
            f"it was written by a newer learnscope (store schema version {version}, this "
            f"learnscope reads up to {SCHEMA_VERSION})"
        )
        raise _open_error(path, what, "Upgrade learnscope.")
    try:
        differences = schema_differences(conn, version)
    except sqlite3.Error as exc:
        conn.close()
        raise _open_error(path, f"the database cannot be read ({exc})", move_away) from exc
    if differences:
        conn.close()
        raise _open_error(path, mismatch_message(differences, version), _SCHEMA_REMEDY)
    return conn, immutable


def roll_back(conn: sqlite3.Connection) -> None:
    """Roll back ``conn``'s open transaction, if any, keeping whatever error is being raised."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # keep the original error; SQLite rolls back anyway
            pass


@contextmanager
def write_transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE ... COMMIT`` transaction on ``conn`` (the store at ``path``);
    rolled back on any error. The caller holds the Store's lock."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise StoreError(
            f"Cannot write to the store {path}: {exc} (waited up to "
            f"{BUSY_TIMEOUT_S:.0f} s for other writers)."
        ) from exc
    except BaseException:
        # A signal (Ctrl-C) can raise after SQLite has begun the transaction but
        # before execute() returns; left open, it would refuse every later write.
        roll_back(conn)
        raise
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        roll_back(conn)
        if isinstance(exc, sqlite3.OperationalError):
            raise StoreError(f"Cannot write to the store {path}: {exc}.") from exc
        raise
