"""Failures in plain sight (learnscope.health and every view of it): chance-level runs, stored
errors and saturated layers, checked against a hand-made store whose values are known here.

The figures' numbers (pattern turnover, saturation marks) are compared with measures computed
here from the arrays written to the store, never through learnscope's own reading code.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import learnscope.store as store_mod
from learnscope import health, viz
from learnscope.cli import app

STEPS = [0, 1, 2, 3, 5, 8]
LAYERS = ["relu1", "relu2", "relu3"]
ERROR = ("Traceback (most recent call last):\n  File \"train.py\", line 3, in <module>\n"
         "RuntimeError: CUDA out of memory while allocating 2.00 GiB")
#: name -> (status, config, final test accuracy)
RUNS = {
    "entropycurve-small-resnet8-s0": ("finished", {"user": {"model": "resnet8",
                                                            "dataset": "digits"}}, 0.91),
    "entropycurve-small-resnet8-s1": ("finished", {"user": {"model": "resnet8",
                                                            "dataset": "digits"}}, 0.105),
    "entropycurve-small-resnet8-s2": ("finished", {"user": {"model": "resnet8",
                                                            "dataset": "digits"}}, 0.88),
    # 5 classes kept: chance is 0.2, so 0.21 is at chance level and 0.23 is not
    "entropycurve-small-resnet14-s0": ("finished", {"user": {
        "model": "resnet14", "dataset": "digits",
        "data_options": {"classes": [5, 6, 7, 8, 9]}}}, 0.21),
    "entropycurve-small-resnet14-s1": ("finished", {"user": {
        "model": "resnet14", "dataset": "digits",
        "data_options": {"classes": [5, 6, 7, 8, 9]}}}, 0.23),
    # still running at chance: not flagged (it may still learn)
    "entropycurve-small-resnet20-s0": ("running", {"user": {"model": "resnet20",
                                                            "dataset": "digits"}}, 0.1),
}


def pattern_values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per measure, an array steps x layers of plausible values (some saturated cells)."""
    shape = (len(STEPS), len(LAYERS))
    evaluations = np.full(shape, 400.0)
    share = rng.uniform(0.5, 1.0, size=shape)
    share[:, 2] = rng.choice([0.97, 0.99, 0.6], size=len(STEPS))  # the last layer: mixed
    share[0, 0] = 0.951  # just above the threshold
    share[1, 0] = 0.95  # at it: not saturated
    distinct = np.round(share * evaluations)
    added = np.round(rng.uniform(0, 0.8, size=shape) * distinct)
    removed = np.round(rng.uniform(0, 0.8, size=shape) * distinct)
    added[0], removed[0] = np.nan, np.nan  # no "last" at the first measurement
    return {
        "evaluations": evaluations, "distinct": distinct, "distinct_frac": distinct / evaluations,
        "max_frac": rng.uniform(0.0, 0.2, size=shape),
        "rel_entropy": rng.uniform(0.4, 1.0, size=shape),
        "weighted_jaccard_since_init": rng.uniform(0.0, 1.0, size=shape),
        "weighted_jaccard_since_final": rng.uniform(0.0, 1.0, size=shape),
        "added_since_last": added, "removed_since_last": removed,
    }  # fmt: skip


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple:
    """(store path, {run name: run id}, {run name: pattern values}, failed run id)."""
    path = tmp_path_factory.mktemp("health") / "runs.db"
    rng = np.random.default_rng(12)
    ids, values = {}, {}
    with store_mod.open(path) as s:
        for name, (status, config, accuracy) in RUNS.items():
            run = s.create_run(name, config, experiment="entropycurve", total_steps=STEPS[-1])
            ids[name] = run
            values[name] = table = pattern_values(rng)
            for k, step in enumerate(STEPS):
                rows = [(layer, j, measure, float(table[measure][k, j]))
                        for j, layer in enumerate(LAYERS) for measure in table]
                s.write_measurement(run, step, step / 4, "patterns", rows)
            # the test accuracy before the last one is good: only the final value counts
            s.write_measurement(run, 4, 1.0, "train", [("model", -1, "test_accuracy", 0.7)])
            s.write_measurement(run, STEPS[-1], 2.0, "train",
                                [("model", -1, "test_accuracy", accuracy)])
            if status != "running":
                s.set_status(run, status)
        failed = s.create_run("crashed", {"user": {"dataset": "digits"}}, experiment="early",
                              total_steps=100)
        s.set_status(failed, "failed", error=ERROR)
    return path, ids, values, failed


