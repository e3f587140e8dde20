"""Threads per process (learnscope.threads) and their use by `learnscope run`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import learnscope as ls
from learnscope import cli, threads
from learnscope.threads import available_cores, cgroup_quota, choose_threads


def test_an_explicit_request_wins_over_the_environment_and_the_cores():
    choice = choose_threads(requested=3, environment="1", cores=16, processes=4)
    assert choice.threads == 3 and "--threads" in choice.reason


def test_omp_num_threads_wins_over_the_cores():
    choice = choose_threads(environment="5", cores=2, processes=2)
    assert choice.threads == 5 and "OMP_NUM_THREADS=5" in choice.reason


@pytest.mark.parametrize("value", ["", "0", "-2", "two", "1.5"])
def test_an_unusable_omp_num_threads_is_ignored(value):
    assert choose_threads(environment=value, cores=6, processes=2).threads == 3


def test_the_cores_are_split_among_the_processes_never_to_zero():
    assert choose_threads(cores=8).threads == 8
    assert choose_threads(cores=8, processes=2).threads == 4
    assert choose_threads(cores=8, processes=3).threads == 2
    assert choose_threads(cores=2, processes=3).threads == 1
    assert "8 core(s)" in choose_threads(cores=8, processes=2).reason
    assert "shared by 2 processes" in choose_threads(cores=8, processes=2).reason


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_a_bad_request_is_refused_saying_what_is_allowed(bad):
    with pytest.raises(ValueError, match=r"integer >= 1, got"):
        choose_threads(requested=bad, cores=2)


def test_available_cores_is_the_affinity_capped_by_the_cgroup_quota():
    assert available_cores(affinity=8, quota=None) == 8
    assert available_cores(affinity=8, quota=2.0) == 2
    assert available_cores(affinity=8, quota=1.5) == 2  # a partial core still runs a thread
    assert available_cores(affinity=2, quota=6.0) == 2
    assert available_cores(affinity=4, quota=0.2) == 1
    if hasattr(os, "sched_getaffinity"):
        assert available_cores(quota=float("inf")) == len(os.sched_getaffinity(0))


def test_the_cgroup_quota_is_read_from_cpu_max(tmp_path):
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")
    assert cgroup_quota(cpu_max) is None
    cpu_max.write_text("150000 100000\n")
    assert cgroup_quota(cpu_max) == 1.5
    assert cgroup_quota(tmp_path / "missing") is None


def test_local_torchrun_ranks_and_workers_share_the_cores(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert threads.local_processes() == 1 and threads.local_processes(3) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.local_processes() == 2 and threads.local_processes(3) == 6
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    expected = max(1, available_cores() // 2)
    assert threads.decide_threads().threads == expected


def test_use_threads_sets_torch_and_blas(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numpy  # noqa: F401 - loads the BLAS threadpoolctl limits

    before = torch.get_num_threads()
    blas = threadpoolctl.threadpool_info()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert threads.use_threads(2).threads == 2
        assert torch.get_num_threads() == 2
        limits = {i["num_threads"] for i in threadpoolctl.threadpool_info()
                  if i["user_api"] == "blas"}
        assert limits <= {2}
        assert threads.use_threads().threads == 1  # from OMP_NUM_THREADS
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
        for library in blas:
            if library["user_api"] == "blas":
                threadpoolctl.threadpool_limits(library["num_threads"], user_api="blas")


def test_dry_run_says_which_threads_and_why(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    store = str(tmp_path / "x.db")
    result = CliRunner().invoke(cli.app, ["run", "quickstart", "--dry-run", "--store", store])
    assert result.exit_code == 0, result.output
    assert "threads: 3 (OMP_NUM_THREADS=3" in result.output
    result = CliRunner().invoke(cli.app, ["run", "quickstart", "--dry-run", "--threads", "2",
                                          "--store", store])
    assert "threads: 2 (asked for with --threads" in result.output
    result = CliRunner().invoke(cli.app, ["run", "quickstart", "--dry-run", "--threads", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_learnscope_run_sets_and_records_the_threads(tmp_path):
    """With two local torchrun ranks announced (LOCAL_WORLD_SIZE=2, no OMP_NUM_THREADS),
    `learnscope run` gives each process half the cores, where torch alone would take them
    all, and records the threads in the run's config."""
    environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    environment.update(LEARNSCOPE_PROGRESS="off", LOCAL_WORLD_SIZE="2")
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           env=environment, capture_output=True, text=True, check=True)
    cores = available_cores()
    if int(probe.stdout) != cores or cores < 2:
        pytest.skip(f"needs torch's default ({probe.stdout.strip()}) to be the {cores} cores, "
                    "at least 2")
    store = tmp_path / "runs.db"
    done = subprocess.run(
        [sys.executable, "-m", "learnscope.cli", "run", "quickstart", "--epochs", "1",
         "--every", "1000", "--store", str(store)],
        env=environment, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = cores // 2
    assert f"threads: {expected} ({cores} core(s) available" in " ".join(done.stdout.split())
    with ls.store.open(store, read_only=True) as opened:
        configs = [opened.run(run_id)["config"] for run_id in opened.runs()["id"]]
    assert [config["threads"] for config in configs] == [expected, expected]
