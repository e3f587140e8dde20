"""Embedded SQLite run store: one ``.db`` file holding runs, measurements and metric values.

Concurrency and processes
    Every :class:`Store` owns one SQLite connection, opened in WAL mode (by default; see
    "Journal modes" below) with a busy timeout of :data:`BUSY_TIMEOUT_S` seconds, so several
    processes may write to one store at once (each write waits for the others) and readers
    never block writers. A connection belongs to the
    process that opened it: a Store opened in a parent must **not** be used in a forked child;
    doing so raises :class:`StoreError` - open a new Store in the child instead. (Pickling a
    Store, e.g. to hand it to a ``spawn`` child, pickles only its path; the child reopens it.)
    Within a process a Store may be shared between threads; calls are serialised by a lock.

Journal modes and shared (network) storage
    WAL mode keeps an index in shared memory (the ``-shm`` file), which works only when every
    process using the database runs on one host: on NFS and other network file systems,
    writers on different hosts would corrupt it. For a store on shared storage written from
    several hosts (a Ray cluster), open it in rollback-journal mode:
    ``Store(path, journal="delete")``, or set the environment variable
    ``LEARNSCOPE_STORE_JOURNAL=delete`` for every process (:data:`JOURNAL_ENV`; default
    ``wal``). Writes then lock the whole file through POSIX locks, which the shared file system
    must support (NFSv4 and most cluster file systems do); readers wait while a write
    commits, and each commit is synced in full (``synchronous=FULL``). The mode is stored in
    the file: every process writing at the same time must use the same one. Switching a WAL
    store to ``delete`` needs it to be closed everywhere else, or opening fails with a
    :class:`StoreError` saying so.

Writes
    Every write is one explicit ``BEGIN IMMEDIATE ... COMMIT`` transaction. A measurement (all
    of its metric rows, its row in ``measurements`` and the run's ``last_step``) is therefore
    stored completely or not at all. With WAL and ``synchronous=NORMAL`` a process killed at
    any point (SIGKILL included) leaves the database readable with every committed
    measurement intact; at most the measurement in flight is lost. A power failure may
    additionally lose the last few commits, never consistency.

Non-finite values
    SQLite has no NaN: a NaN value is stored as NULL and read back as NaN. ``+inf`` and
    ``-inf`` are stored as REAL and read back unchanged.

Interrupted runs
    A run whose stored status is ``'running'`` but whose recorded process (same host, pid no
    longer alive, or alive with another start time: a reused pid) is gone, or that was
    released (:meth:`Store.release_run`, Ctrl-C), is *reported* as ``'interrupted'`` by
    :meth:`Store.runs` and :meth:`Store.run`; the database itself keeps ``'running'``. The
    recorded host/pid/pid_start are those of the process that last created, claimed, resumed
    (``set_status(..., 'running')``) or wrote a measurement to the run.

Run identity and ownership
    A run may carry a ``fingerprint`` (sha256 of its ``identity``, the canonical JSON of the
    settings that decide what it measures; see :mod:`learnscope.experiments.identity`).
    :meth:`Store.claim_run` decides in one ``BEGIN IMMEDIATE`` transaction, among the runs
    named ``name`` or ``name~...``: a run with the fingerprint that a live process owns is
    ``busy`` (left alone); a finished or diverged one is reused; an unfinished one is resumed
    and this process becomes its owner; else a new run owned by this process is created
    (named ``name~<fingerprint prefix>`` when a run called ``name`` has other settings).
    Concurrent claims are serialised by SQLite, so one name and fingerprint never has two live
    owners nor two runs created at once. Runs without a fingerprint are never reused. The owner
    is ``host``, ``pid`` and ``pid_start`` (the process's start time); a run last written from
    another host counts as owned until :data:`OTHER_HOST_STALE_S` seconds after its last write.
    :meth:`Store.plan_run` makes the same decision without writing.

Read-only access
    ``Store(path, read_only=True)`` (or ``open(path, read_only=True)``) never creates the file,
    its folders or the schema: it opens SQLite with a ``mode=ro`` URI and raises
    :class:`StoreError` when the file is missing or is not a learnscope store. Every write
    method raises :class:`StoreError`. It reads consistently while other processes write (WAL).
    To read a WAL database SQLite needs its ``-wal`` and ``-shm`` side files; when no writer
    has them open, the reader creates them (empty) next to the store and leaves them there.
    The ``.db`` file itself is never modified. When they are missing and cannot be created
    because the store's folder cannot be written (a read-only mount, a shared results folder),
    the store is opened with SQLite's ``immutable=1``: it reads the ``.db`` file alone and
    does not see changes made by a running writer (nor any left in a ``-wal`` file). Such a
    Store has ``immutable`` True and a one-line ``notice`` saying so, which is also given once
    per process and path as a :class:`RuntimeWarning`; the CLI prints it as a note.

Schema check
    Opening a store (read-only or not) compares its tables and columns (``PRAGMA
    table_info``, one per table) with those its schema version promises and raises
    :class:`StoreError` naming each missing table and column. Extra tables and columns are
    tolerated; when writing, an extra ``NOT NULL`` column without a default is reported too.
    Column types are not compared.

Run ids
    A run's id starts with its name sanitised to ``[A-Za-z0-9_.-]``, cut to
    :data:`RUN_ID_NAME_CHARS` characters (then ending in ``_`` and 8 hex digits of the
    name's sha256), so ids and artifact folder names stay short whatever the name; the full
    name is kept in the ``name`` column.

Estimated time to completion
    ``eta_seconds`` in :meth:`Store.runs` / :meth:`Store.run` estimates how many seconds a
    running run needs, counted from its latest measurement, to reach ``total_steps``:
    ``(total_steps - last_step) * seconds_per_step`` (step s is the network after s updates,
    so a run is complete at ``last_step == total_steps``). ``seconds_per_step`` comes from
    the ``completed_at`` times of the run's recent measurements: for each probe the last
    :data:`ETA_WINDOW` measurements are taken, and the probe whose window spans the most
    steps is used (a probe that logs every step would otherwise hide the cost of the sparser
    measurements). Between consecutive measurements of that window, an interval whose time
    per step is more than :data:`ETA_GAP_FACTOR` times the median of the other intervals is
    dead time (the process was gone before a resume) and is left out; the rate is then total
    time over total steps of the remaining intervals. ``eta_seconds`` is ``0.0`` for a
    ``'finished'`` run and for a running run that has reached ``total_steps``; it is NaN when
    ``total_steps`` is unknown, when the run has fewer than two measurements of one probe at
    different steps, and for ``'failed'``, ``'diverged'`` and ``'interrupted'`` runs (nothing
    is making progress).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import operator
import os
import random
import re
import secrets
import socket
import sqlite3
import subprocess
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import snapshots as snapshot_files
from .schema import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SchemaMismatch,
    ensure_schema,
    mismatch_message,
    schema_differences,
)

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "BUSY_TIMEOUT_S",
    "ETA_GAP_FACTOR",
    "ETA_WINDOW",
    "JOURNAL_ENV",
    "JOURNAL_MODES",
    "OTHER_HOST_STALE_S",
    "RUN_ID_NAME_CHARS",
    "RUN_STATUSES",
    "RunClaim",
    "Store",
    "StoreError",
    "open",
]

#: Seconds a write waits for another process's write to finish before giving up.
BUSY_TIMEOUT_S = 60.0

#: SQLite journal modes a store can be opened with (see "Journal modes" above).
JOURNAL_MODES = ("wal", "delete")

#: Environment variable choosing the journal mode when ``Store(journal=None)``; default wal.
JOURNAL_ENV = "LEARNSCOPE_STORE_JOURNAL"

#: Seconds an open in ``delete`` mode waits for other connections to a WAL store to close.
JOURNAL_SWITCH_TIMEOUT_S = 5.0

#: Statuses a run can be stored with; all but ``'running'`` are terminal.
RUN_STATUSES = ("running", "finished", "failed", "diverged")

#: A running run last written from another host (whose process cannot be checked from here)
#: counts as owned by a live process until it has not been written for this many seconds.
OTHER_HOST_STALE_S = 3600.0

#: Number of recent measurements (per probe) that ``eta_seconds`` is estimated from.
ETA_WINDOW = 20

#: An interval between measurements this many times slower per step than the median of the
#: others counts as dead time (a resume after the process was gone) for ``eta_seconds``.
ETA_GAP_FACTOR = 10.0

#: At most this many characters of a run's name go into its id (and so into the artifact
#: folder's name); a longer name is cut and tagged with a hash of the whole name.
RUN_ID_NAME_CHARS = 80

_TERMINAL = frozenset(RUN_STATUSES) - {"running"}
_SCHEMA_TODO = (
    "The file was changed outside learnscope, or is damaged: restore it from a copy, or move "
    "it away (learnscope then starts a new store at that path)."
)
_WHERE_TO = "Choose a writable location with --store PATH (or pass another path to the store)."
_MAX_LISTED = 10
_METRIC_COLUMNS = ["run", "step", "epoch", "probe", "layer", "layer_index", "measure", "value"]
_RUN_COLUMNS = [
    "id", "name", "experiment", "status", "created_at", "updated_at", "finished_at",
    "total_steps", "last_step", "progress", "eta_seconds", "measurements", "version", "git_rev",
    "host", "pid", "error", "config", "fingerprint",
]  # fmt: skip

# Connections of Stores that were inherited by a forked child. They are never closed or
# garbage-collected in the child (closing would touch the parent's WAL/lock state).
_ABANDONED: list[sqlite3.Connection] = []

# Stores whose immutable opening this process has warned about (once per path).
_NOTIFIED: set[str] = set()


class StoreError(RuntimeError):
    """A run store cannot be opened, or a run/write request cannot be satisfied."""


# --------------------------------------------------------------------------- helpers


def _now() -> str:
    """Current time as ISO-8601 text in UTC, microsecond precision."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _time_text(seconds: float) -> str:
    """``seconds`` since the epoch as :func:`_now` writes times."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds")


def _safe_name(text: str) -> str:
    """Replace every character outside ``[A-Za-z0-9_.-]`` with ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _id_prefix(name: str) -> str:
    """The part of a run id made from the run's ``name``: sanitised, at most
    :data:`RUN_ID_NAME_CHARS` characters (ASCII, so as many bytes).

    A longer name keeps its first characters and ends with ``_`` and 8 hex digits of the
    sha256 of the whole name, so long names that differ only after the cut get different ids.
    """
    prefix = _safe_name(name) or "run"
    if len(prefix) <= RUN_ID_NAME_CHARS:
        return prefix
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{prefix[:RUN_ID_NAME_CHARS - 9]}_{digest}"


