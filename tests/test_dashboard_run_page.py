"""Tests of the dashboard's run page (issue 16, points 1, 4 and 5): training curves next to the
layer measures, the x-axis / log / smoothing controls, view state in the address, downloads,
depth colours for many layers, saturated cells and readable log ticks.

The training endpoint is checked against the store file read with sqlite3; the page in the
system Chromium (Playwright), as tests/test_dashboard.py does.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")
pytest.importorskip("plotly", reason="the dashboard extra is not installed")

with warnings.catch_warnings():  # Starlette would like httpx2; httpx works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from test_dashboard import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    LOCAL_URL,
    doc_image,
    mapped,  # noqa: F401 - the fixture
    raw_query,
    require_browser,
    serve,
)

import learnscope.store as store_mod  # noqa: E402
from learnscope.dashboard import create_app  # noqa: E402
from learnscope.health import SATURATION  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

REPO = Path(__file__).resolve().parents[1]
LAYERS = 12  # more than Plotly's 10 default colours
STEPS_PER_EPOCH = 20
LAST_STEP = 100
MEASURED = list(range(0, LAST_STEP + 1, 10))
TRAINING = ("loss", "accuracy", "lr")
EVALUATION = ("val_loss", "val_accuracy", "test_loss", "test_accuracy")


def layer_name(index: int) -> str:
    return f"fc{index}"


def distinct_share(layer: int, step: int) -> float:
    """distinct / E: the last three layers saturate from step 40 on."""
    return 0.97 if layer > LAYERS - 3 and step >= 40 else 0.3 + 0.04 * layer


def write_deep_run(path: Path) -> str:
    """A run as the trainer and the pattern probe write it: loss / accuracy / lr every step,
    validation and test values at each epoch's end (all layer ``model``), entropy and
    distinct_frac of 12 layers every 10 steps, and separation rows (D_l over five decades)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with store_mod.open(path) as s:
        run_id = s.create_run("deep-mlp", {"depth": LAYERS}, experiment="run-page",
                              total_steps=LAST_STEP)  # fmt: skip
        for step in range(1, LAST_STEP + 1):
            epoch = step / STEPS_PER_EPOCH
            values = {"loss": 2.3 * math.exp(-step / 40) + 0.1,
                      "accuracy": 1 - 0.9 * math.exp(-step / 30), "lr": 0.1 * (1 - step / 200)}
            s.write_measurement(run_id, step, epoch, "train",
                                [("model", -1, m, v) for m, v in values.items()])  # fmt: skip
            if step % STEPS_PER_EPOCH == 0:
                evaluation = {"val_loss": 2.0 * math.exp(-step / 50) + 0.2,
                              "val_accuracy": 0.8 - 0.7 * math.exp(-step / 35),
                              "test_loss": 2.1 * math.exp(-step / 50) + 0.2,
                              "test_accuracy": 0.78 - 0.7 * math.exp(-step / 35)}  # fmt: skip
                s.write_measurement(run_id, step, epoch, "train",
                                    [("model", -1, m, v) for m, v in evaluation.items()])
        for step in MEASURED:
            rows = []
            for layer in range(1, LAYERS + 1):
                rows.append((layer_name(layer), layer, "entropy", layer + step / 50))
                share = distinct_share(layer, step)
                rows.append((layer_name(layer), layer, "distinct_frac", share))
            s.write_measurement(run_id, step, step / STEPS_PER_EPOCH, "patterns", rows)
            fuzz = [("input" if i == 0 else layer_name(i), i, "fuzziness",
                     3.0 * (0.3 + step / 1000) ** i * (1 + 0.1 * math.sin(i + step / 7)))
                    for i in range(LAYERS + 1)]
            logs = np.log([d for _, _, _, d in fuzz[1:]])
            slope = float(np.polyfit(np.arange(1, LAYERS + 1), logs, 1)[0])
            r = float(np.corrcoef(np.arange(1, LAYERS + 1), logs)[0, 1])
            fuzz += [("law", -1, m, v) for m, v in (
                ("law_slope", slope), ("law_rho", math.exp(slope)), ("law_pearson_r", r),
                ("law_r2", r * r), ("law_first", 1.0), ("law_last", float(LAYERS)))]
            s.write_measurement(run_id, step, step / STEPS_PER_EPOCH, "separation", fuzz)
        s.set_status(run_id, "finished")
    return run_id


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("run-page") / "runs.db"
    return path, write_deep_run(path)


