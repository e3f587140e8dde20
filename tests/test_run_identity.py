"""Run identity: fingerprints, reuse / resume / new decisions, one live owner per run, Ctrl-C."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import learnscope as ls
from learnscope.cli import app
from learnscope.experiments.identity import MEASUREMENT_VERSION, canonical, fingerprint
from learnscope.experiments.presets import execute, expand, plan, run_identity

# one run of equisep-depth (depth 1, Adam 1e-3) on digits: a few seconds
TINY = ["equisep-depth", "--depths", "1"]


def _cli(*arguments: str) -> str:
    result = CliRunner().invoke(app, ["run", *arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _runs(store: Path):
    with ls.store.open(store, read_only=True) as s:
        return s.runs()


def _env() -> dict[str, str]:
    source = str(Path(ls.__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=source, OMP_NUM_THREADS="1")


def _learnscope(*arguments: str) -> subprocess.Popen:
    # SIGINT handled as in a terminal, even when the test runner was started in the
    # background (a shell starts background jobs with SIGINT ignored, which children inherit)
    return subprocess.Popen([sys.executable, "-m", "learnscope.cli", *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(condition, what: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _first_run(store: Path, name_prefix: str) -> dict | None:
    """The first run whose name starts with `name_prefix`, as a dict (None: none yet)."""
    if not store.exists():
        return None
    try:
        runs = _runs(store)
    except ls.store.StoreError:  # being created right now
        return None
    runs = runs[runs["name"].str.startswith(name_prefix)]
    if runs.empty:
        return None
    return {key: None if pd.isna(value) else value for key, value in runs.iloc[0].items()}


# ------------------------------------------------------------------ fingerprints


def test_fingerprint_hashes_canonical_json_with_the_measurement_version():
    spec = expand("equisep-depth", "small", depths=[1])[0]
    identity = run_identity(spec)
    assert identity["measurement_version"] == MEASUREMENT_VERSION
    assert identity["recipe"]["epochs"] == spec.recipe_options["epochs"]  # resolved recipe
    assert identity["recipe"]["batch_size"] == 128  # a recipe default, resolved
    assert "device" not in identity and "name" not in identity
    import hashlib

    assert fingerprint(identity) == hashlib.sha256(canonical(identity).encode()).hexdigest()
    reordered = dict(reversed(list(identity.items())))
    assert fingerprint(reordered) == fingerprint(identity)  # key order does not matter
    assert fingerprint(run_identity(expand("equisep-depth", "small", depths=[1],
                                           device="cuda")[0])) == fingerprint(identity)
    for changed in (dict(steps=20), dict(epochs=3), dict(seeds=[1]), dict(schedule="every 2"),
                    dict(width=50)):
        other = expand("equisep-depth", "small", depths=[1], **changed)[0]
        assert other.name == spec.name or "seeds" in changed
        assert fingerprint(run_identity(other)) != fingerprint(identity), changed
    assert fingerprint({**identity, "measurement_version": MEASUREMENT_VERSION + 1}) \
        != fingerprint(identity)


# ------------------------------------------------------------------ reuse / resume / new


def test_steps_20_then_100_trains_a_new_run_instead_of_reusing(tmp_path):
    store = tmp_path / "s.db"
    out = _cli(*TINY, "--steps", "2", "--store", str(store))
    assert "finished" in out
    first = _runs(store)
    assert len(first) == 1 and first["last_step"].iloc[0] == 2
    dry = _cli(*TINY, "--steps", "5", "--store", str(store), "--dry-run")
    old = first["id"].iloc[0]
    assert f"settings differ from finished run {old}: steps 2 -> 5" in dry
    out = _cli(*TINY, "--steps", "5", "--store", str(store))
    runs = _runs(store)
    assert len(runs) == 2
    new = runs.iloc[1]
    name = first["name"].iloc[0]
    assert new["name"].startswith(f"{name}~") and new["fingerprint"][:6] in new["name"]
    assert new["status"] == "finished" and new["last_step"] == 5  # not the 2-step run
    assert "steps 2 -> 5" in out
    # both settings are now reused, each by its own run
    assert f"reused (finished run {old} " in _cli(*TINY, "--steps", "2", "--store", str(store),
                                                 "--dry-run")
    assert f"reused (finished run {new['id']} " in _cli(*TINY, "--steps", "5", "--store",
                                                       str(store), "--dry-run")
    out = _cli(*TINY, "--steps", "5", "--store", str(store))
    assert f"skipped ({new['id']})" in out and len(_runs(store)) == 2


def test_changed_epochs_of_equisep_makes_a_new_run(tmp_path):
    store = tmp_path / "s.db"
    spec1 = expand("equisep-depth", "small", depths=[1], epochs=1)[0]
    spec2 = expand("equisep-depth", "small", depths=[1], epochs=2)[0]
    assert spec1.name == spec2.name  # the name alone cannot tell them apart
    id1, status = execute(spec1, store)
    assert status == "finished"
    (_, claim), = plan([spec2], store)
    assert claim.action == "new" and "recipe.epochs 1 -> 2" in claim.reason
    id2, status = execute(spec2, store)
    assert status == "finished" and id2 != id1
    assert execute(spec1, store) == (id1, "skipped")
    assert execute(spec2, store) == (id2, "skipped")
    with ls.store.open(store) as s:
        assert s.run(id1)["total_steps"] < s.run(id2)["total_steps"]


def test_a_run_stored_without_fingerprint_is_never_reused(tmp_path):
    store = tmp_path / "s.db"
    spec = expand("equisep-depth", "small", depths=[1], steps=2)[0]
    with ls.store.open(store) as s:  # as an older learnscope stored it: name only
        old = s.create_run(spec.name, {"user": spec.config()}, experiment=spec.preset)
        s.set_status(old, "finished")
    (_, claim), = plan([spec], store)
    assert claim.action == "new" and "stored without a fingerprint" in claim.reason
    assert claim.name.startswith(f"{spec.name}~")
    run_id, status = execute(spec, store)
    assert status == "finished" and run_id != old
    assert execute(spec, store) == (run_id, "skipped")


def test_rerun_trains_afresh_under_the_same_name_and_fingerprint(tmp_path):
    store = tmp_path / "s.db"
    _cli(*TINY, "--steps", "2", "--store", str(store))
    first = _runs(store).iloc[0]
    dry = _cli(*TINY, "--steps", "2", "--store", str(store), "--dry-run", "--rerun")
    assert f"--rerun: a fresh run instead of {first['id']}" in dry
    _cli(*TINY, "--steps", "2", "--store", str(store), "--rerun")
    runs = _runs(store)
    assert len(runs) == 2 and list(runs["status"]) == ["finished", "finished"]
    assert runs["name"].nunique() == 1 and runs["fingerprint"].nunique() == 1
    assert f"reused (finished run {runs['id'].iloc[1]} " in _cli(
        *TINY, "--steps", "2", "--store", str(store), "--dry-run")


def test_dry_run_tells_reused_resumed_and_new_runs_apart(tmp_path):
    store = tmp_path / "s.db"
    specs = expand("equisep-depth", "small", depths=[1, 2], steps=2)
    execute(specs[0], store)
    with ls.store.open(store) as s:  # the second run started, then stopped (Ctrl-C)
        claim = s.claim_run(specs[1].name, fingerprint(run_identity(specs[1])),
                            run_identity(specs[1]), experiment=specs[1].preset)
        s.write_measurement(claim.run_id, 0, 0.0, "train", [("model", -1, "loss", 1.0)])
        s.release_run(claim.run_id)
        assert s.run(claim.run_id)["status"] == "interrupted"
    out = _cli("equisep-depth", "--depths", "1,2,3", "--steps", "2", "--store", str(store),
               "--dry-run")
    lines = {line.split(":", 1)[0]: line for line in out.splitlines() if ": " in line}
    assert "reused (finished run" in lines[specs[0].name]
    assert f"resumed (interrupted run {claim.run_id} has the same settings; resumes from step 0" \
        in lines[specs[1].name]
    third = expand("equisep-depth", "small", depths=[3], steps=2)[0].name
    assert "started fresh as " + third in lines[third]
    assert len(_runs(store)) == 2  # the dry run wrote nothing
    # and the real run resumes the interrupted one instead of starting another
    _cli("equisep-depth", "--depths", "2", "--steps", "2", "--store", str(store))
    runs = _runs(store)
    assert len(runs) == 2 and runs.set_index("id").loc[claim.run_id, "status"] == "finished"


def test_status_counts_only_the_runs_of_the_plans_settings(tmp_path):
    store = tmp_path / "s.db"
    _cli(*TINY, "--steps", "2", "--store", str(store))
    _cli(*TINY, "--steps", "3", "--store", str(store), "--dry-run")  # plans nothing
    result = CliRunner().invoke(app, ["status", "equisep-depth", "--store", str(store)])
    assert result.exit_code == 0 and "reused (finished run" in result.output
    # launched with other settings: its plan now waits for the 3-step run
    spec = expand("equisep-depth", "small", depths=[1], steps=3)[0]
    from learnscope.experiments.status import record_plan

    record_plan(store, "equisep-depth", [spec.name], {spec.name: run_identity(spec)})
    result = CliRunner().invoke(app, ["status", "equisep-depth", "--store", str(store)])
    assert result.exit_code == 0, result.output
    assert "started fresh as" in result.output and "steps 2 -> 3" in result.output
    from learnscope.experiments.status import planned, planned_identities, summarise

    summary = summarise(_runs(store), "equisep-depth", planned(store, "equisep-depth"),
                        planned_identities(store, "equisep-depth"))
    assert summary.counts["pending"] == 1 and summary.counts["finished"] == 0


# ------------------------------------------------------------------ ownership


def _claim_after(barrier, store: str, results) -> None:
    with ls.store.open(store) as s:
        barrier.wait()
        claim = s.claim_run("r", "f" * 64, {"x": 1}, experiment="e")
        results.put((claim.action, claim.run_id, os.getpid()))
        barrier.wait()  # stay alive (the owner) until both have claimed


def test_simultaneous_claims_create_one_run_and_name_the_owner(tmp_path):
    store = tmp_path / "s.db"
    ls.store.open(store).close()
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_claim_after, args=(barrier, str(store), results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    outcome = sorted(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    (busy, busy_id, _), (new, new_id, owner) = outcome
    assert (busy, new) == ("busy", "new") and busy_id == new_id
    runs = _runs(store)
    assert len(runs) == 1 and runs["status"].iloc[0] == "interrupted"  # its owner is gone
    with ls.store.open(store) as s:  # a dead owner's run is resumed, not duplicated
        again = s.claim_run("r", "f" * 64, {"x": 1}, experiment="e")
    assert (again.action, again.run_id) == ("resume", new_id)
    assert str(owner) not in again.reason


def test_a_live_owner_is_told_apart_from_a_reused_pid(tmp_path):
    store = tmp_path / "s.db"
    with ls.store.open(store) as s:
        run_id = s.claim_run("r", "a" * 64, {"x": 1}).run_id
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = Path(f"/proc/{sleeper.pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
        raw = sqlite3.connect(store)
        raw.execute("UPDATE runs SET pid = ?, pid_start = ? WHERE id = ?",
                    (sleeper.pid, start, run_id))
        raw.commit()
        with ls.store.open(store) as s:
            claim = s.claim_run("r", "a" * 64, {"x": 1})
            assert claim.action == "busy" and f"pid {sleeper.pid} on host" in claim.owner
            assert s.run(run_id)["status"] == "running"
        # the same pid with another start time is another process: the owner is gone
        raw.execute("UPDATE runs SET pid_start = 'x' WHERE id = ?", (run_id,))
        raw.commit()
        raw.close()
        with ls.store.open(store) as s:
            assert s.run(run_id)["status"] == "interrupted"
            assert s.claim_run("r", "a" * 64, {"x": 1}).action == "resume"
    finally:
        sleeper.kill()
        sleeper.wait()


def _stop_outside_a_write(process: subprocess.Popen, store: Path) -> None:
    """SIGSTOP `process` at a moment it holds no write transaction on `store`."""
    while True:
        os.kill(process.pid, signal.SIGSTOP)
        probe = sqlite3.connect(store, timeout=0.5)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # stopped inside a write: let it finish it
            os.kill(process.pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            probe.close()


def test_two_learnscope_run_processes_never_train_one_run_twice(tmp_path):
    store = tmp_path / "s.db"
    command = ["run", "equisep-depth", "--depths", "1,2", "--steps", "300",
               "--store", str(store)]
    first = _learnscope(*command)
    try:
        name = expand("equisep-depth", "small", depths=[1])[0].name
        claimed = _wait_for(lambda: _first_run(store, name), "the first process's claim")
        assert claimed["pid"] == first.pid and claimed["status"] == "running"
        _stop_outside_a_write(first, store)  # a slow first process, caught mid-run
        second = _learnscope(*command)
        out2, _ = second.communicate(timeout=600)
        assert second.returncode == 0, out2
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out1, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out1
    assert f"is being trained by pid {first.pid} on host" in out2
    runs = _runs(store)
    assert len(runs) == 2  # one run per name and fingerprint, no duplicate
    assert runs.groupby(["name", "fingerprint"]).size().max() == 1
    assert list(runs["status"]) == ["finished", "finished"]
    assert all(runs["last_step"] == 300)
    # each process trained exactly one run and reused (or skipped) the other
    trained1 = out1.count(": finished (")
    trained2 = out2.count(": finished (")
    assert (trained1, trained2) == (1, 1), (out1, out2)
    assert ": skipped (" in out1


# ------------------------------------------------------------------ quickstart resume, Ctrl-C


QUICKSTART = ("from learnscope.experiments.quickstart import run_quickstart; "
              "run_quickstart({store!r}, epochs=2, every_k=5, nets=('mlp',))")


def _metrics(store: Path):
    with ls.store.open(store, read_only=True) as s:
        runs = s.runs()
        frame = s.metrics(run=runs["id"].iloc[-1])
    return runs, frame.drop(columns="run").reset_index(drop=True)


def test_quickstart_resumes_a_killed_run_with_the_results_of_an_uninterrupted_one(tmp_path):
    reference, killed = tmp_path / "reference.db", tmp_path / "killed.db"
    subprocess.run([sys.executable, "-c", QUICKSTART.format(store=str(reference))], check=True,
                   env=_env(), timeout=600)
    process = subprocess.Popen([sys.executable, "-c", QUICKSTART.format(store=str(killed))],
                               env=_env())
    try:
        _wait_for(lambda: ((_first_run(killed, "quickstart-mlp") or {}).get("last_step")
                           or 0) >= 12, "a few measurements")
    finally:
        process.kill()
        process.wait()
    run = _first_run(killed, "quickstart-mlp")
    assert run["last_step"] < run["total_steps"]  # killed mid-run
    assert _runs(killed)["status"].iloc[0] == "interrupted"
    subprocess.run([sys.executable, "-c", QUICKSTART.format(store=str(killed))], check=True,
                   env=_env(), timeout=600)
    runs, resumed = _metrics(killed)
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"  # no run left behind
    _, expected = _metrics(reference)
    assert resumed[["step", "probe", "layer", "measure"]].equals(
        expected[["step", "probe", "layer", "measure"]])
    torch.testing.assert_close(torch.tensor(resumed["value"].to_numpy()),
                               torch.tensor(expected["value"].to_numpy()), rtol=0, atol=0,
                               equal_nan=True)


def test_ctrl_c_leaves_the_run_interrupted_and_prints_the_resume_command(tmp_path):
    store = tmp_path / "s.db"
    process = _learnscope("run", "quickstart", "--epochs", "2", "--every", "5", "--store",
                          str(store), "--rerun")
    try:
        _wait_for(lambda: ((_first_run(store, "quickstart-mlp") or {}).get("measurements")
                           or 0) >= 3, "the first measurements")
    finally:
        process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 130, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if "interrupted" in line]
    assert len(lines) == 1, out
    command = f"learnscope run quickstart --epochs 2 --every 5 --store {store}"
    assert lines[0].endswith(f"resume it with: {command}"), lines[0]  # --rerun dropped
    run = _runs(store).iloc[0]
    assert run["status"] == "interrupted" and not run["error"]
    again = subprocess.run([sys.executable, "-m", "learnscope.cli", *command.split()[1:]],
                           env=_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    runs = _runs(store)
    assert runs.set_index("id").loc[run["id"], "status"] == "finished"  # resumed, not redone
    assert set(runs["status"]) == {"finished"}


# ------------------------------------------------------------------ Scope.step


def test_scope_step_refuses_negative_and_backward_steps():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    scope = ls.Scope(model, [ls.ActivationPatterns(torch.randn(16, 4))], ls.every(2), None)
    with pytest.raises(ValueError, match=r"got step -1: steps count the optimizer updates"):
        scope.step(-1)
    with pytest.raises(TypeError, match="integer step"):
        scope.step(1.5)
    scope.step(0)
    scope.step(3)  # not measured (every 2): steps may skip ahead
    scope.step(4)
    scope.step(4)  # the same step again: already measured, nothing happens
    assert sorted(scope.results) == [0, 4]
    with pytest.raises(ValueError, match=r"got step 2 after step 4 was measured: steps must "
                                         r"not go back"):
        scope.step(2)
    with pytest.raises(ValueError, match="step 3 after step 4"):
        scope.measure(3)
    scope.forget_measurements_after(2)  # what a resume from a checkpoint at step 2 does
    scope.step(3)
    scope.step(4)
    assert sorted(scope.results) == [0, 4]


# ------------------------------------------------------------------ stores of schema 2


def test_a_schema_2_store_gains_the_identity_columns_and_its_runs_are_not_reused(tmp_path):
    path = tmp_path / "old.db"
    with ls.store.open(path) as s:
        old = s.create_run("r", {})
        s.set_status(old, "finished")
    raw = sqlite3.connect(path)  # take the store back to schema version 2
    raw.execute("DROP INDEX runs_by_fingerprint")
    for column in ("fingerprint", "identity", "pid_start"):
        raw.execute(f"ALTER TABLE runs DROP COLUMN {column}")
    raw.execute("PRAGMA user_version = 2")
    raw.commit()
    raw.close()
    with ls.store.open(path, read_only=True) as s:  # readable as it is
        assert s.runs()["fingerprint"].isna().all()
        assert s.plan_run("r", "b" * 64, {}).action == "new"
    with ls.store.open(path) as s:
        claim = s.claim_run("r", "b" * 64, {"x": 1})
        assert claim.action == "new" and claim.name == f"r~{'b' * 6}"
        assert "stored without a fingerprint" in claim.reason
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 3
    raw.close()


def test_ctrl_c_in_the_trajectories_experiment_prints_the_resume_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from learnscope import cli
    from learnscope.cli import trajectories as trajectory_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trajectory_cli, "run_trajectories", interrupted)
    monkeypatch.setattr(sys, "argv", ["learnscope", "run", "trajectories", "--networks", "2",
                                      "--rerun"])
    result = CliRunner().invoke(cli.app, ["run", "trajectories", "--networks", "2", "--rerun"])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert " ".join(result.output.split()).endswith(
        "resume it with: learnscope run trajectories --networks 2")