def _safe_component(text: str) -> str:
    """A sanitised string that is usable as a single path component."""
    safe = _safe_name(text)
    return "_" if safe in ("", ".", "..") else safe


@lru_cache(maxsize=1)
def _git_revision() -> str | None:
    """``git rev-parse HEAD`` of the tree holding the learnscope package, or None."""
    try:
        import learnscope

        package_dir = Path(learnscope.__file__).resolve().parent
        result = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError, TypeError, ImportError):
        return None
    rev = result.stdout.strip()
    if result.returncode != 0 or not re.fullmatch(r"[0-9a-f]{7,64}", rev):
        return None
    return rev


def _learnscope_version() -> str | None:
    """``learnscope.__version__``, or None if it cannot be determined."""
    try:
        import learnscope
    except ImportError:
        return None
    version = getattr(learnscope, "__version__", None)
    return None if version is None else str(version)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (zombies count as dead)."""
    if pid <= 0:
        return False
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a killed but not yet reaped child is still in the process table
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rsplit(")", 1)[-1].split()
    return not (fields and fields[0] in ("Z", "X"))


def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot, from /proc), or None if unknown.

    Together with the pid it names one process: a pid reused by a later process has another
    start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of stat; fields[0] is field 3


@lru_cache(maxsize=4)
def _own_start(pid: int) -> str | None:
    """:func:`_process_start` of this process (cached per pid: a forked child has its own)."""
    return _process_start(pid)


def _owner_alive(host: Any, pid: Any, pid_start: Any, updated_at: Any) -> bool:
    """Whether the process recorded as a run's owner still runs (see "Run ownership").

    On this host: the pid exists and, when its start time was recorded, is the same process.
    On another host (cannot be checked): alive until the run has not been written for
    :data:`OTHER_HOST_STALE_S` seconds. No recorded pid: no owner.
    """
    import pandas as pd

    if pid is None or pd.isna(pid):
        return False
    if host != socket.gethostname():
        written = parse_time(updated_at)
        return written is not None and time.time() - written < OTHER_HOST_STALE_S
    pid = int(pid)
    if not _pid_alive(pid):
        return False
    if pid_start is None or (not isinstance(pid_start, str) and pd.isna(pid_start)):
        return True
    now = _process_start(pid)
    return now is None or now == str(pid_start)


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


def _as_int(value: Any, what: str) -> int:
    """``operator.index(value)`` with a readable error (rejects floats and bools)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None


