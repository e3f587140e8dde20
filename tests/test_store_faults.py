"""The store opens wherever it is and refuses what it cannot trust (issue 13, point 3).

- a WAL store in a folder that cannot be written (a read-only mount; a chmod 555 folder for
  a user other than root) is read with SQLite's immutable mode, by the library and the CLI;
- a store whose tables or columns differ from its schema version is refused on open with a
  message naming what differs;
- a very long run name (ASCII or multi-byte) gives a short run id, so its artifact folders can
  be created.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import learnscope as ls
import learnscope.store.connection as store_connection
import learnscope.store.db as store_db
from learnscope import cli
from learnscope.store import Store, StoreError

# --------------------------------------------------------------------------- read-only folders


def _make_read_only(folder: Path) -> None:
    """Make `folder` unwritable for this process: remount it read-only (root) or chmod it."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        folder.chmod(0o555)


@pytest.fixture()
def store_folder(tmp_path: Path) -> Iterator[Path]:
    """A writable folder that `_make_read_only` can later make read-only for this process.

    Root ignores permissions, so for root it is a small tmpfs mount (remounted read-only
    later); a user other than root gets a plain folder (chmod 555 later).
    """
    folder = tmp_path / "shared"
    folder.mkdir()
    if os.geteuid() != 0:
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip("running as root, where a read-only folder needs a read-only mount, and "
                    f"`mount -t tmpfs` is not allowed here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def _write_store(path: Path) -> str:
    """A WAL store at `path` with one run of two measurements, closed cleanly (no -wal/-shm)."""
    with Store(path) as store:
        run_id = store.create_run("shared-run", {"lr": 0.1}, total_steps=2)
        store.write_measurement(run_id, 1, 0, "patterns", [("fc1", 0, "entropy", 1.5)])
        store.write_measurement(run_id, 2, 1, "patterns", [("fc1", 0, "entropy", 2.25)])
        store.set_status(run_id, "finished")
    return run_id


def test_wal_store_in_a_read_only_folder_is_read_immutable(store_folder: Path) -> None:
    path = store_folder / "runs.db"
    run_id = _write_store(path)
    assert sorted(p.name for p in store_folder.iterdir()) == ["runs.db"]
    _make_read_only(store_folder)
    with pytest.warns(RuntimeWarning, match="read-only and immutable") as caught:
        store = Store(path, read_only=True)
    with store:
        assert store.immutable and store.journal_mode == "wal"
        assert store.notice is not None
        assert f"its folder {store_folder} cannot be written" in store.notice
        assert "changes made by a running writer will not be seen" in store.notice
        assert "immutable" in repr(store)
        frame = store.metrics(run=run_id)
        assert frame["step"].tolist() == [1, 2]
        assert frame["value"].tolist() == [1.5, 2.25]
        assert store.run(run_id)["status"] == "finished"
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process and path: no second warning
        with Store(path, read_only=True) as again:
            assert again.immutable and again.notice == store.notice
    assert sorted(p.name for p in store_folder.iterdir()) == ["runs.db"]  # nothing created


def test_wal_store_with_its_side_files_in_a_read_only_folder_is_not_immutable(
    store_folder: Path,
) -> None:
    """A writer killed with its -wal/-shm files left: SQLite reads them, so no immutable mode
    (which would hide the measurements still in the -wal file)."""
    path = store_folder / "runs.db"
    script = textwrap.dedent(f"""
        import os
        from learnscope.store import Store
        store = Store({str(path)!r})
        run_id = store.create_run("killed", {{}})
        for step in range(3):
            store.write_measurement(run_id, step, None, "p", [("l", 0, "m", float(step))])
        os._exit(0)  # like a SIGKILL: no checkpoint, the values are in runs.db-wal
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert (store_folder / "runs.db-wal").stat().st_size > 0
    _make_read_only(store_folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Store(path, read_only=True) as store:
            assert not store.immutable and store.notice is None
            assert store.metrics()["value"].tolist() == [0.0, 1.0, 2.0]


def _cli(*args: str):
    result = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in result.output
    return result


def test_cli_runs_show_export_read_a_store_in_a_read_only_folder(
    store_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(cli.console, "width", 400)
    path = store_folder / "runs.db"
    run_id = _write_store(path)
    _make_read_only(store_folder)
    note = f"note: opened the store {path} read-only and immutable"
    listed = _cli("runs", "--store", str(path))
    assert listed.exit_code == 0, listed.output
    assert note in listed.output and run_id in listed.output and "finished" in listed.output
    assert "RuntimeWarning" not in listed.output
    shown = _cli("show", run_id, "--store", str(path))
    assert shown.exit_code == 0, shown.output
    assert note in shown.output and "2.25" in shown.output
    out = tmp_path / "values.csv"
    exported = _cli("export", run_id, "--store", str(path), "--format", "csv", "--out", str(out))
    assert exported.exit_code == 0, exported.output
    assert note in exported.output
    with out.open() as file:
        rows = list(csv.DictReader(file))
    assert [(int(r["step"]), float(r["value"])) for r in rows] == [(1, 1.5), (2, 2.25)]


def test_dashboard_reads_a_store_in_a_read_only_folder(store_folder: Path) -> None:
    pytest.importorskip("fastapi", reason="the dashboard extra is not installed")
    pytest.importorskip("plotly", reason="the dashboard extra is not installed")
    with warnings.catch_warnings():  # Starlette would like httpx2; httpx works
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    from learnscope.dashboard import create_app

    path = store_folder / "runs.db"
    run_id = _write_store(path)
    _make_read_only(store_folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the immutable notice
        client = TestClient(create_app(path), base_url="http://127.0.0.1")
        listed = client.get("/api/runs")
        assert listed.status_code == 200, listed.text
        assert [run["id"] for run in listed.json()["runs"]] == [run_id]
        values = client.get(f"/api/runs/{run_id}/metrics", params={"measure": "entropy"})
    assert values.status_code == 200, values.text
    assert "2.25" in values.text


def test_immutable_only_when_the_folder_cannot_be_written(tmp_path: Path, monkeypatch) -> None:
    """The decision itself, without root or mounts: SQLite's "unable to open database file"
    for a read-only open leads to immutable mode only when the folder cannot be written."""
    path = tmp_path / "runs.db"
    run_id = _write_store(path)
    real_open = store_connection._open_read_only
    opened_as = []

    def open_like_on_a_read_only_mount(where: Path, *, immutable: bool):
        opened_as.append(immutable)
        if not immutable:
            raise sqlite3.OperationalError("unable to open database file")
        return real_open(where, immutable=immutable)

    monkeypatch.setattr(store_connection, "_open_read_only", open_like_on_a_read_only_mount)
    monkeypatch.setattr(store_connection, "_folder_writable", lambda folder: True)
    with pytest.raises(StoreError, match="unable to open database file"):
        Store(path, read_only=True)  # a writable folder: a real failure, not hidden
    assert opened_as == [False]
    monkeypatch.setattr(store_connection, "_folder_writable", lambda folder: folder != tmp_path)
    with pytest.warns(RuntimeWarning, match="immutable"):
        with Store(path, read_only=True) as store:
            assert store.immutable and store.metrics(run=run_id)["value"].tolist() == [1.5, 2.25]
    assert opened_as == [False, False, True]


# --------------------------------------------------------------------------- schema check


def _altered_store(path: Path, *statements: str) -> None:
    _write_store(path)
    raw = sqlite3.connect(path)
    for statement in statements:
        raw.execute(statement)
    raw.commit()
    raw.close()


@pytest.mark.parametrize("read_only", [True, False])
def test_open_names_a_missing_column(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "runs.db"
    _altered_store(path, "ALTER TABLE metrics DROP COLUMN value")
    with pytest.raises(StoreError) as info:
        Store(path, read_only=read_only)
    message = str(info.value)
    assert "table metrics lacks the column value" in message
    assert "schema version 3" in message and "restore it from a copy" in message
    assert "no such column" not in message


@pytest.mark.parametrize("read_only", [True, False])
def test_open_names_every_difference(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "runs.db"
    _altered_store(path, "DROP TABLE snapshots", "ALTER TABLE runs DROP COLUMN pid_start",
                   "ALTER TABLE runs DROP COLUMN git_rev")
    with pytest.raises(StoreError) as info:
        Store(path, read_only=read_only)
    message = str(info.value)
    assert "table runs lacks the columns git_rev, pid_start" in message
    assert "table snapshots is missing" in message
    raw = sqlite3.connect(path)  # opening for writing changed nothing (no half migration)
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    assert "snapshots" not in tables
    raw.close()


def test_extra_columns_and_tables_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    _altered_store(path, "ALTER TABLE runs ADD COLUMN note TEXT",
                   "CREATE TABLE my_notes (run TEXT, text TEXT)")
    for read_only in (True, False):
        with Store(path, read_only=read_only) as store:
            assert store.metrics()["value"].tolist() == [1.5, 2.25]
    with Store(path) as store:
        store.create_run("another", {})


def test_an_extra_not_null_column_is_refused_for_writing_only(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    _altered_store(path, "ALTER TABLE metrics RENAME TO old_metrics",
                   "CREATE TABLE metrics (run TEXT NOT NULL, step INTEGER NOT NULL, "
                   "probe TEXT NOT NULL, layer TEXT NOT NULL, layer_index INTEGER NOT NULL, "
                   "measure TEXT NOT NULL, value REAL, weight REAL NOT NULL, "
                   "PRIMARY KEY (run, step, probe, layer, measure))",
                   "INSERT INTO metrics SELECT *, 1.0 FROM old_metrics",
                   "DROP TABLE old_metrics")
    with Store(path, read_only=True) as store:
        assert store.metrics()["value"].tolist() == [1.5, 2.25]
    with pytest.raises(StoreError, match="extra column.* weight .*NOT NULL without a default"):
        Store(path)


def test_cli_reports_a_changed_schema_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    _altered_store(path, "ALTER TABLE metrics DROP COLUMN value")
    for command in (["runs"], ["show", "shared-run"]):
        result = _cli(*command, "--store", str(path))
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
        assert "error:" in result.output
        assert "table metrics lacks the column value" in " ".join(result.output.split())


# --------------------------------------------------------------------------- long run names


def _measure_to_completion(store_path: Path, name: str) -> str:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    data = torch.randn(32, 4, generator=torch.Generator().manual_seed(1))
    probe = ls.ActivationPatterns(data, save_counts=True)
    with ls.Scope(model, [probe], ls.every(2), store_path, name=name, total_steps=4) as scope:
        for step in range(4):
            with torch.no_grad():
                model[0].weight.add_(0.1)
            scope.step(step)
    return scope.run_id


@pytest.mark.parametrize("name", ["r" * 5000, "名前-α" * 1200], ids=["ascii-5000", "unicode"])
def test_a_very_long_run_name_measures_to_completion(tmp_path: Path, name: str) -> None:
    path = tmp_path / "runs.db"
    run_id = _measure_to_completion(path, name)
    assert len(run_id.encode()) <= store_db.RUN_ID_NAME_CHARS + 21
    with Store(path, read_only=True) as store:
        record = store.run(run_id)
        assert record["status"] == "finished" and record["name"] == name
        assert store.measured_steps(run_id) == [0, 2]
        root = store.artifacts_root
    files = [p for p in root.rglob("*") if p.is_file()]
    assert {p.relative_to(root).parts[0] for p in files} == {run_id}
    assert {p.relative_to(root).parts[2] for p in files} == {"step_000000000", "step_000000002"}
    longest = max(len(part.encode()) for p in files for part in p.relative_to(root).parts)
    assert longest <= 110


def test_long_names_differing_at_the_end_get_different_ids(tmp_path: Path) -> None:
    with Store(tmp_path / "runs.db") as store:
        first = store.create_run("x" * 300 + "a", {})
        second = store.create_run("x" * 300 + "b", {})
        short = store.create_run("x" * 80, {})
    assert first.split("-")[0] != second.split("-")[0]
    assert len(first.split("-")[0]) == store_db.RUN_ID_NAME_CHARS
    assert short.split("-")[0] == "x" * 80  # a name that fits is kept as it is
