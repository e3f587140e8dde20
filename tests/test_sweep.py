"""`learnscope sweep`: parallel runs of a preset (local process pool, Ray), skip, resume, failures.

The runs are tiny MLPs on Gaussian clusters (12-60 updates, measured every 2), so each takes
well under a second once a worker has imported torch; most of the time goes into starting the
worker processes (spawn) and, for the Ray test, a local Ray instance.
"""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import learnscope as ls
from learnscope import cli
from learnscope import threads as threads_mod
from learnscope.diagnostics import interruption_in
from learnscope.experiments import sweep as sweep_mod
from learnscope.experiments.presets import RunSpec, execute
from learnscope.experiments.status import planned, summarise
from learnscope.experiments.sweep import SweepResult, assign_device, sweep
from learnscope.store.db import _pid_alive  # zombies count as dead
from learnscope.threads import choose_threads

PRESET = "tiny"


def tiny(seed: int, steps: int = 12, **fields) -> RunSpec:
    """A small MLP on Gaussian clusters (no scikit-learn import: workers start faster),
    measured every 2 updates with the activation-pattern probe."""
    values = dict(preset=PRESET, name=f"tiny-mlp-s{seed}-{steps}", model="mlp",
                  model_options={"hidden": (32, 32)}, dataset="synthetic",
                  data_options={"shape": (64,), "num_samples": 1200, "val_fraction": 0.0},
                  recipe="multistep",
                  recipe_options={"epochs": 20}, seed=seed, max_steps=steps,
                  schedule="every 2", probe_options={"batch_size": 512})
    values.update(fields)
    return RunSpec(**values)


def values_of(store: Path, name: str, *, comparisons: bool = True) -> pd.DataFrame:
    """All stored values of run `name` (without `*_since_*` comparisons if asked), sorted."""
    with ls.store.open(store, read_only=True) as s:
        frame = s.metrics(run=name)
    if not comparisons:
        frame = frame[~frame["measure"].str.contains("_since_")]
    frame = frame.drop(columns=["run"]).sort_values(["step", "probe", "layer", "measure"])
    return frame.reset_index(drop=True)


