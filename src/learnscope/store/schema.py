"""SQLite schema of the learnscope run store.

Four tables:

``runs``
    One row per training run: identity, status, bookkeeping and the run's config (JSON text).
``measurements``
    One row per completed measurement, i.e. per ``(run, step, probe)``. It is written in the
    same transaction as the measurement's metric rows, so a row here means "all metric rows of
    this measurement are stored".
``metrics``
    Long-form values: one row per ``(run, step, probe, layer, measure)``. That tuple is the
    primary key, which makes rewriting a measurement (``INSERT OR REPLACE``) idempotent.
``snapshots``
    Index of weight snapshots (the Weights probe): one row per ``(run, probe, trajectory,
    step)`` saying where the snapshot's values lie in the artifact tree (chunk file and row).
    Written in the measurement's transaction, after the values themselves; see
    :mod:`learnscope.store.snapshots`.

The database is marked with ``PRAGMA application_id`` so that an unrelated SQLite file is not
mistaken for a store, and versioned with ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache

#: Value of ``PRAGMA application_id`` for learnscope stores (ASCII "LSCO").
APPLICATION_ID = 0x4C53434F

#: Columns of ``runs`` added after version 1, in order: ``(name, SQL type)``. A store of an
#: older version gains them (``ALTER TABLE ... ADD COLUMN``) when opened for writing.
ADDED_RUN_COLUMNS = (("fingerprint", "TEXT"), ("identity", "TEXT"), ("pid_start", "TEXT"))

#: Value of ``PRAGMA user_version``; bump it and add a migration when the schema changes.
SCHEMA_VERSION = 3
# Version history: 1 runs / measurements / metrics; 2 adds ``snapshots`` (created on open);
# 3 adds the run identity and owner columns of ``runs`` (``fingerprint``, ``identity``,
# ``pid_start``; added on open, NULL for the runs stored before: such runs are never reused).

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    experiment  TEXT,
    status      TEXT NOT NULL
                CHECK (status IN ('running', 'finished', 'failed', 'diverged')),
    created_at  TEXT NOT NULL,   -- ISO-8601, UTC
    updated_at  TEXT NOT NULL,   -- ISO-8601, UTC
    finished_at TEXT,            -- ISO-8601, UTC; set by the terminal statuses
    total_steps INTEGER,
    last_step   INTEGER,         -- greatest step of any completed measurement
    version     TEXT,            -- learnscope.__version__ of the writer
    git_rev     TEXT,            -- git revision of the learnscope source tree, if known
    host        TEXT,            -- host name of the process responsible for the run
    pid         INTEGER,         -- process id of the process responsible for the run
    error       TEXT,
    config      TEXT NOT NULL,   -- json.dumps(config, sort_keys=True, default=str)
    fingerprint TEXT,            -- sha256 of `identity`; NULL: no identity, never reused
    identity    TEXT,            -- canonical JSON of the settings the fingerprint hashes
    pid_start   TEXT             -- start time of process `pid` (tells a reused pid apart)
);

CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_by_name ON runs (name, created_at);
CREATE INDEX IF NOT EXISTS runs_by_fingerprint ON runs (fingerprint, created_at);

CREATE TABLE IF NOT EXISTS measurements (
    run          TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step         INTEGER NOT NULL,
    probe        TEXT NOT NULL,
    epoch        REAL,
    n_rows       INTEGER NOT NULL,
    completed_at TEXT NOT NULL,  -- ISO-8601, UTC
    PRIMARY KEY (run, step, probe)
);

CREATE TABLE IF NOT EXISTS metrics (
    run         TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    probe       TEXT NOT NULL,
    layer       TEXT NOT NULL,
    layer_index INTEGER NOT NULL,
    measure     TEXT NOT NULL,
    value       REAL,            -- NaN is stored as NULL (SQLite has no NaN); +-inf as REAL
    PRIMARY KEY (run, step, probe, layer, measure)
);

CREATE INDEX IF NOT EXISTS metrics_by_measure
    ON metrics (run, measure, layer, step);

CREATE TABLE IF NOT EXISTS snapshots (
    run        TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    probe      TEXT NOT NULL,
    trajectory TEXT NOT NULL,
    step       INTEGER NOT NULL,
    chunk      INTEGER NOT NULL,   -- file chunk_<chunk:05d>.bin of the trajectory's folder
    row        INTEGER NOT NULL,   -- row of the snapshot in that file
    size       INTEGER NOT NULL,   -- values per snapshot
    dtype      TEXT NOT NULL,      -- float32 or float16, little-endian
    PRIMARY KEY (run, probe, trajectory, step)
);
"""