CHANCE = {"entropycurve-small-resnet8-s1", "entropycurve-small-resnet14-s0"}


def test_the_rule() -> None:
    assert health.is_chance_level(0.12, 10) and health.is_chance_level(0.05, 10)
    assert not health.is_chance_level(0.1201, 10)
    assert health.is_chance_level(0.52, 2) and not health.is_chance_level(0.53, 2)
    assert not health.is_chance_level(None, 10) and not health.is_chance_level(0.1, None)
    assert not health.is_chance_level(float("nan"), 10)
    assert health.classes_of({"user": {"dataset": "cifar10"}}) == 10
    assert health.classes_of({"user": {"dataset": "cm"}}) == 10
    assert health.classes_of({"user": {"dataset": "digits",
                                       "data_options": {"classes": [1, 2, 3]}}}) == 3
    assert health.classes_of({"user": {"model_options": {"num_classes": 7}}}) == 7
    assert health.classes_of({"settings": {"train_on": "digits-5-9"}}) == 5
    assert health.classes_of({"user": {"dataset": "omniglot"}}) is None
    assert health.classes_of({}) is None
    assert health.is_saturated(np.array([0.95, 0.951, np.nan])).tolist() == [False, True, False]
    assert health.short_error(ERROR) == "RuntimeError: CUDA out of memory while allocating " \
                                        "2.00 GiB"
    assert len(health.short_error("x" * 200, limit=40)) == 40


def test_assess_runs_flags_exactly_the_chance_level_runs(made) -> None:
    path, ids, _, failed = made
    with store_mod.open(path, read_only=True) as s:
        found = health.assess_runs(s)
    flagged = {name for name, run in ids.items() if found[run].chance_level}
    assert flagged == CHANCE
    for name, run in ids.items():
        expected = RUNS[name][2] if RUNS[name][0] == "finished" else None
        assert found[run].test_accuracy == expected  # the final value, not the 0.7 before
        assert found[run].label == ("finished (chance-level)" if name in CHANCE
                                    else RUNS[name][0])
    assert found[ids["entropycurve-small-resnet14-s0"]].classes == 5
    assert not found[failed].chance_level and found[failed].error == ERROR


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_runs_status_and_show_mark_chance_level_and_errors(made) -> None:
    path, ids, _, failed = made
    listing = invoke("runs", "--store", str(path))
    lines = {run: next(line for line in listing.splitlines() if run in line)
             for run in [*ids.values(), failed]}
    for name, run in ids.items():
        assert ("finished (chance-level)" in lines[run]) == (name in CHANCE), lines[run]
    failed_line = lines[failed].split(failed)[1]
    assert "failed" in failed_line and "RuntimeError:" in listing  # the error's last line,
    assert "Traceback" not in listing  # wrapped under the status

    status = invoke("status", "entropycurve", "--store", str(path))
    assert status.count("finished (chance-level)") == len(CHANCE)
    assert "2 finished run(s) at chance level" in status
    assert "entropycurve-small-resnet8-s1" in status.split("at chance level")[1]
    assert "RuntimeError:" in invoke("status", "early", "--store", str(path))

    shown = invoke("show", "entropycurve-small-resnet8-s1", "--store", str(path))
    assert "finished (chance-level)" in shown
    assert "final test accuracy 0.105 is at chance level (1/10 = 0.100" in " ".join(shown.split())
    assert "chance" not in invoke("show", "entropycurve-small-resnet8-s0", "--store", str(path))

    crashed = " ".join(invoke("show", "crashed", "--store", str(path)).split())
    assert "RuntimeError: CUDA out of memory while allocating 2.00 GiB" in crashed
    assert "Traceback (most recent call last)" in crashed  # show prints the whole error
    assert "failed before its first measurement" in crashed
    assert "no measurements yet" not in crashed


