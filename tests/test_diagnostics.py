"""Diagnostics: learnscope's `logging` messages, quiet by default, on with LEARNSCOPE_LOG or
--log-level; sweep worker life and collective calls per rank as they show in real jobs."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from test_distributed import check_ran, torchrun
from test_sweep import runs_of, tiny
from typer.testing import CliRunner

import learnscope as ls
from learnscope import cli, diagnostics

# time, pid, optional torchrun rank, logger name, level (diagnostics.LOG_FORMAT)
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} pid (?P<pid>\d+)"
                  r"(?: rank (?P<rank>\d+))? (?P<logger>learnscope[\w.]*) "
                  r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL): (?P<message>.*)$")


def log_lines(text: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


@pytest.fixture
def logging_off():
    """Leave learnscope's logging as quiet as it was (and LEARNSCOPE_LOG unset) afterwards."""
    before = os.environ.pop(diagnostics.LOG_ENV, None)
    diagnostics.disable_logging()
    yield
    diagnostics.disable_logging()
    os.environ.pop(diagnostics.LOG_ENV, None)
    if before is not None:
        os.environ[diagnostics.LOG_ENV] = before


def test_the_library_logger_is_quiet_by_default():
    if os.environ.get(diagnostics.LOG_ENV):
        pytest.skip("LEARNSCOPE_LOG is set for this test session")
    library = logging.getLogger("learnscope")
    assert [type(h) for h in library.handlers] == [logging.NullHandler]
    assert library.level == logging.NOTSET


def test_levels_are_case_insensitive_and_anything_else_is_named_with_the_allowed_ones():
    assert diagnostics.parse_level("DEBUG") == logging.DEBUG
    assert diagnostics.parse_level(" Info ") == logging.INFO
    assert diagnostics.parse_level("warning") == logging.WARNING
    with pytest.raises(diagnostics.LogLevelError) as error:
        diagnostics.parse_level("verbose", "LEARNSCOPE_LOG")
    assert str(error.value) == ("LEARNSCOPE_LOG 'verbose' is not a log level; use one of debug, "
                                "info, warning (any case)")


def test_enabling_twice_attaches_one_handler_and_leaves_the_root_logger_alone(
        logging_off, capsys, monkeypatch):
    root = logging.getLogger()
    root_before = (list(root.handlers), root.level)
    diagnostics.enable_logging("info")
    diagnostics.enable_logging("debug")
    library = logging.getLogger("learnscope")
    assert sum(not isinstance(h, logging.NullHandler) for h in library.handlers) == 1
    assert library.level == logging.DEBUG
    assert (list(root.handlers), root.level) == root_before

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    logging.getLogger("learnscope.test").debug("one process")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    logging.getLogger("learnscope.test").info("under torchrun")
    logging.getLogger("other.library").warning("not ours")  # no handler of ours sees it
    lines = log_lines(capsys.readouterr().err)
    assert [(m["pid"], m["rank"], m["logger"], m["level"], m["message"]) for m in lines] == [
        (str(os.getpid()), None, "learnscope.test", "DEBUG", "one process"),
        (str(os.getpid()), "1", "learnscope.test", "INFO", "under torchrun"),
    ]

    diagnostics.disable_logging()
    logging.getLogger("learnscope.test").warning("quiet again")
    assert capsys.readouterr().err == ""


