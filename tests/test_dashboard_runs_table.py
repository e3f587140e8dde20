"""Tests of the dashboard's run table (``/api/run-table``, static/runs_table.js) and of the
comparison of runs by layer index (``/api/compare``, static/compare.js).

The store is a small sweep written with the store API: runs of three different nets (3, 5 and
7 layers, named differently), two seeds of one config, a chance-level run and a failed one.
Expected values come from the formula the rows were written with (and numpy for the seed
bands), not from the dashboard.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the dashboard extra is not installed")

from test_dashboard import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    LOCAL_URL,
    TestClient,
    doc_image,
    require_browser,
    serve,
)

import learnscope.store as store_mod  # noqa: E402
from learnscope.dashboard import create_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

STEPS = list(range(0, 50, 5))
#: name -> (net, layers, seed, experiment, final test accuracy, status)
SWEEP = {
    "mlp-s0": ("mlp", 3, 0, "sweep-a", 0.91, "finished"),
    "mlp-s1": ("mlp", 3, 1, "sweep-a", 0.87, "finished"),
    "cnn-s0": ("cnn", 5, 0, "sweep-a", 0.80, "finished"),
    "resnet-s0": ("resnet", 7, 0, "sweep-b", 0.10, "finished"),  # 10 classes: chance level
    "broken": ("mlp", 3, 2, "sweep-b", None, "failed"),
}
ERROR = "Traceback (most recent call last):\nRuntimeError: CUDA out of memory"
LAYER_NAME = {"mlp": "fc{}", "cnn": "conv{}", "resnet": "block{}"}


def entropy(layer_index: int, step: int, seed: int, net: str) -> float:
    """The value written for one (layer, step) of a run."""
    return layer_index + step / 100 + 0.5 * seed + {"mlp": 0.0, "cnn": 0.6, "resnet": 0.75}[net]


def epoch_of(step: int) -> float:
    return step / 20


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The sweep store; returns its path and run name -> id."""
    path = tmp_path_factory.mktemp("sweep") / "runs.db"
    ids = {}
    with store_mod.open(path) as store:
        for name, (net, layers, seed, experiment, accuracy, status) in SWEEP.items():
            config = {"net": net, "seed": seed, "num_classes": 10, "optim": {"lr": 0.1}}
            run = store.create_run(name, config, experiment=experiment, total_steps=STEPS[-1])
            rows = []
            for step in STEPS:
                values = [(LAYER_NAME[net].format(i), i, "entropy", entropy(i, step, seed, net))
                          for i in range(layers)]  # fmt: skip
                if step == STEPS[-1] and accuracy is not None:
                    values.append(("model", -1, "test_accuracy", accuracy))
                rows.append((step, epoch_of(step), "patterns", values))
            store.write_measurements(run, rows)
            store.set_status(run, status, error=ERROR if status == "failed" else None)
            ids[name] = run
    return path, ids


def client_of(path: Path) -> TestClient:
    return TestClient(create_app(path), base_url=LOCAL_URL, raise_server_exceptions=False)


# --------------------------------------------------------------------------- /api/run-table


def table(client: TestClient, **params) -> dict:
    response = client.get("/api/run-table", params=params)
    assert response.status_code == 200, response.text[:300]
    return response.json()


def test_run_table_lists_runs_with_accuracy_marks_and_differing_keys(sweep) -> None:
    path, ids = sweep
    body = table(client_of(path))
    assert body["total"] == body["matched"] == len(SWEEP)
    assert [r["name"] for r in body["rows"]] == list(SWEEP)[::-1]  # newest first
    assert body["config_keys"] == ["net", "seed"]  # num_classes and optim.lr are all equal
    by_name = {r["name"]: r for r in body["rows"]}
    for name, (net, _, seed, _, accuracy, status) in SWEEP.items():
        row = by_name[name]
        assert row["config"] == {"net": net, "seed": str(seed)}
        assert row["status"] == status
        assert row["test_accuracy"] == (accuracy if status == "finished" else None)
    assert by_name["resnet-s0"]["chance_level"] is True
    assert [n for n, r in by_name.items() if r["chance_level"]] == ["resnet-s0"]
    assert by_name["broken"]["error"] == ERROR
    assert by_name["broken"]["error_short"] == "RuntimeError: CUDA out of memory"
    assert body["experiments"] == ["sweep-a", "sweep-b"]
    assert body["statuses"] == ["chance", "failed", "finished"]
    assert body["keys"]["net"] == ["cnn", "mlp", "resnet"]