def _name_list(names: str | list[str] | None, what: str) -> list[str] | None:
    """Normalise a ``str | list[str] | None`` filter argument."""
    if names is None:
        return None
    if isinstance(names, str):
        return [names]
    result = list(names)
    for name in result:
        if not isinstance(name, str):
            raise TypeError(f"{what} names must be strings, got {name!r}")
    return result


def _listing(names: list[str], limit: int = 50) -> str:
    """``a, b, c`` (at most ``limit`` names, then how many more)."""
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names) - limit} more)"
    return shown


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
        raise _open_error(path, str(exc), _SCHEMA_TODO) from exc
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
        raise _open_error(path, mismatch_message(differences, version), _SCHEMA_TODO)
    return conn, immutable


def _prepare_rows(run_id: str, step: Any, epoch: Any, probe: Any, rows: Iterable[tuple]
                  ) -> tuple[int, float | None, list[tuple]]:
    """Checked (step, epoch, metric rows) of one measurement, as ``write_measurement`` stores."""
    step = _as_int(step, "step")
    if epoch is not None:
        if isinstance(epoch, bool):
            raise TypeError(f"epoch must be a number or None, got {epoch!r}")
        epoch = float(epoch)
    if not isinstance(probe, str) or not probe:
        raise ValueError(f"probe must be a non-empty string, got {probe!r}")
    prepared: list[tuple[str, int, str, str, int, str, float | None]] = []
    for i, row in enumerate(rows):
        try:
            layer, layer_index, measure, value = row
            if not isinstance(layer, str) or not isinstance(measure, str):
                raise TypeError("layer and measure must be strings")
            index = _as_int(layer_index, "layer_index")
            number = None if value is None else float(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"Row {i} of measurement (step {step}, probe {probe!r}) is {row!r}: "
                f"expected (layer: str, layer_index: int, measure: str, value: float) "
                f"({exc})"
            ) from exc
        if number is not None and math.isnan(number):
            number = None  # SQLite stores NaN as NULL anyway; be explicit about it
        prepared.append((run_id, step, probe, layer, index, measure, number))
    return step, epoch, prepared