def test_dashboard_shows_chance_level_and_the_stored_error(made) -> None:
    pytest.importorskip("fastapi", reason="the dashboard extra is not installed")
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    from learnscope.dashboard import create_app

    path, ids, _, failed = made
    client = TestClient(create_app(path), base_url="http://127.0.0.1")
    runs = {run["id"]: run for run in client.get("/api/runs").json()["runs"]}
    for name, run in ids.items():
        assert runs[run]["chance_level"] == (name in CHANCE)
        assert runs[run]["status_label"] == ("finished (chance-level)" if name in CHANCE
                                             else RUNS[name][0])
    assert runs[failed]["error"] == ERROR
    assert runs[failed]["error_short"] == health.short_error(ERROR)
    listing = client.get("/").text
    assert listing.count("finished (chance-level)") == len(CHANCE)
    assert "RuntimeError: CUDA out of memory while allocating 2.00 GiB</div>" in listing

    page = client.get(f"/runs/{failed}").text
    assert "Run failed: stored error" in page
    assert "Traceback (most recent call last):" in page
    assert "No measurements yet" not in page and "failed before its first measurement" in page
    chance = client.get(f"/runs/{ids['entropycurve-small-resnet8-s1']}").text
    assert "Chance-level result" in chance and "finished (chance-level)" in chance
    calm = client.get(f"/runs/{ids['entropycurve-small-resnet8-s0']}").text
    assert 'id="run-problem" role="alert" hidden' in calm


# --------------------------------------------------------------------------- figures


def saturated_cells(table: dict[str, np.ndarray]) -> set[tuple[int, int]]:
    """(layer index, step) with distinct / E > 0.95, from the stored arrays."""
    share = table["distinct"] / table["evaluations"]
    return {(j, STEPS[k]) for k, j in zip(*np.nonzero(share > 0.95), strict=True)}


def line_by_gid(ax, gid: str):
    found = [line for line in ax.get_lines() if line.get_gid() == gid]
    assert len(found) <= 1
    return found[0] if found else None


def test_figure1_turnover_bounded_axes_saturation_and_chance(made) -> None:
    path, ids, values, _ = made
    names = ["entropycurve-small-resnet8-s0", "entropycurve-small-resnet8-s1"]
    figure = viz.figure1(path, names)
    found = viz.panels(figure)
    assert len(found) == 5 * len(names)
    width, height = figure.get_size_inches()
    assert width <= 8.27 + 1e-9 and height <= 11.69  # an A4 page
    for ax in found:
        info = ax.panel_info
        name = next(n for n in names if ids[n] == info["run"])
        table = values[name]
        assert info["chance_level"] == (name in CHANCE)
        cells = saturated_cells(table)
        for where, j in (("last", len(LAYERS) - 1), ("first", 0)):
            x, y = line_by_gid(ax, where).get_data()
            np.testing.assert_array_equal(x, STEPS)
            if info["panel"] == "B":  # (added + removed since last) / distinct, here by hand
                expected = (table["added_since_last"][:, j] + table["removed_since_last"][:, j]
                            ) / table["distinct"][:, j]
                assert np.isnan(y[0]) and np.isnan(expected[0])
                np.testing.assert_allclose(y[1:], expected[1:], rtol=1e-12)
            elif info["panel"] == "A":
                np.testing.assert_allclose(y, table["distinct"][:, j] / table["distinct"][:, j]
                                           .max(), rtol=1e-12)
            else:
                np.testing.assert_allclose(y, table[info["measure"]][:, j], rtol=1e-12)
            marked = sorted(step for layer, step in cells if layer == j)
            assert info["saturated"][where] == marked
            crosses = line_by_gid(ax, f"saturated:{where}")
            if info["panel"] == "B":
                marked = [s for s in marked if s != STEPS[0]]  # no turnover at the first step
            assert (crosses.get_xdata().tolist() if crosses else []) == marked
        if info["panel"] in ("A", "C", "D", "E"):
            assert ax.get_ylim() == (0.0, 1.0)
        else:
            assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] > 1.0
    titles = [sub._suptitle.get_text() for sub in figure.subfigs]
    assert ["CHANCE LEVEL" in t for t in titles] == [False, True]
    assert "test acc. 0.105, 1/10 = 0.100" in titles[1]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend[-1].startswith("saturated: distinct/E > 0.95")