def test_run_table_filters(sweep) -> None:
    path, ids = sweep
    client = client_of(path)

    def names(**params) -> list[str]:
        return sorted(r["name"] for r in table(client, **params)["rows"])

    assert names(q="MLP") == ["mlp-s0", "mlp-s1"]  # case-insensitive, in names
    assert names(q=ids["cnn-s0"][-6:]) == ["cnn-s0"]  # and in ids
    assert names(experiment="sweep-b") == ["broken", "resnet-s0"]
    assert names(experiment=["sweep-a", "sweep-b"]) == sorted(SWEEP)
    assert names(status="failed") == ["broken"]
    assert names(status="chance") == ["resnet-s0"]
    assert names(where="net=mlp") == ["broken", "mlp-s0", "mlp-s1"]
    assert names(where=["net=mlp", "seed=1"]) == ["mlp-s1"]
    assert names(where="optim.lr=0.1") == sorted(SWEEP)  # nested keys, values as shown
    assert names(where="net=gpt") == []
    mlps = table(client, where="net=mlp")
    assert mlps["config_keys"] == ["seed"] and mlps["matched"] == 3 and mlps["total"] == 5


def test_run_table_sorts_groups_and_pages(sweep) -> None:
    path, _ = sweep
    client = client_of(path)

    def order(**params) -> list[str]:
        return [r["name"] for r in table(client, **params)["rows"]]

    finished = sorted((a, n) for n, (*_, a, s) in SWEEP.items() if s == "finished")
    assert order(sort="test_accuracy", order="asc") == [n for _, n in finished] + ["broken"]
    assert order(sort="test_accuracy") == [n for _, n in finished[::-1]] + ["broken"]
    assert order(sort="name", order="asc") == sorted(SWEEP)
    by_seed = order(sort="config.seed", order="asc")
    assert [SWEEP[n][2] for n in by_seed] == sorted(s for _, _, s, *_ in SWEEP.values())
    grouped = table(client, group="experiment", sort="name", order="asc")["rows"]
    assert [(r["group"], r["name"]) for r in grouped] == [  # groups: in order of first row
        ("sweep-b", "broken"), ("sweep-b", "resnet-s0"),
        ("sweep-a", "cnn-s0"), ("sweep-a", "mlp-s0"), ("sweep-a", "mlp-s1"),
    ]  # fmt: skip
    page = table(client, sort="name", order="asc", offset=1, limit=2)
    assert [r["name"] for r in page["rows"]] == sorted(SWEEP)[1:3] and page["matched"] == 5


BAD_QUERIES = [
    ("/api/run-table", {"status": "sleeping"}, "status"),
    ("/api/run-table", {"where": "net"}, "where"),
    ("/api/run-table", {"where": "=mlp"}, "where"),
    ("/api/run-table", {"sort": "colour"}, "sort"),
    ("/api/run-table", {"order": "up"}, "order"),
    ("/api/run-table", {"group": "net"}, "group"),
    ("/api/run-table", {"limit": 0}, "limit"),
    ("/api/run-table", {"limit": 10**6}, "limit"),
    ("/api/run-table", {"offset": -1}, "offset"),
    ("/api/run-table", {"offset": "many"}, "offset"),
    ("/api/run-table", {"q": "x" * 201}, "q"),
    ("/api/compare", {"runs": "mlp-s0", "measure": "entropy", "layer": "-1"}, "layer"),
    ("/api/compare", {"runs": "mlp-s0", "measure": "entropy", "layer": "first"}, "layer"),
    ("/api/compare", {"runs": "mlp-s0", "measure": "entropy", "x": "time"}, "x"),
    ("/api/compare", {"runs": "mlp-s0", "measure": "entropy", "max_points": 1}, "max_points"),
    ("/api/compare", {"runs": "mlp-s0"}, "measure"),
    ("/api/compare", {"runs": "mlp-s0", "measure": ""}, "measure"),
    ("/api/compare", {"measure": "entropy"}, "runs"),
    ("/api/compare", {"measure": "entropy", "runs": [f"r{i}" for i in range(101)]}, "runs"),
]