def parse_time(text: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 time (naive means UTC), or None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _seconds_per_step(points: list[tuple[int, float]]) -> float:
    """Seconds per step from ``(step, time)`` points sorted by step, dead time left out.

    NaN when there is no interval with a positive step difference and a non-negative time
    difference.
    """
    intervals = [
        (s2 - s1, t2 - t1)
        for (s1, t1), (s2, t2) in zip(points, points[1:], strict=False)
        if s2 > s1 and t2 >= t1
    ]
    if not intervals:
        return math.nan
    rates = [dt / ds for ds, dt in intervals]
    kept = []
    for i, interval in enumerate(intervals):
        others = rates[:i] + rates[i + 1 :]
        if others:
            others.sort()
            mid = len(others) // 2
            median = others[mid] if len(others) % 2 else (others[mid - 1] + others[mid]) / 2
            if rates[i] > ETA_GAP_FACTOR * median and median > 0:
                continue  # dead time: the process was gone before a resume
        kept.append(interval)
    steps = sum(ds for ds, _ in kept)
    return sum(dt for _, dt in kept) / steps


_RECENT_SQL = """
SELECT run, probe, step, completed_at FROM (
    SELECT run, probe, step, completed_at,
           row_number() OVER (PARTITION BY run, probe ORDER BY step DESC) AS k
    FROM measurements WHERE run IN ({marks})
) WHERE k <= ? ORDER BY run, probe, step
"""


def _eta_seconds(
    conn: sqlite3.Connection, runs: list[tuple[str, str, int | None, int | None]]
) -> dict[str, float]:
    """``eta_seconds`` (see the module docstring) for ``(id, status, total, last_step)`` rows."""
    result: dict[str, float] = {}
    estimate = []
    for run_id, status, total, last in runs:
        if status == "finished":
            result[run_id] = 0.0
        elif status != "running" or total is None or total <= 0:
            result[run_id] = math.nan
        elif last is not None and last >= total:
            result[run_id] = 0.0
        else:
            result[run_id] = math.nan
            estimate.append((run_id, total, last))
    if not estimate:
        return result
    windows: dict[str, dict[str, list[tuple[int, float]]]] = {}
    ids = [run_id for run_id, _, _ in estimate]
    sql = _RECENT_SQL.format(marks=", ".join("?" * len(ids)))
    for run_id, probe, step, completed_at in conn.execute(sql, (*ids, ETA_WINDOW)):
        moment = parse_time(completed_at)
        if moment is not None:
            windows.setdefault(run_id, {}).setdefault(probe, []).append((int(step), moment))
    for run_id, total, last in estimate:
        probes = windows.get(run_id, {})
        if not probes:
            continue
        # the window that spans the most steps (then: the most measurements; then: by name)
        _, _, _, points = max((p[-1][0] - p[0][0], len(p), name, p) for name, p in probes.items())
        rate = _seconds_per_step(points)
        if not math.isnan(rate):
            done = last if last is not None else 0
            result[run_id] = max(total - done, 0) * rate
    return result


_RUNS_SQL = """
SELECT r.id, r.name, r.experiment, r.status, r.created_at, r.updated_at, r.finished_at,
       r.total_steps, r.last_step, COALESCE(m.n, 0) AS measurements, r.version, r.git_rev,
       r.host, r.pid, r.error, r.config, {identity_columns}
FROM runs AS r
LEFT JOIN (SELECT run, count(*) AS n FROM measurements GROUP BY run) AS m ON m.run = r.id
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


# --------------------------------------------------------------------------- the store


class Store:
    """A learnscope run store backed by one SQLite file (see the module docstring).

    ``Store(path)`` opens the database at ``path``, creating its parent folders and the
    schema when missing; it raises :class:`StoreError` when that is impossible.
    ``Store(path, read_only=True)`` opens an existing store for reading only and creates
    nothing (see "Read-only access" in the module docstring). ``journal`` is the SQLite
    journal mode of a writing Store: ``"wal"`` (one host) or ``"delete"`` (a store on shared
    storage written from several hosts); None takes ``$LEARNSCOPE_STORE_JOURNAL``, else
    ``"wal"`` (see "Journal modes" in the module docstring). ``journal_mode`` tells the mode
    in use (a read-only Store reports the file's mode). Use it as a context manager, or call
    :meth:`close` when done.
    """

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

    def __enter__(self) -> Store:
        """Return the store itself; it is closed when the ``with`` block ends."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the store."""
        self.close()

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickle by path (read-only flag, journal): the receiving process opens its own."""
        if self.read_only:
            return (functools.partial(Store, read_only=True), (str(self.path),))
        if self._journal is not None:
            return (functools.partial(Store, journal=self._journal), (str(self.path),))
        return (Store, (str(self.path),))

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
        return self.path.with_name(self.path.with_suffix("").name + ".artifacts")

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
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreError(
                    f"Cannot write to the store {self.path}: {exc} (waited up to "
                    f"{BUSY_TIMEOUT_S:.0f} s for other writers)."
                ) from exc
            except BaseException:
                # A signal (Ctrl-C) can raise after SQLite has begun the transaction but
                # before execute() returns; left open, it would refuse every later write.
                self._roll_back(conn)
                raise
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                self._roll_back(conn)
                if isinstance(exc, sqlite3.OperationalError):
                    raise StoreError(f"Cannot write to the store {self.path}: {exc}.") from exc
                raise

    @staticmethod
    def _roll_back(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:  # keep the original error; SQLite rolls back anyway
                pass

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

    def _has_identity(self, conn: sqlite3.Connection) -> bool:
        # a store older than schema version 3 opened read-only has no identity columns
        return any(row[1] == "fingerprint" for row in conn.execute("PRAGMA table_info(runs)"))

    def _metrics_frame(self, sql: str, params: list[Any]) -> pd.DataFrame:
        import pandas as pd

        frame = pd.read_sql_query(sql, self._db(), params=params)
        frame = frame.astype(
            {"step": "int64", "epoch": "float64", "layer_index": "int64", "value": "float64"}
        )
        return frame[_METRIC_COLUMNS].reset_index(drop=True)

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
            run_id = f"{prefix}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
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
            str(name): snapshot_files.as_snapshot(array, snapshot_dtype, str(name))
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

    def _snapshot_folder(self, run_id: str, probe: str, trajectory: str) -> Path:
        return (self.artifacts_root / _safe_component(run_id) / _safe_component(probe)
                / "snapshots" / snapshot_files.folder_name(trajectory))

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
                if row >= snapshot_files.rows_per_chunk(array.size, dtype):
                    chunk, row = chunk + 1, 0
            folder = self._snapshot_folder(run_id, probe, trajectory)
            try:
                snapshot_files.write_row(folder, chunk, row, array)
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

    def artifact_dir(self, run_id: str, step: int, probe: str) -> Path:
        """Folder ``<artifacts_root>/<run_id>/<probe>/step_<step:09d>/``, created on demand.

        ``probe`` (and ``run_id``) are sanitised to ``[A-Za-z0-9_.-]`` for the path. A
        read-only store returns the path without creating anything.
        """
        step = _as_int(step, "step")
        with self._lock:
            self._require_run(self._db(), run_id)
        folder = (
            self.artifacts_root
            / _safe_component(run_id)
            / _safe_component(probe)
            / f"step_{step:09d}"
        )
        if self.read_only:
            return folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the artifact folder {folder}: {exc.strerror or exc}. {_WHERE_TO}"
            ) from exc
        return folder

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
    ) -> pd.DataFrame:
        """Metric values in long form.

        Columns: run, step, epoch, probe, layer, layer_index, measure, value; sorted by run,
        step, probe, layer_index, measure. ``run`` is resolved like :meth:`run` (None: all
        runs). A ``layer``, ``measure`` or ``probe`` that does not occur (in the run, or in
        the store when ``run`` is None) raises :class:`ValueError` listing the available
        names. ``since_step`` keeps only the rows with ``step > since_step`` (for polling a
        run that is being written).
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

    def _has_snapshot_table(self, conn: sqlite3.Connection) -> bool:
        # a store of schema version 1 opened read-only has no snapshots table (yet)
        return conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshots'"
        ).fetchone() is not None

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
    ) -> snapshot_files.SnapshotSeries:
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
        return snapshot_files.SnapshotSeries(
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


def open(
    path: str | os.PathLike[str], *, read_only: bool = False, journal: str | None = None
) -> Store:
    """Open (creating if needed) the learnscope run store at ``path``; see :class:`Store`.

    With ``read_only=True`` an existing store is opened for reading only and nothing is
    created; a missing file raises :class:`StoreError`. ``journal``: ``"wal"`` or
    ``"delete"`` (None: ``$LEARNSCOPE_STORE_JOURNAL``, else ``"wal"``).
    """
    return Store(path, read_only=read_only, journal=journal)
