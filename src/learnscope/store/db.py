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

Modules
    The Store is assembled from :mod:`~learnscope.store.base` (connection, lifecycle, run
    look-up), :mod:`~learnscope.store.reading` and :mod:`~learnscope.store.writing` (its two
    halves). The rest of the store package: :mod:`~learnscope.store.connection` (opening,
    journal modes, busy timeouts, transactions), :mod:`~learnscope.store.schema`,
    :mod:`~learnscope.store.layout` (where every file beside the database goes),
    :mod:`~learnscope.store.provenance` (version, git revision, host and process),
    :mod:`~learnscope.store.ids`, :mod:`~learnscope.store.claims` (run identity),
    :mod:`~learnscope.store.eta`, :mod:`~learnscope.store.snapshots` and
    :mod:`~learnscope.store.artifacts`. The names documented here stay importable from this
    module.
"""

from __future__ import annotations

import os

from .claims import CLAIM_ACTIONS, NO_RUN_REASON, RunClaim, describe_difference
from .connection import (
    BUSY_TIMEOUT_S,
    JOURNAL_ENV,
    JOURNAL_MODES,
    JOURNAL_SWITCH_TIMEOUT_S,
)
from .errors import StoreError
from .eta import ETA_GAP_FACTOR, ETA_WINDOW
from .ids import RUN_ID_NAME_CHARS
from .provenance import (
    OTHER_HOST_STALE_S,
    _pid_alive,  # noqa: F401 (tests and benchmarks import it from here)
    parse_time,
)
from .reading import StoreReading
from .writing import RUN_STATUSES, StoreWriting

__all__ = [
    "BUSY_TIMEOUT_S",
    "CLAIM_ACTIONS",
    "ETA_GAP_FACTOR",
    "ETA_WINDOW",
    "JOURNAL_ENV",
    "JOURNAL_MODES",
    "JOURNAL_SWITCH_TIMEOUT_S",
    "NO_RUN_REASON",
    "OTHER_HOST_STALE_S",
    "RUN_ID_NAME_CHARS",
    "RUN_STATUSES",
    "RunClaim",
    "Store",
    "StoreError",
    "describe_difference",
    "open",
    "parse_time",
]

class Store(StoreReading, StoreWriting):
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


def open(
    path: str | os.PathLike[str], *, read_only: bool = False, journal: str | None = None
) -> Store:
    """Open (creating if needed) the learnscope run store at ``path``; see :class:`Store`.

    With ``read_only=True`` an existing store is opened for reading only and nothing is
    created; a missing file raises :class:`StoreError`. ``journal``: ``"wal"`` or
    ``"delete"`` (None: ``$LEARNSCOPE_STORE_JOURNAL``, else ``"wal"``).
    """
    return Store(path, read_only=read_only, journal=journal)