@pytest.mark.parametrize(("endpoint", "params", "name"), BAD_QUERIES)
def test_bad_queries_are_422_with_one_line(sweep, endpoint: str, params: dict, name: str) -> None:
    path, _ = sweep
    response = client_of(path).get(endpoint, params=params)
    assert response.status_code == 422, response.text[:300]
    body = response.json()
    assert body["status"] == 422
    assert body["detail"].startswith(f"{name}: " if name == "runs" else f"{name} = ")
    assert "\n" not in body["detail"] and "\n" not in body["hint"]
    assert body["hint"].startswith(f"Allowed: {name}: "), body["hint"]
    assert len(body["detail"]) < 300


def test_compare_unknown_run_is_404(sweep) -> None:
    path, _ = sweep
    response = client_of(path).get("/api/compare", params={"runs": "nope", "measure": "entropy"})
    assert response.status_code == 404 and response.json()["error"] == "Unknown run"


# --------------------------------------------------------------------------- /api/compare


def compare(client: TestClient, names: list[str], **params) -> dict:
    response = client.get("/api/compare", params={"runs": names, "measure": "entropy", **params})
    assert response.status_code == 200, response.text[:300]
    return response.json()


@pytest.mark.parametrize("layer", ["0", "2", "last"])
def test_compare_lines_layers_up_by_index_across_nets(sweep, layer: str) -> None:
    path, ids = sweep
    names = ["mlp-s0", "cnn-s0", "resnet-s0"]
    body = compare(client_of(path), names, layer=layer)
    assert [r["id"] for r in body["runs"]] == [ids[n] for n in names]
    assert body["layer_count"] == 7
    for run in body["runs"]:
        net, layers, seed, *_ = SWEEP[run["name"]]
        index = layers - 1 if layer == "last" else int(layer)
        assert run["layer"] == LAYER_NAME[net].format(index) and run["note"] == ""
        assert run["x"] == STEPS
        assert run["y"] == [entropy(index, s, seed, net) for s in STEPS]
    assert [g["label"] for g in body["groups"]] == ["net=mlp", "net=cnn", "net=resnet"]
    assert all("mean" not in g for g in body["groups"])  # single runs: no band


def test_compare_says_which_run_lacks_the_layer(sweep) -> None:
    path, _ = sweep
    body = compare(client_of(path), ["mlp-s0", "resnet-s0"], layer="5")
    mlp, resnet = body["runs"]
    assert mlp["x"] == [] and mlp["note"] == "has no layer with index 5 (its last is 2)"
    assert resnet["layer"] == "block5" and len(resnet["y"]) == len(STEPS)