def test_an_invalid_level_is_a_one_line_error_with_exit_code_2(logging_off, tmp_path,
                                                                monkeypatch):
    result = CliRunner().invoke(cli.app, ["--log-level", "loud", "runs", "--store",
                                          str(tmp_path / "s.db")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --log-level 'loud' is not a log level; use one of debug, info, warning "
        "(any case)"]
    monkeypatch.setenv(diagnostics.LOG_ENV, "chatty")
    result = CliRunner().invoke(cli.app, ["runs", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 2 and "LEARNSCOPE_LOG 'chatty'" in result.output
    assert len(result.output.strip().splitlines()) == 1

    # in a fresh process the variable is read when learnscope is imported: still one line
    job = subprocess.run([sys.executable, "-m", "learnscope.cli", "runs", "--store",
                          str(tmp_path / "s.db")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, diagnostics.LOG_ENV: "chatty"})
    assert job.returncode == 2
    shown = (job.stdout + job.stderr).strip().splitlines()
    assert len(shown) == 1 and "LEARNSCOPE_LOG 'chatty' is not a log level" in shown[0], shown
    assert not (tmp_path / "s.db").exists()  # stopped before any work


# --------------------------------------------------------------------------- a sweep's workers

# `learnscope sweep tiny ...` with the preset's runs replaced by the tiny runs of test_sweep
SWEEP_CLI = """
import sys
from learnscope import cli
from learnscope.cli import preset_runs
from learnscope.experiments.presets import RunSpec

specs = [RunSpec(**fields) for fields in eval(sys.argv[1])]
preset_runs.expand_preset = lambda *args, **options: specs
sys.argv = ["learnscope", *sys.argv[2:]]
cli.main()
"""


def run_sweep_cli(store: Path, *options: str, env: dict | None = None):
    specs = repr([asdict(tiny(seed)) for seed in (0, 1)])
    environment = {name: value for name, value in os.environ.items()
                   if name != diagnostics.LOG_ENV}
    environment.update({"OMP_NUM_THREADS": "1", "LEARNSCOPE_PROGRESS": "off", **(env or {})})
    job = subprocess.run([sys.executable, "-c", SWEEP_CLI, specs, *options, "sweep", "early",
                          "--workers", "2", "--threads", "1", "--device", "cpu",
                          "--store", str(store)],
                         capture_output=True, text=True, timeout=300, env=environment)
    assert job.returncode == 0, job.stdout + job.stderr
    assert list(runs_of(store)["status"]) == ["finished", "finished"]
    return job


def test_a_sweep_prints_no_log_lines_unless_asked(tmp_path):
    job = run_sweep_cli(tmp_path / "s.db")
    assert log_lines(job.stderr) == [] and log_lines(job.stdout) == []
    assert "learnscope." not in job.stderr, job.stderr


def test_the_log_level_option_logs_the_command_and_passes_the_level_on(logging_off, tmp_path):
    ls.store.open(tmp_path / "s.db").close()
    result = CliRunner().invoke(cli.app, ["--log-level", "DEBUG", "runs", "--store",
                                          str(tmp_path / "s.db")])
    assert result.exit_code == 0, result.output
    lines = log_lines(result.stderr)
    assert [(m["pid"], m["logger"], m["level"], m["message"]) for m in lines] == [
        (str(os.getpid()), "learnscope.cli", "DEBUG", f"learnscope {ls.__version__}: command "
         "runs")]
    assert os.environ[diagnostics.LOG_ENV] == "DEBUG"  # what sweep workers and Ray tasks read


def test_debug_logging_shows_the_life_of_every_sweep_worker(tmp_path):
    store = tmp_path / "s.db"
    job = run_sweep_cli(store, env={diagnostics.LOG_ENV: "debug"})
    lines = log_lines(job.stderr)
    assert lines, job.stderr
    sweep_pid = {m["pid"] for m in lines if m["logger"] == "learnscope.cli"}
    assert len(sweep_pid) == 1
    started = {m["pid"] for m in lines if re.fullmatch(
        rf"sweep worker pid {m['pid']} started \(sweep pid {next(iter(sweep_pid))}, .*",
        m["message"])}
    ended = {m["pid"] for m in lines if re.fullmatch(
        rf"sweep worker pid {m['pid']} ended \(.*\)", m["message"])}
    # each worker is the process that trained (and owned, in the store) one of the runs
    owners = {str(int(pid)) for pid in runs_of(store)["pid"]}
    assert started == ended == owners and len(owners) == 2 and not owners & sweep_pid
    parent = [m["message"] for m in lines if m["pid"] in sweep_pid]
    assert sorted(re.findall(r"^sweep: started worker pid (\d+)", "\n".join(parent),
                             re.M)) == sorted(owners)
    assert len([m for m in parent if m.startswith("sweep: run ") and " assigned " in m]) == 2
    shut = [m for m in parent if m.startswith("sweep: pool shut down")]
    assert len(shut) == 1 and shut[0].endswith("exit codes [0, 0])"), shut  # none killed
    claims = [m for m in lines if m["logger"] == "learnscope.store.db"
              and m["message"].startswith("claim_run ")]
    assert {m["pid"] for m in claims} == owners  # each worker claimed its run in the store
    saved = [m for m in lines if m["logger"] == "learnscope.train.trainer"
             and m["message"].startswith("checkpoint saved at step ")]
    assert {m["pid"] for m in saved} == owners


# --------------------------------------------------------------------------- torchrun

COLLECTIVES = """
import numpy as np
import torch
from learnscope import distributed

context = distributed.init_from_env()
distributed.all_gather_arrays(np.zeros((3 + context.rank, 2), dtype=np.int64))
distributed.all_reduce_sum(torch.ones(5))
distributed.broadcast_object({"rank": context.rank})
distributed.all_gather_objects(context.rank)
distributed.broadcast_module_state(torch.nn.Linear(4, 2))
distributed.barrier()
distributed.run_and_end(lambda: None)
"""


def test_debug_logging_shows_every_ranks_collective_calls_tagged_with_its_rank(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    job = torchrun(script, env={diagnostics.LOG_ENV: "debug"})
    check_ran(job)
    lines = [m for m in log_lines(job.stderr) if m["logger"] == "learnscope.distributed"]
    for rank in ("0", "1"):
        mine = [m for m in lines if m["rank"] == rank]
        assert len({m["pid"] for m in mine}) == 1, job.stderr  # one process per rank
        calls = [m["message"].split(":")[0] for m in mine if m["level"] == "DEBUG"]
        assert calls == ["all_gather_arrays", "all_reduce_sum", "broadcast_object",
                         "all_gather_objects", "broadcast_module_state", "barrier"], job.stderr
        assert all(f": rank {rank} of 2" in m["message"] for m in mine if m["level"] == "DEBUG")
        gathered = next(m["message"] for m in mine if m["message"].startswith("all_gather_ar"))
        assert gathered.endswith(f"sends {3 + int(rank)} x 2 int64")
        info = [m["message"] for m in mine if m["level"] == "INFO"]
        assert info[0].startswith(f"joined the process group: rank {rank} of 2")
        assert info[-1].startswith(f"shutting down the process group: rank {rank} of 2")
    assert len({m["pid"] for m in lines}) == 2