def stored_training(path: Path, run_id: str, since: int = -1) -> dict[str, list[tuple]]:
    """{measure: [(step, epoch, value), ...]} of the run's layer-``model`` rows, via sqlite3."""
    rows = raw_query(path, "SELECT m.measure, m.step, s.epoch, m.value FROM metrics m JOIN "
                     "measurements s ON s.run = m.run AND s.step = m.step AND s.probe = m.probe "
                     "WHERE m.run = ? AND m.layer = 'model' AND m.step > ? ORDER BY m.step",
                     (run_id, since))  # fmt: skip
    out: dict[str, list[tuple]] = {}
    for measure, step, epoch, value in rows:
        out.setdefault(measure, []).append((step, epoch, value))
    return out


# --------------------------------------------------------------------------- JSON / CSV


def test_api_training_equals_the_store(deep: tuple[Path, str]) -> None:
    path, run_id = deep
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    body = client.get(f"/api/runs/{run_id}/training").json()
    want = stored_training(path, run_id)
    assert sorted(s["measure"] for s in body["series"]) == sorted(want) == sorted(
        TRAINING + EVALUATION)
    for s in body["series"]:
        assert s["probe"] == "train"
        assert list(zip(s["steps"], s["epochs"], s["values"], strict=True)) == want[s["measure"]]
        assert s["points"] == len(want[s["measure"]])
    # validation is logged once per epoch, with its own steps
    val = next(s for s in body["series"] if s["measure"] == "val_accuracy")
    assert val["steps"] == list(range(STEPS_PER_EPOCH, LAST_STEP + 1, STEPS_PER_EPOCH))
    # incremental: only the steps after since_step
    part = client.get(f"/api/runs/{run_id}/training", params={"since_step": 90}).json()
    later = stored_training(path, run_id, 90)
    assert {s["measure"]: s["steps"] for s in part["series"]} == {
        m: [r[0] for r in rows] for m, rows in later.items()}


def test_api_training_downsamples_to_means(deep: tuple[Path, str]) -> None:
    path, run_id = deep
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    body = client.get(f"/api/runs/{run_id}/training", params={"max_points": 7}).json()
    want = stored_training(path, run_id)
    for s in body["series"]:
        stored = want[s["measure"]]
        assert len(s["steps"]) == min(7, len(stored))
        assert s["steps"][-1] == stored[-1][0]  # the latest step is always sent
        previous = -1
        for step, value in zip(s["steps"], s["values"], strict=True):
            # each point: the mean of the stored values after the previous point, up to it
            chunk = [v for st, _, v in stored if previous < st <= step]
            assert value == pytest.approx(float(np.mean(chunk)), rel=1e-12)
            previous = step