def test_compare_aggregates_seeds_and_diffs_configs(sweep) -> None:
    path, ids = sweep
    body = compare(client_of(path), ["mlp-s0", "mlp-s1", "cnn-s0"], layer="1", x="epoch")
    first, second, cnn = body["runs"]
    assert first["x"] == [epoch_of(s) for s in STEPS]
    mlp_group, cnn_group = body["groups"]
    assert mlp_group["runs"] == [ids["mlp-s0"], ids["mlp-s1"]]
    assert cnn_group["runs"] == [ids["cnn-s0"]]
    assert mlp_group["label"] == "net=mlp (2 seeds)" and cnn_group["label"] == "net=cnn"
    lines = np.array([[entropy(1, s, seed, "mlp") for s in STEPS] for seed in (0, 1)])
    assert mlp_group["x"] == first["x"]
    np.testing.assert_allclose(mlp_group["mean"], lines.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(mlp_group["sd"], lines.std(axis=0, ddof=1), rtol=1e-12)
    assert mlp_group["n"] == [2] * len(STEPS)
    assert {r["key"]: r["values"] for r in body["config_diff"]} == {
        "net": {ids["mlp-s0"]: "mlp", ids["mlp-s1"]: "mlp", ids["cnn-s0"]: "cnn"},
        "seed": {ids["mlp-s0"]: "0", ids["mlp-s1"]: "1", ids["cnn-s0"]: "0"},
    }


@pytest.mark.parametrize("axis", ["step", "epoch"])
def test_compare_since_sends_only_the_points_after_it(sweep, axis: str) -> None:
    path, _ = sweep
    client = client_of(path)
    names = ["mlp-s0", "mlp-s1", "cnn-s0"]
    full = compare(client, names, layer="1", x=axis)
    since = full["runs"][0]["x"][6]  # the 7th of 10 points
    update = compare(client, names, layer="1", x=axis, since=since)
    assert update["since"] == since
    for old, new in zip(full["runs"], update["runs"], strict=True):
        assert new["x"] == old["x"][7:] and new["y"] == old["y"][7:]
    band, new_band = full["groups"][0], update["groups"][0]
    for field in ("x", "mean", "sd", "n"):
        assert new_band[field] == band[field][7:]
    assert compare(client, names, since=STEPS[-1] if axis == "step" else 1e9,
                   x=axis)["runs"][0]["x"] == []
    for bad in ("soon", "nan", "inf", "1e16"):
        response = client.get("/api/compare", params={"runs": names, "measure": "entropy",
                                                      "since": bad})
        assert response.status_code == 422, (bad, response.text[:200])
        assert response.json()["hint"].startswith("Allowed: since: ")


def test_browser_compare_live_update_fetches_only_new_points(tmp_path) -> None:
    """While a compared run writes, the page asks for the points after the last x it has
    (since=) and its lines grow to the stored values."""
    path = tmp_path / "live.db"
    with store_mod.open(path) as store:
        ids = []
        for seed in (0, 1):
            run = store.create_run(f"live-s{seed}", {"net": "mlp", "seed": seed},
                                   experiment="live", total_steps=100)  # fmt: skip
            store.write_measurements(run, [
                (step, epoch_of(step), "patterns",
                 [(f"fc{i}", i, "entropy", entropy(i, step, seed, "mlp")) for i in range(3)])
                for step in STEPS])  # fmt: skip
            ids.append(run)
    with dashboard_page(path, height=700) as (page, base):
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url)
                if "/api/compare" in request.url else None)
        page.goto(f"{base}/compare?runs={ids[0]}&runs={ids[1]}&measure=entropy&layer=2"
                  "&singles=1")  # fmt: skip
        page.wait_for_function("() => window.learnscope.compare.draws > 0")
        more = [60, 65]
        with store_mod.open(path) as store:
            store.write_measurements(ids[0], [
                (step, epoch_of(step), "patterns",
                 [(f"fc{i}", i, "entropy", entropy(i, step, 0, "mlp")) for i in range(3)])
                for step in more])  # fmt: skip
        page.wait_for_function(
            "() => document.getElementById('compare-lines').data"
            ".some(t => t.meta === 'run' && Array.from(t.x).includes(65))")
        traces = {t["name"].split(" ")[0]: t for t in plotted(page) if t["meta"] == "run"}
        assert traces["live-s0"]["x"] == STEPS + more
        assert traces["live-s0"]["y"] == [entropy(2, s, 0, "mlp") for s in STEPS + more]
        assert traces["live-s1"]["x"] == STEPS
        mean = next(t for t in plotted(page) if t["meta"] == "mean")
        assert mean["x"] == STEPS + more  # the band goes on with the one run that has them
        np.testing.assert_allclose(mean["y"][-2:], [entropy(2, s, 0, "mlp") for s in more])
        assert any(f"since={STEPS[-1]}" in url for url in asked)  # live updates ask for new points


