"""`learnscope status`: experiment plans, counts of runs by state, and the experiment's ETA."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from learnscope import cli
from learnscope.experiments.status import planned, record_plan, summarise
from learnscope.store import open as open_store


def _runs(rows: list[dict]) -> pd.DataFrame:
    """A Store.runs()-like frame with the columns summarise reads."""
    frame = pd.DataFrame(rows)
    frame["experiment"] = frame["experiment"].fillna("early") if "experiment" in frame \
        else "early"
    for column, default in (("finished_at", None), ("eta_seconds", math.nan),
                            ("progress", math.nan)):
        if column not in frame:
            frame[column] = default
    return frame


def test_plan_is_recorded_atomically_and_merged(tmp_path):
    store = tmp_path / "runs" / "s.db"
    assert planned(store, "early") == []
    record_plan(store, "early", ["a", "b"])
    record_plan(store, "early", ["b", "c"])  # launched again with one more run
    assert planned(store, "early") == ["a", "b", "c"]
    folder = tmp_path / "runs" / "s.artifacts" / "plans"
    assert [f.name for f in folder.iterdir()] == ["early.json"]  # no temporary left behind
    (folder / "early.json").write_text("{not json")
    with pytest.raises(ValueError, match="damaged.*delete it"):
        planned(store, "early")


def test_counts_by_state_with_retries_and_pending():
    frame = _runs([
        {"name": "r1", "status": "failed", "created_at": "2026-01-01T00:00:00+00:00"},
        {"name": "r1", "status": "finished", "created_at": "2026-01-01T01:00:00+00:00",
         "finished_at": "2026-01-01T01:10:00+00:00"},  # a retry of r1 that finished: 600 s
        {"name": "r2", "status": "finished", "created_at": "2026-01-01T02:00:00+00:00",
         "finished_at": "2026-01-01T02:20:00+00:00"},  # 1200 s
        {"name": "r3", "status": "running", "created_at": "2026-01-01T03:00:00+00:00",
         "eta_seconds": 300.0},
        {"name": "r4", "status": "diverged", "created_at": "2026-01-01T03:00:00+00:00"},
        {"name": "x", "status": "running", "created_at": "2026-01-01T03:00:00+00:00",
         "experiment": "other", "eta_seconds": 5.0},
    ])
    summary = summarise(frame, "early", ["r1", "r2", "r3", "r4", "r5", "r6"])
    assert summary.planned == 6
    assert summary.counts == {"finished": 2, "running": 1, "interrupted": 0, "failed": 0,
                              "diverged": 1, "pending": 2}
    assert summary.done == 2 and summary.failed == 1
    # work left: r3's 300 s + 2 pending runs x median(600, 1200) = 900 s; one runs at a time
    assert summary.eta_seconds == pytest.approx(300 + 2 * 900)


def test_eta_is_shared_by_parallel_runs_and_counts_interrupted_progress():
    frame = _runs([
        {"name": "a", "status": "finished", "created_at": "2026-01-01T00:00:00+00:00",
         "finished_at": "2026-01-01T00:16:40+00:00"},  # 1000 s
        {"name": "b", "status": "running", "created_at": "2026-01-01T01:00:00+00:00",
         "eta_seconds": 200.0},
        {"name": "c", "status": "running", "created_at": "2026-01-01T01:00:00+00:00",
         "eta_seconds": 400.0},
        {"name": "d", "status": "interrupted", "created_at": "2026-01-01T01:00:00+00:00",
         "progress": 0.75},
    ])
    summary = summarise(frame, "early", ["a", "b", "c", "d", "e"])
    # (200 + 400 + 1000 x (1 pending + 0.25 of d left)) / 2 running
    assert summary.eta_seconds == pytest.approx((600 + 1250) / 2)


def test_eta_zero_when_nothing_is_left_and_unknown_when_unmeasurable():
    finished = _runs([{"name": "a", "status": "finished",
                       "created_at": "2026-01-01T00:00:00+00:00",
                       "finished_at": "2026-01-01T00:01:00+00:00"}])
    assert summarise(finished, "early", ["a"]).eta_seconds == 0.0
    unknown = _runs([{"name": "a", "status": "running",
                      "created_at": "2026-01-01T00:00:00+00:00"}])
    assert math.isnan(summarise(unknown, "early", ["a", "b"]).eta_seconds)


def test_status_command_end_to_end(tmp_path):
    """Two finished quickstart runs and a third planned one; then the per-run table."""
    from learnscope.experiments.quickstart import run_quickstart

    store = tmp_path / "s.db"
    run_quickstart(store, epochs=1, every_k=10, nets=("mlp",))
    record_plan(store, "quickstart", ["quickstart-mlp", "quickstart-cnn"])
    with open_store(store) as s:
        s.create_run("stray", {}, experiment="other", total_steps=10)
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli.console, "width", 200)
        result = runner.invoke(cli.app, ["status", "--store", str(store)])
        assert result.exit_code == 0, result.output
        rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
                for line in result.output.splitlines() if line.startswith("│")}
        # planned, finished, running, interrupted, failed, diverged, pending, ETA
        assert rows["quickstart"][:7] == ["2", "1", "0", "0", "0", "0", "1"]
        assert rows["other"][:7] == ["1", "0", "1", "0", "0", "0", "0"]
        detail = runner.invoke(cli.app, ["status", "quickstart", "--store", str(store)])
        assert detail.exit_code == 0, detail.output
        assert "runs of quickstart" in detail.output and "quickstart-mlp" in detail.output
        assert "100%" in detail.output
        missing = runner.invoke(cli.app, ["status", "nope", "--store", str(store)])
        assert missing.exit_code == 2
        assert "no experiment 'nope'" in missing.output and "quickstart" in missing.output
        absent = runner.invoke(cli.app, ["status", "--store", str(tmp_path / "none.db")])
        assert absent.exit_code == 2 and "no store at" in absent.output
        assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize("command", [["runs"], ["status"], ["show", "x"]])
def test_reading_commands_reject_a_file_that_is_not_a_store(tmp_path, command):
    bogus = tmp_path / "notes.db"
    bogus.write_text("not a database")
    result = CliRunner().invoke(cli.app, [*command, "--store", str(bogus)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "error:" in text and "not a usable SQLite database" in text
    assert bogus.read_text() == "not a database"  # untouched