def test_api_training_csv_equals_the_json(deep: tuple[Path, str]) -> None:
    path, run_id = deep
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    response = client.get(f"/api/runs/{run_id}/training", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="{run_id}-training.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    want = stored_training(path, run_id)
    assert len(rows) == sum(len(v) for v in want.values())
    got: dict[str, list[tuple]] = {}
    for row in rows:
        got.setdefault(row["measure"], []).append(
            (int(row["step"]), float(row["epoch"]), float(row["value"])))
    assert got == want


def test_api_training_of_a_run_without_training_rows(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with store_mod.open(path) as s:
        run_id = s.create_run("empty", {})
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    body = client.get(f"/api/runs/{run_id}/training").json()
    assert body["series"] == []
    assert client.get(f"/api/runs/{run_id}/training?format=csv").text == (
        "probe,measure,step,epoch,value\n")
    missing = client.get("/api/runs/nope/training")
    assert missing.status_code == 404 and missing.json()["error"] == "Unknown run"


@pytest.mark.parametrize("query, name", [
    ("max_points=1", "max_points"), ("max_points=100001", "max_points"),
    ("max_points=abc", "max_points"), ("max_points=", "max_points"), ("format=xml", "format"),
    ("format=", "format"), ("since_step=-2", "since_step"), ("since_step=1e3", "since_step"),
])  # fmt: skip
def test_api_training_bad_input_is_422_in_one_line(
    deep: tuple[Path, str], query: str, name: str
) -> None:
    path, run_id = deep
    response = TestClient(create_app(path), base_url=LOCAL_URL).get(
        f"/api/runs/{run_id}/training?{query}")
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "Invalid request"
    assert body["detail"].startswith(name + " = ") and "\n" not in body["detail"]
    assert body["hint"].startswith("Allowed: " + name + ":")


# --------------------------------------------------------------------------- in a browser


def view_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlparse(url).query)


def test_browser_run_page_training_views_state_and_downloads(deep, tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    path, run_id = deep
    training = stored_training(path, run_id)
    epochs = {step: epoch for step, epoch, _ in training["loss"]}
    saturated = sorted((layer_name(layer), step) for layer in range(1, LAYERS + 1)
                       for step in MEASURED if distinct_share(layer, step) > SATURATION)
    assert saturated  # the fixture has saturated cells
    errors: list[str] = []
    heatmap = "document.getElementById('heatmap')"
    lines = "document.getElementById('lines')"
    train = "document.getElementById('training')"
    dynamics = "document.getElementById('equisep-dynamics')"
    with serve(path, poll_seconds=0.25) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000},
                                    accept_downloads=True)  # fmt: skip
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/runs/{run_id}")

            # 1. training curves above the layer views, every logged measure drawn
            page.wait_for_function(f"() => {train}.data && {train}.data.length === 7")
            names = page.evaluate(f"{train}.data.map((t) => t.name)")
            assert sorted(names) == sorted(TRAINING + EVALUATION)
            loss = page.evaluate(f"{train}.data.find((t) => t.name === 'loss')")
            assert loss["x"] == [s for s, _, _ in training["loss"]]
            assert loss["y"] == [v for _, _, v in training["loss"]]
            order = page.evaluate("['training', 'trajectories', 'heatmap', 'equisep-dynamics']"
                                  ".map((id) => document.getElementById(id)"
                                  ".getBoundingClientRect().top)")
            assert order[0] < order[2] < order[3]
            # the heatmap's hover carries that step's loss and accuracy
            page.wait_for_function(f"() => {heatmap}.data && {heatmap}.data[0].x.length === "
                                   f"{len(MEASURED)} && {heatmap}.data[0].text[0][3]"
                                   ".includes('loss')")
            hover = page.evaluate(f"{heatmap}.data[0].text[0][3]")
            step = MEASURED[3]
            value = dict((s, v) for s, _, v in training["loss"])[step]
            assert f"loss {float(f'{value:.4g}')!r}" in hover  # as the page rounds it
            assert "test_accuracy" in hover and "accuracy" in hover

            # 4. saturated cells marked, many layers coloured by depth with a colour bar
            page.wait_for_function("() => window.learnscope.saturated && "
                                   f"window.learnscope.saturated.length === {len(saturated)}")
            got = sorted(tuple(c) for c in page.evaluate("window.learnscope.saturated"))
            assert got == saturated
            assert page.evaluate(f"{heatmap}.data[1].marker.symbol") == "x"
            crosses = page.evaluate(f"{lines}.data.flatMap((t) => t.marker && "
                                    "Array.isArray(t.marker.symbol) ? t.marker.symbol.map((m, j) "
                                    "=> m === 'x' ? [t.name, t.x[j]] : null).filter((c) => c) "
                                    ": [])")  # fmt: skip
            assert sorted(tuple(c) for c in crosses) == saturated
            colours = page.evaluate(f"{lines}.data.filter((t) => !t.meta.decoration)"
                                    ".map((t) => t.line.color)")
            assert len(colours) == LAYERS and len(set(colours)) == LAYERS
            assert page.evaluate(f"{lines}.data.some((t) => t.marker && t.marker.showscale)")
            # readable log ticks on the separation dynamics (D_l spans five decades)
            page.wait_for_function(f"() => {dynamics}.layout && {dynamics}.layout.yaxis.tickvals")
            ticks = page.evaluate(f"{dynamics}.layout.yaxis.ticktext")
            assert 2 <= len(ticks) <= 12 and all(len(t) <= 6 for t in ticks)
            doc_image(page, "dashboard-run.png")

            # switch the measure and the x-axis: the address follows
            page.select_option("#measure", "distinct_frac")
            page.wait_for_function(f"() => {heatmap}.data[0].colorbar.title.text === "
                                   "'distinct_frac' && " + f"{heatmap}.data[0].x.length > 0")
            page.select_option("#x-axis", "epoch")
            page.wait_for_function(f"() => {heatmap}.layout.xaxis.title.text === 'epoch'")
            assert page.evaluate(f"{heatmap}.data[0].x") == [s / STEPS_PER_EPOCH for s in MEASURED]
            assert page.evaluate(f"{train}.layout.xaxis.title.text") == "epoch"
            assert page.evaluate(f"{train}.data.find((t) => t.name === 'loss').x") == [
                epochs[s] for s, _, _ in training["loss"]]
            page.check("#log-scale")
            page.wait_for_function(f"() => {lines}.layout.yaxis.type === 'log'")
            page.fill("#smoothing", "0.6")
            page.wait_for_function(f"() => {train}.data.some((t) => t.name === 'loss (raw)')")
            state = view_of(page.url)
            assert state == {"measure": ["distinct_frac"], "x": ["epoch"], "log": ["1"],
                             "smooth": ["0.6"]}

            # 5. a link with state reproduces the view
            link = (f"{base}/runs/{run_id}?measure=entropy&x=epoch&log=1&smooth=0.5"
                    "&hide=fc1,fc2")
            page.goto(link)
            page.wait_for_function(f"() => {lines}.data && {lines}.data.length > {LAYERS}")
            assert page.input_value("#measure") == "entropy"
            assert page.input_value("#x-axis") == "epoch"
            assert page.is_checked("#log-scale")
            assert page.input_value("#smoothing") == "0.5"
            assert page.evaluate(f"{heatmap}.layout.xaxis.title.text") == "epoch"
            assert page.evaluate(f"{lines}.layout.yaxis.type") == "log"
            hidden = page.evaluate(f"{lines}.data.filter((t) => t.visible === 'legendonly')"
                                   ".map((t) => t.name)")
            assert hidden == ["fc1", "fc2"]
            assert view_of(page.url) == view_of(link)

            # any plot's data as CSV (the stored values, not the smoothed ones)
            with page.expect_download() as info:
                page.click('.downloads[data-for="training"] button[data-format="csv"]')
            saved = tmp_path / "training.csv"
            info.value.save_as(saved)
            rows = list(csv.DictReader(saved.open()))
            got_loss = [(float(r["epoch"]), float(r["y"])) for r in rows if r["trace"] == "loss"]
            assert got_loss == [(e, v) for _, e, v in training["loss"]]
            with page.expect_download() as info:
                page.click('.downloads[data-for="heatmap"] button[data-format="csv"]')
            info.value.save_as(saved)
            cells = {(r["row"], float(r["epoch"])): float(r["value"])
                     for r in csv.DictReader(saved.open()) if r["trace"] != "saturated"}
            stored = raw_query(path, "SELECT m.layer, s.epoch, m.value FROM metrics m JOIN "
                               "measurements s ON s.run = m.run AND s.step = m.step AND "
                               "s.probe = m.probe WHERE m.run = ? AND m.measure = 'entropy'",
                               (run_id,))  # fmt: skip
            assert cells == {(layer, epoch): value for layer, epoch, value in stored}
            with page.expect_download() as info:
                page.click('.downloads[data-for="lines"] button[data-format="svg"]')
            info.value.save_as(saved)
            assert saved.read_text().lstrip().startswith("<svg")
            assert errors == []
        finally:
            browser.close()