def test_compare_thins_lines_on_the_server(sweep) -> None:
    path, _ = sweep
    body = compare(client_of(path), ["mlp-s0", "mlp-s1"], max_points=4)
    run = body["runs"][0]
    assert len(run["x"]) == 4 and run["x"][0] == STEPS[0] and run["x"][-1] == STEPS[-1]
    assert set(run["x"]) <= set(STEPS)
    assert run["y"] == [entropy(0, s, 0, "mlp") for s in run["x"]]
    assert body["groups"][0]["x"] == run["x"]


def test_pages_load_the_new_scripts(sweep) -> None:
    path, ids = sweep
    client = client_of(path)
    assert '<script src="/static/runs_table.js' in client.get("/").text
    page = client.get("/compare", params={"runs": [ids["mlp-s0"], ids["cnn-s0"]]}).text
    assert '<script src="/static/compare.js' in page and '"plot_measures": ["entropy"]' in page
    for asset in ("/static/runs_table.js", "/static/compare.js"):
        assert client.get(asset).status_code == 200


# --------------------------------------------------------------------------- in a browser


@contextmanager
def dashboard_page(path: Path, height: int) -> Iterator[tuple[object, str]]:
    """A headless Chromium page and the base URL of a dashboard of ``path`` (refreshing every
    0.5 s); fails the test if the page raised any script error."""
    require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with serve(path, poll_seconds=0.5) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, base
        finally:
            browser.close()
    assert errors == []


def rows_shown(page) -> list[str]:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('#runs-table tbody tr[data-run] td a'))"
        ".map(a => a.textContent)"
    )


def wait_rows(page, names: list[str]) -> None:
    page.wait_for_function(
        "(want) => { const got = Array.from(document.querySelectorAll("
        "'#runs-table tbody tr[data-run] td a')).map(a => a.textContent);"
        " return JSON.stringify(got) === JSON.stringify(want); }", arg=names)