def test_figure2_leaves_chance_level_runs_out_and_marks_saturation(made) -> None:
    path, ids, values, _ = made
    figure = viz.figure2(path, experiment="entropycurve")
    found = viz.panels(figure)
    assert len(found) == len(STEPS)  # one family (resnet) x measure points
    for ax in found:
        k = ax.panel_info["point"]
        for model, healthy, chance in (
                ("resnet8", ["entropycurve-small-resnet8-s0", "entropycurve-small-resnet8-s2"],
                 ["entropycurve-small-resnet8-s1"]),
                ("resnet14", ["entropycurve-small-resnet14-s1"],
                 ["entropycurve-small-resnet14-s0"]),
                ("resnet20", ["entropycurve-small-resnet20-s0"], [])):
            table = np.array([values[n]["rel_entropy"][k] for n in healthy])
            line = line_by_gid(ax, model)
            np.testing.assert_allclose(line.get_ydata(), table.mean(axis=0), rtol=1e-12)
            assert ax.panel_info["left_out"][model] == [ids[n] for n in chance]
            marked = sorted({j for n in healthy for j, step in saturated_cells(values[n])
                             if step == STEPS[k]})
            assert ax.panel_info["saturated"][model] == marked
            crosses = line_by_gid(ax, f"saturated:{model}")
            assert (crosses.get_xdata().tolist() if crosses else []) == marked
        assert ax.get_ylim() == (0.0, 1.0)
    labels = [t.get_text() for t in found[0].get_legend().get_texts()]
    assert "resnet8 (n=2; 1 at chance level left out)" in labels
    assert "resnet20 (n=1)" in labels


@pytest.mark.parametrize("figure", ["figure3", "heatmap"])
def test_heatmaps_mark_exactly_the_saturated_cells(made, figure) -> None:
    path, ids, values, _ = made
    name = "entropycurve-small-resnet8-s1"
    if figure == "figure3":
        fig = viz.figure3(path, [name, "entropycurve-small-resnet8-s0"])
        found = [ax for ax in viz.panels(fig) if ax.panel_info["run"] == ids[name]]
        assert [ax.panel_info["chance_level"] for ax in found] == [True] * 3
        assert "CHANCE LEVEL" in found[0].get_title()
    else:
        fig = viz.heatmap(path, name, "rel_entropy")
        found = viz.panels(fig)
        bar = next(a for a in fig.axes if a.get_label() == "<colorbar>")
        assert bar.get_ylabel() == "relative entropy"  # the human name, as the title
    cells = saturated_cells(values[name])
    assert cells and len(cells) < len(STEPS) * len(LAYERS)
    for ax in found:
        assert set(ax.panel_info["saturated"]) == cells
        crosses = line_by_gid(ax, "saturated")
        drawn = {(int(round(y)), float(x)) for x, y in crosses.get_xydata()}
        scale = 1.0 if figure == "heatmap" else 0.25  # figure 3: x = epoch = step / 4 here
        assert drawn == {(j, step * scale) for j, step in cells}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0].startswith("saturated: distinct/E > 0.95")


def test_figure4_marks_chance_level_and_figure2_titles_fit(made) -> None:
    path, ids, values, _ = made
    names = ["entropycurve-small-resnet8-s0", "entropycurve-small-resnet8-s1"]
    figure = viz.figure4(path, names)
    for ax in viz.panels(figure):
        chance = ax.panel_info["run"] == ids[names[1]]
        assert ax.panel_info["chance_level"] == chance
        if ax.panel_info["panel"] == "A":
            assert ("CHANCE LEVEL" in ax.get_ylabel()) == chance
        if ax.panel_info["panel"] == "B":  # the turnover of every layer
            table = values[names[0] if not chance else names[1]]
            got = np.array([line.get_ydata() for line in ax.get_lines()]).T
            np.testing.assert_allclose(
                got, (table["added_since_last"] + table["removed_since_last"]) / table["distinct"],
                rtol=1e-12)
    note = [t.get_text() for t in figure.legends[0].get_texts()]
    assert note == ["at chance level: s1 (test acc. 0.105)"]

    # a narrow Figure 2 (one family) wraps its long title instead of clipping it
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    narrow = viz.figure2(path, ["entropycurve-small-resnet14-s0", "entropycurve-small-resnet14-s1"])
    canvas = FigureCanvasAgg(narrow)
    canvas.draw()
    box = narrow._suptitle.get_window_extent(canvas.get_renderer())
    assert "\n" in narrow._suptitle.get_text()
    assert box.x0 >= 0 and box.x1 <= narrow.bbox.width