def test_browser_map_run_opens_on_its_map(mapped) -> None:  # noqa: F811 - the fixture
    require_browser()
    from playwright.sync_api import sync_playwright

    path, run_id, _, _ = mapped
    with store_mod.open(path) as s:  # one measured step: a heatmap of one column
        s.write_measurement(run_id, 0, 0.0, "patterns", [("fc1", 1, "entropy", 1.0)])
    plot = "document.getElementById('trajectory-map')"
    with serve(path, poll_seconds=0.25) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(f"{base}/runs/{run_id}")
            page.wait_for_function(f"() => {plot}.data && {plot}.data.length > 3")
            assert page.evaluate("document.getElementById('measure-details').open") is False
            assert not page.is_visible("#heatmap")
            # the score is part of the address
            page.select_option("#trajectory-score", "loss")
            page.wait_for_function(f"() => {plot}.data[1].marker.colorbar.title.text === 'loss'")
            assert view_of(page.url)["score"] == ["loss"]
            # asking for a measure in the address opens the layer measures
            page.goto(f"{base}/runs/{run_id}?measure=entropy&score=loss")
            page.wait_for_function(f"() => {plot}.data && {plot}.data.length > 3")
            assert page.evaluate("document.getElementById('measure-details').open") is True
            assert page.evaluate(f"{plot}.data[1].marker.colorbar.title.text") == "loss"
        finally:
            browser.close()