def test_browser_run_table_filters_sorts_groups_and_keeps_state_in_url(sweep) -> None:
    path, ids = sweep
    with dashboard_page(path, height=800) as (page, base):
        page.goto(base + "/")
        wait_rows(page, list(SWEEP)[::-1])
        headers = page.evaluate("() => Array.from(document.querySelectorAll("
                                "'#runs-table th[data-sort]')).map(t => t.dataset.sort)")
        assert headers[-2:] == ["config.net", "config.seed"] and "test_accuracy" in headers
        chance = f'#runs-table tr[data-run="{ids["resnet-s0"]}"]'
        assert page.get_attribute(chance, "class") == "row-chance"
        assert page.inner_text(chance + " .status") == "finished (chance-level)"
        failed = f'#runs-table tr[data-run="{ids["broken"]}"]'
        assert page.inner_text(failed + " .run-error") == "RuntimeError: CUDA out of memory"
        assert page.inner_text(f'#runs-table tr[data-run="{ids["mlp-s0"]}"] '
                               "[data-key=test_accuracy]") == "91.0%"  # fmt: skip
        doc_image(page, "dashboard-runs.png")

        # sort by test accuracy (click: descending, again: ascending), missing last
        page.click("#runs-table th[data-sort=test_accuracy] button")
        wait_rows(page, ["mlp-s0", "mlp-s1", "cnn-s0", "resnet-s0", "broken"])
        page.click("#runs-table th[data-sort=test_accuracy] button")
        wait_rows(page, ["resnet-s0", "cnn-s0", "mlp-s1", "mlp-s0", "broken"])

        # search, then filters by experiment, status and config key
        page.fill("#runs-search", "mlp")
        wait_rows(page, ["mlp-s1", "mlp-s0"])
        page.fill("#runs-search", "")
        page.select_option("#runs-experiment", "sweep-b")
        wait_rows(page, ["resnet-s0", "broken"])
        page.select_option("#runs-status", "failed")
        wait_rows(page, ["broken"])
        page.select_option("#runs-experiment", "")
        page.select_option("#runs-status", "")
        page.fill("#runs-where", "net=mlp")
        page.press("#runs-where", "Enter")
        wait_rows(page, ["mlp-s1", "mlp-s0", "broken"])
        headers = page.evaluate("() => Array.from(document.querySelectorAll("
                                "'#runs-table th.config-col')).map(t => t.dataset.sort)")
        assert headers == ["config.seed"]  # net is the same in all listed runs

        # grouped by experiment; the state is in the URL and a reload shows the same
        page.check("#runs-group")
        page.wait_for_selector("#runs-table tr.group-row")
        groups = page.evaluate("() => Array.from(document.querySelectorAll("
                               "'#runs-table tr.group-row')).map(t => t.dataset.group)")
        assert groups == ["sweep-a", "sweep-b"]
        query = parse_qs(urlsplit(page.url).query)
        assert query == {"where": ["net=mlp"], "sort": ["test_accuracy"],
                         "order": ["asc"], "group": ["experiment"]}  # fmt: skip
        shown = rows_shown(page)
        page.goto(page.url)
        wait_rows(page, shown)
        assert page.input_value("#runs-where") == "net=mlp" and page.is_checked("#runs-group")


def plotted(page, plot: str = "compare-lines") -> list[dict]:
    return page.evaluate(
        f"() => document.getElementById('{plot}').data.map(t => "
        "({name: t.name, meta: t.meta, x: Array.from(t.x), y: Array.from(t.y)}))"
    )


