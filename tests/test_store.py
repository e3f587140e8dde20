"""Tests of learnscope.store, the embedded SQLite run store.

Expected values are written out here (or built from simple formulas) rather than taken from
the store itself.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import learnscope
import learnscope.store as store_mod
import learnscope.store.connection as store_connection
import learnscope.store.db as store_db
from learnscope.store import Store, StoreError

METRIC_COLUMNS = ["run", "step", "epoch", "probe", "layer", "layer_index", "measure", "value"]
RUN_COLUMNS = [
    "id", "name", "experiment", "status", "created_at", "updated_at", "finished_at",
    "total_steps", "last_step", "progress", "eta_seconds", "measurements", "version", "git_rev",
    "host", "pid", "error", "config", "fingerprint",
]  # fmt: skip


@pytest.fixture()
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "stores" / "runs.db"


@pytest.fixture()
def store(db_path: Path):
    with store_mod.open(db_path) as s:
        yield s


def records(frame: pd.DataFrame) -> list[tuple]:
    """Rows of a metrics frame as plain tuples (NaN kept as float nan)."""
    return [
        (r.run, int(r.step), None if pd.isna(r.epoch) else float(r.epoch), r.probe, r.layer,
         int(r.layer_index), r.measure, float(r.value))
        for r in frame.itertuples(index=False)
    ]  # fmt: skip


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- opening


def test_open_creates_folders_schema_and_wal(db_path: Path) -> None:
    assert not db_path.parent.exists()
    s = store_mod.open(db_path)
    try:
        assert db_path.is_file()
        assert isinstance(s, Store)
        assert s.path == db_path.resolve()
        assert s.artifacts_root == db_path.parent.resolve() / "runs.artifacts"
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 30_000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    finally:
        s.close()
    # an independent connection sees WAL mode (it is persistent) and the three tables
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "measurements", "metrics"} <= tables
        indexes = {r[1] for r in raw.execute("PRAGMA index_list(metrics)")}
        assert "metrics_by_measure" in indexes
        cols = [r[2] for r in raw.execute("PRAGMA index_info(metrics_by_measure)")]
        assert cols == ["run", "measure", "layer", "step"]
    finally:
        raw.close()


def test_reopen_keeps_data_and_context_manager_closes(db_path: Path) -> None:
    with Store(str(db_path)) as s:
        run_id = s.create_run("keep", {"a": 1})
        s.write_measurement(run_id, 0, None, "p", [("l", 0, "m", 1.5)])
    with pytest.raises(StoreError, match="closed"):
        s.runs()
    s.close()  # closing twice is fine
    with store_mod.open(db_path) as s2:
        assert s2.run(run_id)["id"] == run_id
        assert s2.metrics(run_id)["value"].tolist() == [1.5]


def test_parent_is_a_file_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("I am a file")
    for bad in (blocker / "runs.db", blocker / "deeper" / "runs.db"):
        with pytest.raises(StoreError) as info:
            store_mod.open(bad)
        message = str(info.value)
        assert str(bad) in message
        assert "--store" in message
    assert isinstance(info.value, RuntimeError)


def test_directory_and_foreign_files_raise_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="directory"):
        store_mod.open(tmp_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database") as info:
        store_mod.open(garbage)
    assert str(garbage) in str(info.value)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE runs (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a learnscope store"):
        store_mod.open(other)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write")
def test_read_only_folder_raises_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError) as info:
            store_mod.open(folder / "runs.db")
        assert str(folder / "runs.db") in str(info.value)
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------- round trip


def test_create_run_records_identity(store: Store) -> None:
    before = time.time()
    run_id = store.create_run("my net/v2", {"lr": 0.1}, experiment="sweep", total_steps=50)
    prefix, date, clock, tail = run_id.rsplit("-", 3)
    assert prefix == "my_net_v2"
    assert len(date) == 8 and date.isdigit() and len(clock) == 6 and clock.isdigit()
    assert len(tail) == 4 and int(tail, 16) >= 0
    info = store.run(run_id)
    assert info["name"] == "my net/v2"
    assert info["experiment"] == "sweep"
    assert info["status"] == "running"
    assert info["total_steps"] == 50
    assert info["last_step"] is None
    assert info["progress"] == 0.0
    assert info["measurements"] == 0
    assert info["version"] == learnscope.__version__
    assert info["pid"] == os.getpid()
    assert info["finished_at"] is None and info["error"] is None
    created = pd.Timestamp(info["created_at"])
    assert created.tzinfo is not None and created.utcoffset() == pd.Timedelta(0)
    assert before - 5 <= created.timestamp() <= time.time() + 5
    assert info["git_rev"] is None or len(info["git_rev"]) >= 7
    assert list(info) == RUN_COLUMNS


def test_write_and_read_back_exact_values(store: Store) -> None:
    config = {"lr": 0.01, "layers": [64, 32], "act": "relu", "nested": {"b": 2, "a": None}}
    run_id = store.create_run("mlp", config, experiment="exp1", total_steps=100)
    layers = [("fc1", 0), ("fc2", 1), ("out", 2)]
    expected = []
    for step, epoch in ((0, 0), (10, 0.5), (20, 1)):
        rows = [
            (layer, idx, measure, step * 10.0 + idx + (0.25 if measure == "sep" else 0.0))
            for layer, idx in layers
            for measure in ("sep", "n_patterns")
        ]
        assert store.write_measurement(run_id, step, epoch, "patterns", rows) == 6
        expected += [(run_id, step, float(epoch), "patterns", *row) for row in rows]
    weights = [("fc1", 0, "norm", 3.0), ("out", 2, "norm", 4.0)]
    assert store.write_measurement(run_id, 10, 0.5, "weights", weights) == 2
    expected += [(run_id, 10, 0.5, "weights", *row) for row in weights]

    metrics = store.metrics(run_id)
    assert list(metrics.columns) == METRIC_COLUMNS
    key = lambda r: (r[0], r[1], r[3], r[5], r[6])  # noqa: E731 - run, step, probe, idx, measure
    assert records(metrics) == sorted(expected, key=key)
    assert len(metrics) == 20

    latest = store.latest(run_id)
    assert list(latest.columns) == METRIC_COLUMNS
    want_latest = [r for r in expected if r[3] == "patterns" and r[1] == 20]
    want_latest += [r for r in expected if r[3] == "weights"]
    assert records(latest) == sorted(want_latest, key=key)

    runs = store.runs()
    assert list(runs.columns) == RUN_COLUMNS
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["id"] == run_id
    assert row["last_step"] == 20
    assert row["progress"] == pytest.approx(20 / 100)  # step 20 = 20 of 100 updates done
    assert row["measurements"] == 4
    assert row["status"] == "running"
    assert json.loads(row["config"]) == config
    assert store.run(run_id)["config"] == config

    store.set_status(run_id, "finished")
    info = store.run("mlp")
    assert info["status"] == "finished"
    assert info["finished_at"] is not None
    assert info["updated_at"] >= info["created_at"]


def test_metrics_filters(store: Store) -> None:
    a = store.create_run("a", {})
    b = store.create_run("b", {})
    store.write_measurement(a, 1, 0, "p", [("x", 0, "m1", 1.0), ("y", 1, "m1", 2.0)])
    store.write_measurement(a, 1, 0, "q", [("x", 0, "m2", 3.0)])
    store.write_measurement(b, 2, 1, "p", [("z", 0, "m3", 4.0)])
    assert store.metrics()["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert store.metrics(a, layer="y")["value"].tolist() == [2.0]
    assert store.metrics(a, layer=["x", "y"], measure="m1")["value"].tolist() == [1.0, 2.0]
    assert store.metrics(a, probe="q")["value"].tolist() == [3.0]
    assert store.metrics(measure="m3")["run"].tolist() == [b]
    assert store.metrics(a, measure=[]).empty
    empty = store.metrics(store.create_run("c", {}))
    assert empty.empty and list(empty.columns) == METRIC_COLUMNS


def test_non_finite_values(store: Store) -> None:
    run_id = store.create_run("nf", {})
    rows = [("l", 0, "pinf", math.inf), ("l", 0, "ninf", -math.inf), ("l", 0, "nan", math.nan)]
    store.write_measurement(run_id, 0, None, "p", rows)
    got = dict(zip(*(store.metrics(run_id)[c] for c in ("measure", "value")), strict=True))
    assert got["pinf"] == math.inf
    assert got["ninf"] == -math.inf
    assert math.isnan(got["nan"])
    assert math.isnan(store.metrics(run_id)["epoch"].iloc[0])


def test_idempotent_rewrite(store: Store) -> None:
    run_id = store.create_run("resume", {})
    first = [("fc1", 0, "m", 1.0), ("fc2", 1, "m", 2.0)]
    second = [("fc1", 0, "m", 10.0), ("fc2", 1, "m", 20.0)]
    assert store.write_measurement(run_id, 5, 1, "p", first) == 2
    assert store.write_measurement(run_id, 5, 1, "p", second) == 2
    metrics = store.metrics(run_id)
    assert len(metrics) == 2
    assert metrics["value"].tolist() == [10.0, 20.0]
    assert store.run(run_id)["measurements"] == 1
    assert store.measured_steps(run_id) == [5]
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("SELECT count(*) FROM metrics").fetchone()[0] == 2
        assert raw.execute("SELECT n_rows FROM measurements").fetchall() == [(2,)]
    finally:
        raw.close()


def test_rewrite_without_epoch_keeps_the_epoch(store: Store) -> None:
    run_id = store.create_run("r", {})
    store.write_measurement(run_id, 5, 1.25, "p", [("l", 0, "a", 1.0)])
    store.write_measurement(run_id, 5, None, "p", [("l", 0, "b", 2.0)])  # e.g. since-final rows
    raw = sqlite3.connect(store.path)
    try:
        epoch = raw.execute("SELECT epoch FROM measurements WHERE run = ?", (run_id,)).fetchone()
        values = raw.execute("SELECT measure, value FROM metrics ORDER BY measure").fetchall()
    finally:
        raw.close()
    assert epoch == (1.25,)
    assert values == [("a", 1.0), ("b", 2.0)]
    store.write_measurement(run_id, 5, 2.0, "p", [])  # an explicit epoch still replaces it
    assert set(store.metrics(run_id)["epoch"]) == {2.0}


def test_progress_and_last_step(store: Store) -> None:
    unknown = store.create_run("u", {})
    over = store.create_run("o", {}, total_steps=10)
    store.write_measurement(unknown, 3, None, "p", [])
    store.write_measurement(over, 25, None, "p", [("l", 0, "m", 0.0)])
    store.write_measurement(over, 7, None, "p", [("l", 0, "m", 0.0)])  # last_step is a max
    runs = store.runs().set_index("id")
    assert math.isnan(runs.loc[unknown, "progress"])
    assert runs.loc[unknown, "last_step"] == 3
    assert runs.loc[over, "progress"] == 1.0
    assert runs.loc[over, "last_step"] == 25
    assert runs.loc[over, "measurements"] == 2
    assert list(store.runs()["id"]) == [unknown, over]  # ordered by creation


def test_has_measurement_and_measured_steps(store: Store) -> None:
    run_id = store.create_run("s", {})
    for step in (30, 10, 20):
        store.write_measurement(run_id, step, None, "p", [("l", 0, "m", 1.0)])
    store.write_measurement(run_id, 15, None, "q", [("l", 0, "m", 1.0)])
    assert store.measured_steps(run_id) == [10, 15, 20, 30]
    assert store.measured_steps(run_id, "p") == [10, 20, 30]
    assert store.measured_steps(run_id, "nothing") == []
    assert store.has_measurement(run_id, 20, "p")
    assert not store.has_measurement(run_id, 15, "p")
    assert store.has_measurement(run_id, 15, "q")


def test_artifact_dir(store: Store) -> None:
    run_id = store.create_run("art", {})
    folder = store.artifact_dir(run_id, 42, "patterns")
    expected = store.path.parent / "runs.artifacts" / run_id / "patterns" / "step_000000042"
    assert folder == expected
    assert folder.is_dir()
    assert store.artifacts_root == store.path.parent / "runs.artifacts"
    sneaky = store.artifact_dir(run_id, 1, "../../escape")
    assert store.artifacts_root in sneaky.parents


def test_store_pickles_by_path(store: Store) -> None:
    run_id = store.create_run("pk", {})
    clone = pickle.loads(pickle.dumps(store))
    try:
        assert clone.path == store.path
        assert clone.run(run_id)["id"] == run_id
    finally:
        clone.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_cannot_use_parent_store(store: Store) -> None:
    store.create_run("f", {})
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            store.runs()
        except StoreError as exc:
            code = 0 if "forked child" in str(exc) else 2
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(store.runs()) == 1  # the parent's connection still works


# --------------------------------------------------------------------------- status


def test_set_status_validation_and_effects(store: Store) -> None:
    run_id = store.create_run("st", {})
    with pytest.raises(ValueError) as info:
        store.set_status(run_id, "done")
    for valid in ("running", "finished", "failed", "diverged"):
        assert valid in str(info.value)
    with pytest.raises(ValueError):
        store.set_status(run_id, "interrupted")  # reported only, never stored
    assert store.run(run_id)["status"] == "running"

    store.set_status(run_id, "failed", error="CUDA out of memory")
    info_failed = store.run(run_id)
    assert info_failed["status"] == "failed"
    assert info_failed["error"] == "CUDA out of memory"
    assert info_failed["finished_at"] is not None

    store.set_status(run_id, "running")  # resumed
    resumed = store.run(run_id)
    assert resumed["status"] == "running"
    assert resumed["finished_at"] is None and resumed["error"] is None

    store.set_status(run_id, "diverged")
    assert store.run(run_id)["status"] == "diverged"
    with pytest.raises(StoreError, match=run_id):
        store.set_status("no-such-run", "finished")


def test_interrupted_only_for_dead_local_process(store: Store) -> None:
    alive = store.create_run("alive", {})
    dead = store.create_run("dead", {})
    remote = store.create_run("remote", {})
    done = store.create_run("done", {})
    store.set_status(done, "finished")
    gone = dead_pid()
    raw = sqlite3.connect(store.path)
    try:
        raw.execute("UPDATE runs SET pid = ? WHERE id IN (?, ?, ?)", (gone, dead, remote, done))
        raw.execute("UPDATE runs SET host = 'some-other-host' WHERE id = ?", (remote,))
        raw.commit()
    finally:
        raw.close()
    status = dict(zip(store.runs()["id"], store.runs()["status"], strict=True))
    assert status == {alive: "running", dead: "interrupted", remote: "running", done: "finished"}
    assert store.run(dead)["status"] == "interrupted"
    raw = sqlite3.connect(store.path)
    try:  # the database itself still says running
        assert raw.execute("SELECT status FROM runs WHERE id = ?", (dead,)).fetchone() == (
            "running",
        )
    finally:
        raw.close()


# --------------------------------------------------------------------------- errors


def test_run_resolution_and_errors(store: Store) -> None:
    empty = store.runs()
    assert empty.empty and list(empty.columns) == RUN_COLUMNS
    with pytest.raises(StoreError, match="no runs"):
        store.run("anything")
    first = store.create_run("alpha", {"i": 1})
    second = store.create_run("alpha", {"i": 2})
    beta = store.create_run("beta", {})
    assert store.run(first)["id"] == first  # exact id
    assert store.run("alpha")["id"] == second  # name: most recent
    assert store.run("bet")["id"] == beta  # unique prefix
    assert store.run(second)["config"] == {"i": 2}

    with pytest.raises(StoreError) as info:
        store.run("alpha-")
    message = str(info.value)
    assert "ambiguous" in message and "'alpha-'" in message
    assert first in message and second in message

    with pytest.raises(StoreError) as info:
        store.run("gamma")
    message = str(info.value)
    assert "'gamma'" in message
    for run_id in (first, second, beta):
        assert run_id in message

    with pytest.raises(StoreError, match="gamma"):
        store.metrics("gamma")
    with pytest.raises(StoreError, match="gamma"):
        store.latest("gamma")


def test_unknown_run_id_in_writes(store: Store) -> None:
    known = store.create_run("known", {})
    for call in (
        lambda: store.write_measurement("ghost", 0, None, "p", [("l", 0, "m", 1.0)]),
        lambda: store.has_measurement("ghost", 0, "p"),
        lambda: store.measured_steps("ghost"),
        lambda: store.artifact_dir("ghost", 0, "p"),
    ):
        with pytest.raises(StoreError) as info:
            call()
        assert "'ghost'" in str(info.value) and known in str(info.value)
    assert store.metrics().empty  # nothing was written for the ghost run


def test_unknown_measure_and_layer(store: Store) -> None:
    a = store.create_run("a", {})
    b = store.create_run("b", {})
    store.write_measurement(a, 0, None, "p", [("conv1", 0, "rank", 1.0), ("fc", 1, "sep", 2.0)])
    store.write_measurement(b, 0, None, "p", [("head", 0, "norm", 3.0)])

    with pytest.raises(ValueError) as info:
        store.metrics(a, measure="norm")  # exists in the store, not in run a
    message = str(info.value)
    assert "'norm'" in message and "rank" in message and "sep" in message

    with pytest.raises(ValueError) as info:
        store.metrics(a, layer=["conv1", "conv9"])
    message = str(info.value)
    assert "'conv9'" in message and "conv1" in message and "fc" in message
    assert "'conv1'" not in message

    with pytest.raises(ValueError) as info:
        store.metrics(layer="nowhere")  # store-wide
    assert all(name in str(info.value) for name in ("conv1", "fc", "head"))

    with pytest.raises(ValueError, match="probe"):
        store.metrics(a, probe="nope")


def test_bad_rows_are_rejected_without_writing(store: Store) -> None:
    run_id = store.create_run("bad", {})
    with pytest.raises(ValueError, match="Row 1"):
        store.write_measurement(run_id, 0, None, "p", [("l", 0, "m", 1.0), ("l", 0, "m")])
    with pytest.raises(ValueError, match="Row 0"):
        store.write_measurement(run_id, 0, None, "p", [("l", 0, "m", "not a number")])
    with pytest.raises(TypeError):
        store.write_measurement(run_id, 1.5, None, "p", [])  # type: ignore[arg-type]
    assert store.measured_steps(run_id) == []
    assert store.metrics().empty


# --------------------------------------------------------------------------- processes

N_MEASUREMENTS = 200
LAYERS = [f"layer{i}" for i in range(5)]
MEASURES = ["a", "b", "c", "d"]


def expected_value(worker: int, step: int, layer_index: int, measure: str) -> float:
    return worker * 1_000_000 + step * 100 + layer_index * 10 + MEASURES.index(measure)


def _concurrent_writer(path: str, worker: int, start, results,
                       journal: str | None = None) -> None:  # pragma: no cover
    s = store_mod.open(path, journal=journal)
    run_id = s.create_run(f"worker{worker}", {"worker": worker}, total_steps=N_MEASUREMENTS - 1)
    start.wait(timeout=60)
    for step in range(N_MEASUREMENTS):
        rows = [
            (layer, i, m, expected_value(worker, step, i, m))
            for i, layer in enumerate(LAYERS)
            for m in MEASURES
        ]
        s.write_measurement(run_id, step, step / 10, "probe", rows)
    s.set_status(run_id, "finished")
    s.close()
    results.put((worker, run_id))


@pytest.mark.parametrize("journal", [None, "delete"])
def test_two_processes_write_one_store(tmp_path: Path, journal: str | None) -> None:
    path = tmp_path / "shared" / "runs.db"  # created concurrently by both workers
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(2)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_concurrent_writer, args=(str(path), w, start, results, journal))
        for w in (1, 2)
    ]
    for p in procs:
        p.start()
    run_ids = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    with store_mod.open(path, journal=journal) as s:
        assert s.journal_mode == (journal or "wal")
        frame = s.metrics()
        assert len(frame) == 2 * N_MEASUREMENTS * len(LAYERS) * len(MEASURES)
        assert not frame.duplicated(["run", "step", "probe", "layer", "measure"]).any()
        for worker, run_id in run_ids.items():
            part = frame[frame["run"] == run_id]
            got = {
                (int(r.step), int(r.layer_index), r.measure): float(r.value)
                for r in part.itertuples(index=False)
            }
            want = {
                (step, i, m): float(expected_value(worker, step, i, m))
                for step in range(N_MEASUREMENTS)
                for i in range(len(LAYERS))
                for m in MEASURES
            }
            assert got == want
            info = s.run(run_id)
            assert info["status"] == "finished"
            assert info["measurements"] == N_MEASUREMENTS
            assert info["progress"] == 1.0
            assert s.measured_steps(run_id) == list(range(N_MEASUREMENTS))


def test_journal_mode_option_and_environment(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "j.db"
    with store_mod.open(path, journal="delete") as s:
        assert s.journal_mode == "delete"
        run_id = s.create_run("r", {})
        s.write_measurement(run_id, 0, None, "p", [("l", 0, "m", 1.0)])
        conn = s._conn
        assert conn is not None and conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # stored in the file
    raw.close()
    assert not (tmp_path / "j.db-wal").exists() and not (tmp_path / "j.db-shm").exists()
    with store_mod.open(path, read_only=True) as s:
        assert s.journal_mode == "delete" and s.metrics()["value"].tolist() == [1.0]
    assert pickle.loads(pickle.dumps(Store(path, journal="delete"))).journal_mode == "delete"

    monkeypatch.setenv(store_db.JOURNAL_ENV, "WAL")  # the default's variable, any case
    with store_mod.open(path) as s:  # switches the (closed) store back to WAL
        assert s.journal_mode == "wal"
    monkeypatch.setenv(store_db.JOURNAL_ENV, "delete")
    with store_mod.open(path) as s:
        assert s.journal_mode == "delete"
    monkeypatch.setenv(store_db.JOURNAL_ENV, "nfs")
    with pytest.raises(StoreError, match=r"journal mode 'nfs' \(from \$LEARNSCOPE_STORE_JOURNAL\)"):
        store_mod.open(path)
    with pytest.raises(StoreError, match="use 'wal'.*or 'delete'"):
        store_mod.open(path, journal="memory")


def test_delete_mode_needs_the_wal_store_closed_elsewhere(db_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(store_connection, "JOURNAL_SWITCH_TIMEOUT_S", 0.2)
    with store_mod.open(db_path) as wal:  # another writer holds the store in WAL mode
        started = time.monotonic()
        with pytest.raises(StoreError, match="same journal mode") as info:
            store_mod.open(db_path, journal="delete")
        assert time.monotonic() - started < 10
        assert "LEARNSCOPE_STORE_JOURNAL" in str(info.value)
        assert wal.journal_mode == "wal" and wal.runs().empty  # the WAL writer is unaffected


VICTIM = textwrap.dedent(
    """
    import sys, time
    import learnscope.store as store_mod

    s = store_mod.open(sys.argv[1])
    run_id = s.create_run("victim", {"kill": True}, total_steps=100000)
    print("RUN", run_id, flush=True)
    for step in range(100000):
        rows = [(f"l{i}", i, m, float(step * 100 + i)) for i in range(5) for m in "abcd"]
        s.write_measurement(run_id, step, None, "p", rows)
        print("DONE", step, flush=True)
        time.sleep(0.002)
    s.set_status(run_id, "finished")
    """
)


def test_sigkill_mid_run_keeps_completed_measurements(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", VICTIM, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = None
    done: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(done) < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            kind, value = line.split()
            if kind == "RUN":
                run_id = value
            else:
                done.append(int(value))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    assert run_id is not None and len(done) == 40, err

    with store_mod.open(path) as s:
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        steps = s.measured_steps(run_id)
        assert steps[: len(done)] == done == list(range(40))
        assert steps == list(range(len(steps)))  # no gaps
        frame = s.metrics(run_id)
        assert frame.groupby("step").size().tolist() == [20] * len(steps)
        assert set(frame["step"]) == set(steps)  # no rows of an unfinished measurement
        for r in frame.itertuples(index=False):
            assert r.value == r.step * 100 + r.layer_index
        info = s.run(run_id)
        assert info["status"] == "interrupted"
        assert info["finished_at"] is None
        assert s.runs().set_index("id").loc[run_id, "status"] == "interrupted"


# --------------------------------------------------------------------------- read-only access


def files_in(folder: Path) -> dict[str, tuple[int, int]]:
    """Name -> (size, mtime_ns) of every file in ``folder``."""
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_read_only_missing_store_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "there" / "runs.db"
    with pytest.raises(StoreError) as info:
        store_mod.open(missing, read_only=True)
    message = str(info.value)
    assert str(missing) in message and "does not exist" in message and "--store" in message
    assert list(tmp_path.iterdir()) == []  # no folder, no file
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path, read_only=True)


def test_read_only_rejects_files_that_are_not_stores(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StoreError, match="empty, not \\(yet\\) a learnscope store"):
        store_mod.open(empty, read_only=True)
    assert empty.stat().st_size == 0  # no schema was written
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        store_mod.open(garbage, read_only=True)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE runs (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a learnscope store") as info:
        store_mod.open(other, read_only=True)
    assert str(other) in str(info.value)


def test_read_only_reads_and_never_writes(db_path: Path) -> None:
    with store_mod.open(db_path) as s:
        run_id = s.create_run("ro", {"a": 1}, total_steps=10)
        s.write_measurement(run_id, 3, 0, "p", [("l0", 0, "m", 1.5), ("l1", 1, "m", math.nan)])
    db_bytes = db_path.read_bytes()
    before = files_in(db_path.parent)
    assert list(before) == ["runs.db"]  # the writer checkpointed and removed its WAL
    with Store(db_path, read_only=True) as ro:
        assert ro.read_only and "read-only" in repr(ro)
        assert ro.run(run_id)["last_step"] == 3
        assert ro.metrics(run_id)["value"].tolist()[0] == 1.5
        assert math.isnan(ro.metrics(run_id)["value"].tolist()[1])
        for write in (
            lambda: ro.create_run("x", {}),
            lambda: ro.write_measurement(run_id, 4, 0, "p", [("l0", 0, "m", 2.0)]),
            lambda: ro.set_status(run_id, "finished"),
        ):
            with pytest.raises(StoreError, match="read-only"):
                write()
        folder = ro.artifact_dir(run_id, 3, "p")
        assert not folder.exists() and not ro.artifacts_root.exists()
        clone = pickle.loads(pickle.dumps(ro))
        try:
            assert clone.read_only and clone.run(run_id)["id"] == run_id
        finally:
            clone.close()
    assert db_path.read_bytes() == db_bytes
    assert files_in(db_path.parent)["runs.db"] == before["runs.db"]
    # SQLite may leave (empty) -wal/-shm side files of a WAL database, never a -journal
    extra = set(files_in(db_path.parent)) - {"runs.db"}
    assert extra <= {"runs.db-wal", "runs.db-shm"}
    if (db_path.parent / "runs.db-wal").exists():
        assert (db_path.parent / "runs.db-wal").stat().st_size == 0


def test_read_only_reads_while_another_connection_writes(db_path: Path) -> None:
    writer = store_mod.open(db_path)
    try:
        run_id = writer.create_run("live", {}, total_steps=100)
        writer.write_measurement(run_id, 0, 0, "p", [("l0", 0, "m", 1.0)])
        with store_mod.open(db_path, read_only=True) as reader:
            conn = writer._conn
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")  # a write in progress holds the write lock
            conn.execute(
                "INSERT INTO metrics (run, step, probe, layer, layer_index, measure, value) "
                "VALUES (?, 1, 'p', 'l0', 0, 'm', 2.0)",
                (run_id,),
            )
            started = time.monotonic()
            assert reader.metrics(run_id)["step"].tolist() == [0]  # committed state only
            assert time.monotonic() - started < 5  # not blocked by the writer
            conn.execute("ROLLBACK")
            writer.write_measurement(run_id, 1, 0, "p", [("l0", 0, "m", 2.0)])
            assert reader.metrics(run_id)["step"].tolist() == [0, 1]
            assert reader.metrics(run_id, since_step=0)["value"].tolist() == [2.0]
            assert reader.run(run_id)["last_step"] == 1
    finally:
        writer.close()


def test_series_lists_each_probe_layer_measure_once(store: Store) -> None:
    run_id = store.create_run("ser", {})
    for step in (0, 5):
        rows = [("fc2", 1, "a", 1.0), ("fc1", 0, "b", 2.0), ("fc1", 0, "a", 3.0)]
        store.write_measurement(run_id, step, 0, "patterns", rows)
    store.write_measurement(run_id, 5, 0, "train", [("model", -1, "loss", 0.5)])
    got = [tuple(r) for r in store.series(run_id).itertuples(index=False)]
    assert got == [
        ("patterns", "fc1", 0, "a"),
        ("patterns", "fc1", 0, "b"),
        ("patterns", "fc2", 1, "a"),
        ("train", "model", -1, "loss"),
    ]


# --------------------------------------------------------------------------- eta_seconds

T0 = 1_700_000_000.0  # a fixed moment (2023-11-14) for hand-made completion times


def stamp(seconds: float) -> str:
    """ISO-8601 UTC text of ``T0 + seconds``, as the store writes it."""
    from datetime import datetime, timezone

    moment = datetime.fromtimestamp(T0 + seconds, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds")


def write_timed(store: Store, run_id: str, probe: str, times: dict[int, float]) -> None:
    """Write one measurement of ``probe`` per step, then set its ``completed_at`` by hand."""
    for step in times:
        store.write_measurement(run_id, step, None, probe, [("l0", 0, "m", float(step))])
    raw = sqlite3.connect(store.path)
    try:
        raw.executemany(
            "UPDATE measurements SET completed_at = ? WHERE run = ? AND step = ? AND probe = ?",
            [(stamp(t), run_id, step, probe) for step, t in times.items()],
        )
        raw.commit()
    finally:
        raw.close()


def eta(store: Store, run_id: str) -> float:
    from_runs = store.runs().set_index("id").loc[run_id, "eta_seconds"]
    from_run = store.run(run_id)["eta_seconds"]
    assert isinstance(from_run, float)
    assert (math.isnan(from_runs) and math.isnan(from_run)) or from_runs == from_run
    return from_run


def test_eta_from_steady_rate(store: Store) -> None:
    run_id = store.create_run("steady", {}, total_steps=1000)
    # steps 0, 10, ..., 90 completed 5 s apart: 0.5 s per step; 1000 - 90 steps to go
    write_timed(store, run_id, "p", {step: step * 0.5 for step in range(0, 100, 10)})
    assert eta(store, run_id) == pytest.approx(910 * 0.5)


def test_eta_uses_only_the_last_window(store: Store) -> None:
    run_id = store.create_run("window", {}, total_steps=500)
    # 30 measurements, one per step: the first 10 take 9 s each, the last 20 take 2 s each
    times, t = {}, 0.0
    for step in range(30):
        times[step] = t
        t += 9.0 if step < 9 else 2.0
    write_timed(store, run_id, "p", times)
    assert store_db.ETA_WINDOW == 20
    # the window is steps 10..29: 19 intervals of 2 s; 500 - 29 steps to go
    assert eta(store, run_id) == pytest.approx(471 * 2.0)


def test_eta_ignores_dead_time_before_a_resume(store: Store) -> None:
    run_id = store.create_run("resumed", {}, total_steps=200)
    # 1 s per step; the process died after step 40 and was resumed an hour later
    times = {step: float(step) for step in range(0, 50, 10)}
    times.update({step: 3600.0 + step for step in range(50, 80, 10)})
    write_timed(store, run_id, "p", times)
    # intervals: 4 x 10 s and 2 x 10 s at 1 s/step, one of 3610 s for 10 steps (dead time)
    assert eta(store, run_id) == pytest.approx((200 - 70) * 1.0)
    # right after the resume there are only two intervals: the gap still stands out
    run2 = store.create_run("resumed-early", {}, total_steps=200)
    write_timed(store, run2, "p", {0: 0.0, 10: 20.0, 20: 7220.0})
    assert eta(store, run2) == pytest.approx((200 - 20) * 2.0)


def test_eta_uses_the_probe_spanning_most_steps(store: Store) -> None:
    run_id = store.create_run("probes", {}, total_steps=1000)
    # a probe measured every 50 steps, 30 s apart (0.6 s per step, measuring included) ...
    write_timed(store, run_id, "patterns", {0: 0.0, 50: 30.0, 100: 60.0})
    # ... and a loss logged at every one of the last 20 steps, 0.1 s apart
    write_timed(store, run_id, "train", {s: 60.0 - 0.1 * (100 - s) for s in range(81, 101)})
    assert eta(store, run_id) == pytest.approx((1000 - 100) * 0.6)


def test_eta_unknown_finished_and_dead_runs(store: Store) -> None:
    no_total = store.create_run("no-total", {})
    write_timed(store, no_total, "p", {0: 0.0, 10: 10.0})
    one = store.create_run("one", {}, total_steps=100)
    write_timed(store, one, "p", {0: 0.0})
    none = store.create_run("none", {}, total_steps=100)
    two_probes = store.create_run("two-probes", {}, total_steps=100)
    write_timed(store, two_probes, "a", {0: 0.0})
    write_timed(store, two_probes, "b", {10: 10.0})
    done = store.create_run("done", {}, total_steps=100)
    write_timed(store, done, "p", {0: 0.0, 10: 10.0})
    store.set_status(done, "finished")
    failed = store.create_run("failed", {}, total_steps=100)
    write_timed(store, failed, "p", {0: 0.0, 10: 10.0})
    store.set_status(failed, "failed", error="boom")
    reached = store.create_run("reached", {}, total_steps=100)
    write_timed(store, reached, "p", {0: 0.0, 100: 10.0})
    dead = store.create_run("dead", {}, total_steps=100)
    write_timed(store, dead, "p", {0: 0.0, 10: 10.0})
    raw = sqlite3.connect(store.path)
    try:
        raw.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead_pid(), dead))
        raw.commit()
    finally:
        raw.close()
    for run_id in (no_total, one, none, two_probes, failed, dead):
        assert math.isnan(eta(store, run_id)), run_id
    assert eta(store, done) == 0.0
    assert eta(store, reached) == 0.0
    assert store.run(dead)["status"] == "interrupted"


class _InterruptAfterBegin:
    """A connection stand-in that begins the transaction and then raises KeyboardInterrupt,
    as a Ctrl-C delivered while ``execute("BEGIN IMMEDIATE")`` returns does."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.armed = True

    def execute(self, sql, *args):
        cursor = self._conn.execute(sql, *args)
        if self.armed and sql == "BEGIN IMMEDIATE":
            self.armed = False
            raise KeyboardInterrupt
        return cursor

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_an_interrupt_while_beginning_a_write_leaves_the_store_writable(store: Store) -> None:
    run = store.create_run("r", config={})
    real = store._conn
    store._conn = _InterruptAfterBegin(real)
    try:
        with pytest.raises(KeyboardInterrupt):
            store.set_status(run, "running")
        assert not real.in_transaction
        store.set_status(run, "failed", error="stopped")  # a write after the interrupt
    finally:
        store._conn = real
    assert (store.run(run)["status"], store.run(run)["error"]) == ("failed", "stopped")