def runs_of(store: Path) -> pd.DataFrame:
    with ls.store.open(store, read_only=True) as s:
        return s.runs()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny runs executed one after another in this process: what a sweep must reproduce."""
    store = tmp_path_factory.mktemp("sequential") / "s.db"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for spec in (tiny(0), tiny(1), tiny(2), tiny(3, steps=24), tiny(4, steps=60)):
            assert execute(spec, store)[1] == "finished"
    finally:
        torch.set_num_threads(threads)
    return store


# --------------------------------------------------------------------------- assignment


def test_device_and_thread_assignment():
    assert [assign_device("auto", i, 0) for i in range(3)] == ["cpu"] * 3
    assert [assign_device("auto", i, 2) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert [assign_device("cuda", i, 3) for i in range(4)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert assign_device("cpu", 1, 2) == "cpu" and assign_device("cuda:1", 0, 2) == "cuda:1"
    assert assign_device(None, 0, 2) is None  # each run keeps its own device
    assert choose_threads(cores=8, processes=2).threads == 4
    assert choose_threads(cores=2, processes=3).threads == 1  # never 0
    assert choose_threads(requested=3, cores=2, processes=2).threads == 3
    assert sweep_mod.default_workers("auto", cuda_count=3) == 3
    assert sweep_mod.default_workers("auto", cuda_count=0) == 2
    assert sweep_mod.default_workers("cpu", cuda_count=3) == 2
    sweep_mod.check_device("cuda:1", 2)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        sweep_mod.check_device("cuda", 0)
    with pytest.raises(ValueError, match=r"sees 2 CUDA GPU\(s\)"):
        sweep_mod.check_device("cuda:2", 2)
    with pytest.raises(ValueError, match="unknown device 'banana'"):
        sweep_mod.check_device("banana", 0)
    # a Ray task sees only the GPU Ray gave it, as `cuda`
    assert sweep_mod._ray_device("auto", 0) == "cpu"
    assert sweep_mod._ray_device("auto", 4) == "cuda"
    assert sweep_mod._ray_device("cuda:3", 4) == "cuda"
    with pytest.raises(ValueError, match="no GPU"):
        sweep_mod._ray_device("cuda", 0)


def test_bad_arguments_are_rejected_before_anything_starts(tmp_path):
    store = tmp_path / "s.db"
    for kwargs, message in (({"workers": 0}, "workers must be an integer >= 1"),
                            ({"threads": 0}, "threads must be"),
                            ({"backend": "slurm"}, "unknown backend 'slurm'"),
                            ({"address": "auto"}, "is for the ray backend"),
                            ({"device": "cuda:99"}, "cuda:99")):
        with pytest.raises(ValueError, match=message):
            sweep([tiny(0)], store, **kwargs)
    with pytest.raises(ValueError, match="repeated: tiny-mlp-s0-12"):
        sweep([tiny(0), tiny(0)], store)
    assert not store.exists()


def test_cli_dry_run_spreads_workers_over_the_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_mod, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(threads_mod, "available_cores", lambda: 12)  # cores this process may use
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    store = tmp_path / "s.db"
    result = CliRunner().invoke(cli.app, ["sweep", "equisep-depth", "--depths", "1,2,3",
                                          "--workers", "3", "--dry-run", "--store", str(store)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "3 runs" in text and "equisep-depth-small-digits-fnn-L3" in text
    assert "3 worker process(es) x 4 thread(s), on cuda:0, cuda:1" in text
    assert "Would run 3 of 3 runs" in text
    assert not store.exists()  # a dry run creates nothing
    cpu = CliRunner().invoke(cli.app, ["sweep", "equisep-depth", "--depths", "1", "--device",
                                       "cpu", "--dry-run", "--store", str(store)])
    assert cpu.exit_code == 0, cpu.output
    # one run: one worker, all the cores
    assert "1 worker process(es) x 12 thread(s), on cpu" in " ".join(cpu.output.split())


@pytest.mark.parametrize("arguments, message", [
    (["sweep", "nope"], "unknown preset 'nope' for a sweep: known ones are early"),
    (["sweep", "quickstart"], "quickstart and trajectories run with `learnscope run`"),
    (["sweep", "early", "--backend", "slurm"], "unknown backend 'slurm'; use local or ray"),
    (["sweep", "early", "--address", "auto"], "--address is for --backend ray"),
    (["sweep", "early", "--device", "cuda:5"], "cuda:5"),
    (["sweep", "early", "--seeds", "0", "--models", "resnet8", "--optimizers", "adam"],
     "--optimizers adam: only equisep takes --optimizers, early does not"),
])
def test_cli_sweep_errors(tmp_path, arguments, message):
    result = CliRunner().invoke(cli.app, [*arguments, "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "s.db").exists()


def test_cli_sweep_rejects_zero_workers(tmp_path):
    result = CliRunner().invoke(cli.app, ["sweep", "early", "--workers", "0"])
    assert result.exit_code == 2
    assert "greater than or equal to 1" in result.output


def test_cli_ray_backend_without_ray_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = CliRunner().invoke(cli.app, ["sweep", "early", "--backend", "ray", "--dry-run",
                                          "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2, result.output
    assert "pip install 'learnscope[ray]'" in " ".join(result.output.split())
    with pytest.raises(ImportError, match=r"learnscope\[ray\]"):
        sweep([tiny(0)], tmp_path / "s.db", backend="ray")
    with_workers = CliRunner().invoke(cli.app, ["sweep", "early", "--backend", "ray",
                                                "--workers", "2"])
    assert with_workers.exit_code == 2 and "--workers is for the local backend" in \
        " ".join(with_workers.output.split())


# --------------------------------------------------------------------------- local backend


def test_parallel_sweep_matches_sequential_skips_finished_and_reports_failures(
        tmp_path, reference):
    store = tmp_path / "parallel.db"
    broken_device = tiny(5, device="cuda:99")  # fails inside training, after its run started
    unknown_model = tiny(6, model="no-such-net")  # fails before its run is created
    specs = [tiny(0), broken_device, tiny(1), unknown_model, tiny(2)]
    seen: list[SweepResult] = []
    # device=None: each spec keeps its own device (cpu, or the GPU that does not exist)
    results = sweep(specs, store, workers=2, device=None, threads=1, on_result=seen.append)

    assert [r.name for r in results] == [s.name for s in specs]
    assert sorted(r.name for r in seen) == sorted(s.name for s in specs)  # each reported once
    by_name = {r.name: r for r in results}
    assert [by_name[tiny(i).name].status for i in range(3)] == ["finished"] * 3
    failed = by_name[broken_device.name]
    assert failed.status == "failed" and not failed.ok and failed.run_id is not None
    assert "Traceback" in failed.traceback
    assert by_name[unknown_model.name].status == "failed"
    assert by_name[unknown_model.name].run_id is None
    assert "unknown model 'no-such-net'" in by_name[unknown_model.name].error

    runs = runs_of(store)
    assert sorted(runs["name"]) == sorted(tiny(i).name for i in range(3)) + [broken_device.name]
    assert runs["name"].is_unique  # every run once
    stored = runs.set_index("name")
    assert stored.loc[broken_device.name, "status"] == "failed"
    message = failed.error.split(": ", 1)[-1]  # the exception's message, whoever stored it
    assert message and stored.loc[broken_device.name, "error"].endswith(message)
    for i in range(3):  # same values as the runs done one after another, NaN included
        pd.testing.assert_frame_equal(values_of(store, tiny(i).name),
                                      values_of(reference, tiny(i).name))
        assert stored.loc[tiny(i).name, "status"] == "finished"
        assert by_name[tiny(i).name].run_id == stored.loc[tiny(i).name, "id"]

    # the plan lists every run, so `learnscope status` counts them, failures included
    assert planned(store, PRESET) == [s.name for s in specs]
    summary = summarise(runs, PRESET, planned(store, PRESET))
    assert summary.counts["finished"] == 3 and summary.counts["failed"] == 1
    assert summary.counts["pending"] == 1  # the run that never started

    # a second sweep skips the finished runs without starting a process; nothing is measured
    with ls.store.open(store, read_only=True) as s:
        before = len(s.metrics())
    started = time.monotonic()
    again = sweep([tiny(0), tiny(1), tiny(2)], store, workers=2)
    assert time.monotonic() - started < 3  # no worker process was started
    assert [r.status for r in again] == ["skipped"] * 3
    assert [r.run_id for r in again] == [by_name[tiny(i).name].run_id for i in range(3)]
    with ls.store.open(store, read_only=True) as s:
        assert len(s.metrics()) == before


KILL_AT_STEP = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from learnscope.experiments.presets import RunSpec, execute

    torch.set_num_threads(1)
    spec = RunSpec(**eval(sys.argv[2]))

    def on_step(step, total):
        if step == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # a run killed mid-way, after a checkpoint

    execute(spec, sys.argv[1], on_step=on_step)
    """
)


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, reference):
    store = tmp_path / "s.db"
    spec = tiny(3, steps=24)
    killed = subprocess.run([sys.executable, "-c", KILL_AT_STEP, str(store),
                             repr(asdict(spec)), "13"], capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = runs_of(store).set_index("name").loc[spec.name]
    assert before["status"] == "interrupted" and 12 <= before["last_step"] < 24

    results = sweep([spec], store, workers=2, device="cpu", threads=1)  # one run: one worker
    assert [r.status for r in results] == ["finished"]
    runs = runs_of(store).set_index("name")
    assert len(runs) == 1 and runs.loc[spec.name, "id"] == before["id"]  # resumed, not new
    assert runs.loc[spec.name, "status"] == "finished"
    resumed = values_of(store, spec.name, comparisons=False)
    assert sorted(resumed["step"].unique()) == list(range(25))  # train logs every step
    # identical to the uninterrupted run (comparisons with the lost in-memory references after
    # the resume are NaN by design, so they are left out)
    pd.testing.assert_frame_equal(resumed, values_of(reference, spec.name, comparisons=False))


class _InterruptedWriter(io.RawIOBase):
    """A file whose second write raises KeyboardInterrupt, as a Ctrl-C or SIGTERM landing in
    torch.save's writer does (torch turns it into a RuntimeError while it cleans up)."""

    def __init__(self, handle) -> None:
        self.handle, self.writes = handle, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.writes += 1
        if self.writes == 2:
            raise KeyboardInterrupt("signal while saving")
        return self.handle.write(data)


def _interrupt_the_nth_save(monkeypatch, n: int) -> None:
    real_save, calls = torch.save, []

    def save(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            return real_save(obj, _InterruptedWriter(handle), *args, **kwargs)
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_interruption_in_finds_the_ctrl_c_behind_an_error():
    interrupt = KeyboardInterrupt("stop")
    try:
        try:
            raise interrupt
        except KeyboardInterrupt:
            raise RuntimeError("unexpected pos 64 vs 0") from None
    except RuntimeError as error:
        converted = error
    assert converted.__cause__ is None and interruption_in(converted) is interrupt
    assert interruption_in(interrupt) is interrupt
    assert interruption_in(ValueError("bad")) is None
    looped = ValueError("a")
    looped.__context__ = TypeError("b")
    looped.__context__.__context__ = looped  # a cycle ends the walk
    assert interruption_in(looped) is None


def test_a_checkpoint_save_interrupted_by_a_signal_raises_keyboard_interrupt(tmp_path,
                                                                           monkeypatch):
    from learnscope.train.trainer import _save_atomic

    path = tmp_path / "checkpoint.pt"
    _save_atomic({"old": torch.zeros(3)}, path)
    _interrupt_the_nth_save(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):  # not torch's "RuntimeError: ... unexpected pos"
        _save_atomic({"new": torch.ones(1000)}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file
    assert torch.equal(torch.load(path)["old"], torch.zeros(3))  # the old one is whole


def test_a_run_stopped_while_saving_its_checkpoint_is_interrupted_and_resumes(
        tmp_path, monkeypatch, reference):
    """A SIGTERM that lands in torch.save once left a sweep's run failed (flaky sweep test)."""
    store = tmp_path / "s.db"
    spec = tiny(3, steps=24)
    _interrupt_the_nth_save(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        execute(spec, store)
    run = runs_of(store).set_index("name").loc[spec.name]
    assert run["status"] == "interrupted" and not run["error"]
    monkeypatch.undo()
    run_id, status = execute(spec, store)
    assert (run_id, status) == (run["id"], "finished")  # resumed, not new
    pd.testing.assert_frame_equal(values_of(store, spec.name, comparisons=False),
                                  values_of(reference, spec.name, comparisons=False))


def test_a_killed_worker_is_replaced_and_its_run_resumed(tmp_path, reference):
    """SIGKILL a worker mid-run: the pool restarts and the run resumes from its checkpoint."""
    store = tmp_path / "s.db"
    victim = tiny(4, steps=60)
    killed: list[tuple[int, int]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not killed:
            time.sleep(0.02)
            if not store.exists():
                continue
            try:
                runs = runs_of(store)
            except ls.store.StoreError:
                continue
            row = runs[(runs["name"] == victim.name) & (runs["last_step"].fillna(0) >= 6)]
            if len(row) and row["status"].iloc[0] == "running":
                killed.append((int(row["pid"].iloc[0]), int(row["last_step"].iloc[0])))
                os.kill(killed[0][0], signal.SIGKILL)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        results = sweep([victim, tiny(0), tiny(1)], store, workers=2, device="cpu", threads=1)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert killed and killed[0][1] < 60, "the victim finished before it could be killed"
    assert [r.status for r in results] == ["finished"] * 3
    runs = runs_of(store).set_index("name")
    assert runs["status"].eq("finished").all() and len(runs) == 3  # resumed, not started anew
    with ls.store.open(store, read_only=True) as s:
        steps = s.measured_steps(runs.loc[victim.name, "id"], "patterns")
    assert steps == list(range(0, 61, 2))
    # The other worker's run was stopped too (the executor ends a broken pool's workers) and
    # resumed. Known trainer limitation: a run stopped between an epoch's last update (which
    # writes the checkpoint) and that epoch's test evaluation resumes in the next epoch, so the
    # evaluation is missing; it is left out of the comparison.
    for name in (victim.name, tiny(0).name, tiny(1).name):
        got, want = (values_of(where, name, comparisons=False) for where in (store, reference))
        evaluations = want["measure"].str.startswith(("test_", "val_"))
        pd.testing.assert_frame_equal(
            got[~got["measure"].str.startswith(("test_", "val_"))].reset_index(drop=True),
            want[~evaluations].reset_index(drop=True))


CTRL_C = textwrap.dedent(
    """
    import sys
    from learnscope.experiments.presets import RunSpec
    from learnscope.experiments.sweep import sweep

    if __name__ == "__main__":
        specs = [RunSpec(**spec) for spec in eval(sys.argv[2])]
        try:
            sweep(specs, sys.argv[1], workers=2, device="cpu", threads=1)
        except KeyboardInterrupt:
            sys.exit(130)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                                    signal.SIGKILL], ids=lambda s: signal.Signals(s).name)
def test_no_worker_outlives_a_stopped_sweep_and_the_runs_stay_resumable(tmp_path, signum):
    """Ctrl-C, SIGTERM, SIGHUP or SIGKILL of the sweep's process: within a few seconds no
    worker runs on, no queued run starts, and the runs are left interrupted (resumable)."""
    store = tmp_path / "s.db"
    script = tmp_path / "sweep_then_signal.py"
    script.write_text(CTRL_C)
    # far more updates than can happen before the signal, however fast the machine; a third
    # run waits for a free worker and must never start
    specs = [tiny(7, steps=100_000), tiny(8, steps=100_000), tiny(9, steps=100_000)]
    log = tmp_path / "output.txt"
    with open(log, "w") as output:  # a file, not a pipe: an orphan could hold a pipe open
        # SIGINT handled as in a terminal, even when the test runner was started in the
        # background (a shell starts background jobs with SIGINT ignored; children inherit it)
        process = subprocess.Popen([sys.executable, str(script), str(store),
                                    repr([asdict(s) for s in specs])],
                                   stdout=output, stderr=subprocess.STDOUT, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                    signal.SIG_DFL))
    try:
        # wait until two runs are under way (workers importing torch on a loaded machine can
        # take a minute; the wait ends as soon as they run)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                runs = runs_of(store) if store.exists() else pd.DataFrame()
            except ls.store.StoreError:
                continue
            if len(runs) == 2 and (runs["last_step"].fillna(0) >= 2).all():
                break
        else:
            pytest.fail(f"the sweep did not start two runs in 300 s:\n{log.read_text()}")
        workers = [int(pid) for pid in runs["pid"]]
        process.send_signal(signum)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, text
        assert "Traceback" not in text  # the workers ignore Ctrl-C; the parent stops them
    limit = time.monotonic() + 15  # the orphan watch polls every 0.5 s, then 5 s of grace
    while time.monotonic() < limit and any(_pid_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if _pid_alive(pid)], "a worker outlived the sweep"
    time.sleep(1.0)  # had a queued run been started, it would show now
    runs = runs_of(store)
    assert sorted(runs["name"]) == sorted(s.name for s in specs[:2]), text
    assert list(runs["status"]) == ["interrupted", "interrupted"], text
    assert (runs["last_step"] < 100_000).all()


# --------------------------------------------------------------------------- Ray


def test_ray_backend_runs_every_spec_into_the_store(tmp_path, reference):
    pytest.importorskip("ray", reason="the Ray backend needs the [ray] extra")
    store = tmp_path / "shared" / "s.db"
    specs = [tiny(0), tiny(1), tiny(6, model="no-such-net")]
    seen: list[str] = []
    # address None: the backend starts a local Ray instance (and shuts it down afterwards)
    results = sweep(specs, store, backend="ray", threads=1, on_result=lambda r: seen.append(r.name))
    assert sorted(seen) == sorted(s.name for s in specs)
    assert [r.status for r in results] == ["finished", "finished", "failed"]
    assert "unknown model" in results[2].error and results[2].device == "cpu"
    with ls.store.open(store, read_only=True) as s:
        assert s.journal_mode == "delete"  # the tasks' journal mode: fit for shared storage
    runs = runs_of(store).set_index("name")
    assert runs["status"].eq("finished").all() and len(runs) == 2
    for i in (0, 1):
        pd.testing.assert_frame_equal(values_of(store, tiny(i).name),
                                      values_of(reference, tiny(i).name))
    summary = summarise(runs_of(store), PRESET, planned(store, PRESET))
    assert (summary.counts["finished"], summary.counts["pending"]) == (2, 1)
    assert math.isfinite(summary.eta_seconds)
    # a second Ray sweep skips what is finished without starting Ray at all
    again = sweep(specs[:2], store, backend="ray")
    assert [r.status for r in again] == ["skipped", "skipped"]


def test_cli_prints_a_line_per_run_a_summary_and_fails_on_a_failed_run(tmp_path, monkeypatch):
    """The command's own logic, with the sweep itself replaced (it is tested above)."""
    calls = []

    def fake_sweep(specs, store, *, on_result, **options):
        calls.append((len(specs), options))
        outcomes = [SweepResult(specs[0].name, "id-0", "finished", device="cpu", seconds=3.0),
                    SweepResult(specs[1].name, "id-1", "skipped"),
                    SweepResult(specs[2].name, None, "failed", "ValueError: bad [red]",
                                "cpu", 0.5, "Traceback (most recent call last):\n  boom")]
        for result in outcomes:
            on_result(result)
        return outcomes

    monkeypatch.setattr(sweep_mod, "sweep", fake_sweep)
    store = tmp_path / "s.db"
    arguments = ["sweep", "equisep-depth", "--depths", "1,2,3", "--epochs", "1", "--workers",
                 "2", "--threads", "1", "--device", "cpu", "--store", str(store)]
    result = CliRunner().invoke(cli.app, arguments)
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert calls == [(3, {"workers": 2, "backend": "local", "address": None, "device": "cpu",
                          "threads": 1, "rerun": False})]
    assert "equisep-depth-small-digits-fnn-L1-adam-lr0.001-s0: finished (id-0, 0:00:03, cpu)" \
        in text
    assert "fnn-L3-adam-lr0.001-s0: failed (no run, 0:00:00, cpu): ValueError: bad [red]" in text
    assert "Traceback (most recent call last): boom" in text
    assert "1 finished, 1 skipped, 0 diverged, 1 failed" in text
    assert f"learnscope status equisep-depth --store {store}" in text

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_mod, "sweep", interrupted)
    stopped = CliRunner().invoke(cli.app, arguments)
    assert stopped.exit_code == 130
    assert "resume when the same sweep is started again" in " ".join(stopped.output.split())