def test_browser_compare_three_nets_bands_and_url_state(sweep, tmp_path) -> None:
    path, ids = sweep
    three = ["mlp-s0", "cnn-s0", "resnet-s0"]
    with dashboard_page(path, height=900) as (page, base):

        # three runs of different nets: three lines, each at its own first layer
        runs = "&".join(f"runs={ids[n]}" for n in three)
        page.goto(f"{base}/compare?{runs}&measure=entropy")
        page.wait_for_function("() => window.learnscope.compare.draws > 0")
        traces = plotted(page)
        assert [t["meta"] for t in traces] == ["run"] * 3
        for trace, name in zip(traces, three, strict=True):
            net, layers, seed, *_ = SWEEP[name]
            assert trace["name"].startswith(name) and trace["x"] == STEPS
            assert trace["y"] == [entropy(0, s, seed, net) for s in STEPS]

        # the last layer of each, in epochs
        draws = page.evaluate("() => window.learnscope.compare.draws")
        page.select_option("#layer", "last")
        page.select_option("#x-axis", "epoch")
        page.wait_for_function(
            "() => { const d = document.getElementById('compare-lines');"
            " return d.layout.xaxis.title.text === 'epoch' &&"
            " d.getAttribute('data-layers') === 'fc2, conv4, block6'; }")
        assert page.evaluate("() => window.learnscope.compare.draws") > draws
        for trace, name in zip(plotted(page), three, strict=True):
            net, layers, seed, *_ = SWEEP[name]
            assert trace["x"] == [epoch_of(s) for s in STEPS]
            assert trace["y"] == [entropy(layers - 1, s, seed, net) for s in STEPS]
        query = parse_qs(urlsplit(page.url).query)
        assert query["layer"] == ["last"] and query["x"] == ["epoch"]
        diff = page.evaluate("() => Array.from(document.querySelectorAll("
                             "'#compare-diff tbody tr')).map(t => t.dataset.key)")
        assert diff == ["net"]

        # two seeds of one config: a mean +- s.d. band, single runs on a toggle
        runs = "&".join(f"runs={ids[n]}" for n in ("mlp-s0", "mlp-s1", "cnn-s0"))
        page.goto(f"{base}/compare?{runs}&measure=entropy&layer=1")
        page.wait_for_function("() => window.learnscope.compare.draws > 0")
        traces = plotted(page)
        assert [t["meta"] for t in traces] == ["band-lower", "band-upper", "mean", "run"]
        lines = np.array([[entropy(1, s, seed, "mlp") for s in STEPS] for seed in (0, 1)])
        mean, sd = lines.mean(axis=0), lines.std(axis=0, ddof=1)
        np.testing.assert_allclose(traces[2]["y"], mean, rtol=1e-12)
        np.testing.assert_allclose(traces[0]["y"], mean - sd, rtol=1e-12)
        np.testing.assert_allclose(traces[1]["y"], mean + sd, rtol=1e-12)
        page.check("#single-runs")
        page.wait_for_function("() => document.getElementById('compare-lines').data"
                               ".filter(t => t.meta === 'run').length === 3")
        assert parse_qs(urlsplit(page.url).query)["singles"] == ["1"]
        doc_image(page, "dashboard-compare.png")

        # the plot's data as CSV: the band, the mean and the three runs, as drawn
        with page.expect_download() as info:
            page.click('.downloads[data-for="compare-lines"] button[data-format="csv"]')
        saved = tmp_path / "compare.csv"
        info.value.save_as(saved)
        rows = list(csv.DictReader(saved.open()))
        by_trace: dict[str, list[float]] = {}
        for row in rows:
            by_trace.setdefault(row["trace"], []).append(float(row["y"]))
        drawn = plotted(page)
        assert list(by_trace) == [t["name"] for t in drawn]
        for trace in drawn:
            np.testing.assert_allclose(by_trace[trace["name"]], trace["y"], rtol=1e-12)
        assert len(by_trace) == 6 and all(len(v) == len(STEPS) for v in by_trace.values())

        # a link with the state reproduces the view
        page.goto(page.url)
        page.wait_for_function("() => window.learnscope.compare.draws > 0")
        assert page.is_checked("#single-runs") and page.input_value("#layer") == "1"
        assert [t["meta"] for t in plotted(page)] == ["band-lower", "band-upper", "mean",
                                                      "run", "run", "run"]  # fmt: skip


# --------------------------------------------------------------------------- big runs


def test_metrics_max_steps_thins_steps_on_the_server(sweep) -> None:
    path, ids = sweep
    client = client_of(path)
    url = f"/api/runs/{ids['cnn-s0']}/metrics"
    body = client.get(url, params={"measure": "entropy", "max_steps": 4}).json()
    assert len(body["steps"]) == 4 and body["steps"][0] == STEPS[0]
    assert body["steps"][-1] == STEPS[-1] and set(body["steps"]) <= set(STEPS)
    for series in body["series"]:
        index = series["layer_index"]
        assert series["values"] == [entropy(index, s, 0, "cnn") for s in body["steps"]]
    assert body["epochs"] == [epoch_of(s) for s in body["steps"]]
    newer = client.get(url, params={"measure": "entropy", "max_steps": 2,
                                    "since_step": STEPS[-4]}).json()  # fmt: skip
    assert newer["steps"] == [STEPS[-3], STEPS[-1]]
    everything = client.get(url, params={"measure": "entropy", "max_steps": 1000}).json()
    assert everything["steps"] == STEPS
    unknown = client.get(url, params={"measure": "nope", "max_steps": 4})
    assert unknown.status_code == 404 and unknown.json()["error"] == "Unknown measure"
    bad = client.get(url, params={"measure": "entropy", "max_steps": 1})
    assert bad.status_code == 422 and bad.json()["hint"].startswith("Allowed: max_steps: ")