def schema_statements() -> list[str]:
    """Split :data:`SCHEMA_SQL` into single statements.

    ``sqlite3.Cursor.executescript`` would commit the surrounding transaction first, so the
    statements are executed one by one inside ``BEGIN IMMEDIATE`` instead.
    """
    # The script has no string literals, so "--" always starts a comment and ";" always ends
    # a statement once comments are gone.
    lines = [line.split("--", 1)[0].rstrip() for line in SCHEMA_SQL.splitlines()]
    code = "\n".join(line for line in lines if line.strip())
    statements = [chunk.strip() for chunk in code.split(";") if chunk.strip()]
    for statement in statements:
        if not sqlite3.complete_statement(statement + ";"):  # pragma: no cover - a typo
            raise AssertionError(f"incomplete schema statement: {statement}")
    return statements


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty database, or check that an existing one is a store.

    Must be called outside a transaction, on a connection opened with
    ``isolation_level=None``. Raises :class:`ValueError` with a human-readable reason when the
    file is an SQLite database of some other application or of a newer learnscope, and
    :class:`SchemaMismatch` (a ValueError) when its tables lack what its version promises.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        n_objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if n_objects == 0 and app_id == 0:
            for statement in schema_statements():
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif app_id != APPLICATION_ID:
            raise ValueError(
                "it is an SQLite database but not a learnscope store "
                f"(application_id {app_id:#x}, expected {APPLICATION_ID:#x})"
            )
        elif version > SCHEMA_VERSION:
            raise ValueError(
                f"it was written by a newer learnscope (store schema version {version}, this "
                f"learnscope reads up to {SCHEMA_VERSION}); upgrade learnscope"
            )
        elif version < SCHEMA_VERSION:
            # older store: the run columns of later versions are added first (existing runs
            # get NULL: no fingerprint), then every statement is CREATE ... IF NOT EXISTS, so
            # this only adds the tables and indexes that later versions introduced
            present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for column, kind in ADDED_RUN_COLUMNS:
                if column not in present:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            for statement in schema_statements():
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if n_objects:  # an existing store (perhaps just migrated): are its tables intact?
            differences = schema_differences(conn, SCHEMA_VERSION, writing=True)
            if differences:
                raise SchemaMismatch(mismatch_message(differences, SCHEMA_VERSION))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SchemaMismatch(ValueError):
    """The tables or columns of a store differ from those its schema version promises."""


#: Tables added after version 1, by the version that added them.
ADDED_TABLES = {"snapshots": 2}


@lru_cache(maxsize=1)
def _expected_columns() -> dict[str, tuple[str, ...]]:
    """Columns of every table of :data:`SCHEMA_SQL`, in order (built once, in memory)."""
    conn = sqlite3.connect(":memory:")
    try:
        for statement in schema_statements():
            conn.execute(statement)
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
        return {table: tuple(row[1] for row in conn.execute(f"PRAGMA table_info({table})"))
                for table in tables}
    finally:
        conn.close()


def expected_columns(version: int = SCHEMA_VERSION) -> dict[str, tuple[str, ...]]:
    """The tables and columns a store of schema ``version`` has (older ones have fewer)."""
    added = {column for column, _ in ADDED_RUN_COLUMNS}
    expected = {}
    for table, columns in _expected_columns().items():
        if version < ADDED_TABLES.get(table, 1):
            continue
        if table == "runs" and version < 3:
            columns = tuple(column for column in columns if column not in added)
        expected[table] = columns
    return expected


def schema_differences(conn: sqlite3.Connection, version: int = SCHEMA_VERSION, *,
                       writing: bool = False) -> list[str]:
    """What the tables of ``conn`` lack compared with schema ``version`` (empty: nothing).

    One ``PRAGMA table_info`` per expected table. Missing tables and missing columns are
    reported; extra tables and extra columns are tolerated (reads name their columns), except
    that for ``writing`` an extra ``NOT NULL`` column without a default is reported, since the
    store's inserts cannot fill it. Column types are not compared (SQLite does not enforce them).
    """
    differences = []
    for table, columns in expected_columns(version).items():
        info = conn.execute(f"PRAGMA table_info({table})").fetchall()
        if not info:
            differences.append(f"table {table} is missing")
            continue
        present = {row[1] for row in info}
        missing = [column for column in columns if column not in present]
        if missing:
            what = "column" if len(missing) == 1 else "columns"
            differences.append(f"table {table} lacks the {what} {', '.join(missing)}")
        if writing:
            # table_info rows: (cid, name, type, notnull, default, pk)
            unfillable = [row[1] for row in info
                          if row[1] not in columns and row[3] and row[4] is None]
            if unfillable:
                differences.append(
                    f"table {table} has the extra column(s) {', '.join(unfillable)} that are NOT "
                    "NULL without a default, so learnscope cannot insert rows")
    return differences


def mismatch_message(differences: list[str], version: int) -> str:
    """The reason given when :func:`schema_differences` found something."""
    return (f"its tables differ from those of learnscope store schema version {version}: "
            + "; ".join(differences))
