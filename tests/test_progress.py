"""Progress displays: the rich bar on a terminal, plain periodic lines elsewhere, and the jobs
(training, measurement pass, since-final pass) that report into them."""

from __future__ import annotations

import io
import re

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import TensorDataset

import learnscope as ls
from learnscope import progress as progress_module
from learnscope.progress import format_duration, progress, resolve_mode
from learnscope.train import recipes
from learnscope.train.trainer import train


class FakeClock:
    """Stands in for time.monotonic so that elapsed times and ETAs are known exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def test_format_duration():
    assert format_duration(0) == "0:00:00"
    assert format_duration(59.6) == "0:01:00"
    assert format_duration(3 * 3600 + 25 * 60 + 7) == "3:25:07"
    assert format_duration(86400 + 61) == "1 day, 0:01:01"
    assert format_duration(3 * 86400) == "3 days, 0:00:00"
    for unknown in (None, float("nan"), float("inf"), -1):
        assert format_duration(unknown) == "-"


def test_mode_follows_terminal_and_environment(monkeypatch):
    monkeypatch.delenv("LEARNSCOPE_PROGRESS", raising=False)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_mode(stream=Terminal()) == "bar"
    assert resolve_mode(stream=io.StringIO()) == "plain"
    monkeypatch.setenv("LEARNSCOPE_PROGRESS", "off")
    assert resolve_mode(stream=Terminal()) == "off"
    assert resolve_mode("plain", stream=Terminal()) == "plain"
    monkeypatch.setenv("LEARNSCOPE_PROGRESS", "fancy")
    with pytest.raises(ValueError, match=r"unknown progress mode 'fancy'.*bar, plain, off"):
        resolve_mode(stream=io.StringIO())


def test_plain_lines_are_periodic_with_eta(clock):
    out = io.StringIO()
    with progress("plain", stream=out, interval=10) as report:
        task = report.task("train net", total=100)
        clock.now += 4
        task.update(completed=10)  # 4 s since start: under the interval, no line
        clock.now += 6
        task.update(completed=25)  # 10 s: a line; 25 units in 10 s -> 75 left take 30 s
        clock.now += 3
        task.update(completed=30)  # 3 s after the last line: none
        clock.now += 7
        task.update(completed=100)
        task.finish()
    lines = out.getvalue().splitlines()
    assert lines == [
        "train net: 25/100 (25%), 0:00:10 elapsed, ETA 0:00:30",
        "train net: 100/100 (100%), 0:00:20 elapsed, ETA 0:00:00",
        "train net: 100/100 (100%), 0:00:20 elapsed, done",
    ]


def test_plain_unknown_total_and_off_mode(clock):
    out = io.StringIO()
    with progress("plain", stream=out, interval=0) as report:
        task = report.task("sweep", total=None)
        clock.now += 5
        task.advance(3)
    assert out.getvalue().splitlines() == ["sweep: 3, 0:00:05 elapsed"]
    silent = io.StringIO()
    with progress("off", stream=silent) as report:
        report.task("x", total=3).advance()
    assert silent.getvalue() == ""


def test_transient_task_prints_only_when_it_lasts(clock):
    out = io.StringIO()
    with progress("plain", stream=out, interval=10) as report:
        quick = report.task("count patterns at step 3", total=50, transient=True)
        clock.now += 1
        quick.update(completed=50)
        quick.finish()  # lasted 1 s < 10 s: nothing at all
        slow = report.task("count patterns at step 4", total=50, transient=True)
        clock.now += 12
        slow.update(completed=20)
        clock.now += 1
        slow.update(completed=50)
        slow.finish()  # it printed once, so its end is printed too
    assert out.getvalue().splitlines() == [
        "count patterns at step 4: 20/50 (40%), 0:00:12 elapsed, ETA 0:00:18",
        "count patterns at step 4: 50/50 (100%), 0:00:13 elapsed, done",
    ]


def test_bar_mode_draws_a_rich_bar_and_removes_transient_tasks():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120)
    with progress("bar", console=console) as report:
        task = report.task("train resnet20", total=40)
        inner = report.task("count patterns", total=10, transient=True)
        task.update(completed=40)
        inner.update(completed=10)
        inner.finish()
        assert [t.description for t in report._rich.tasks] == ["train resnet20"]
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", buffer.getvalue())
    assert "train resnet20" in text and "40/40" in text and "ETA" in text


def test_current_is_the_innermost_display():
    assert progress_module.current() is None
    with progress("off") as outer:
        assert progress_module.current() is outer
        with progress("off") as inner:
            assert progress_module.current() is inner
        assert progress_module.current() is outer
    assert progress_module.current() is None


def test_training_and_measurement_report_into_the_display(tmp_path, one_thread):
    """train() reports its updates, and each measurement pass its samples, when in a display."""
    torch.manual_seed(0)
    inputs, labels = torch.randn(96, 5), torch.randint(0, 3, (96,))
    data = TensorDataset(inputs, labels)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    recipe = recipes.get("adam", epochs=1, batch_size=32)
    scope = ls.Scope(model, [ls.ActivationPatterns((inputs, labels), batch_size=16)],
                     ls.every(1), tmp_path / "s.db", name="tiny", total_steps=3)
    out = io.StringIO()
    with progress("plain", stream=out, interval=0):
        result = train(model, data, recipe, scope=scope, seed=0)
    scope.finish()
    assert result.steps == 3
    lines = out.getvalue().splitlines()
    training = [line for line in lines if line.startswith("train tiny:")]
    assert [line.split(",")[0] for line in training[:4]] == [
        "train tiny: 0/3 (0%)", "train tiny: 1/3 (33%)", "train tiny: 2/3 (67%)",
        "train tiny: 3/3 (100%)"]
    assert training[-1].startswith("train tiny: 3/3 (100%)") and training[-1].endswith("done")
    # one measurement pass per step 0..3, each over all 96 samples in batches of 16
    for step in range(4):
        mine = [line for line in lines if line.startswith(f"count patterns at step {step}:")]
        assert mine[0].startswith(f"count patterns at step {step}: 16/96")
        assert mine[-1].startswith(f"count patterns at step {step}: 96/96 (100%)")
        assert mine[-1].endswith("done")
