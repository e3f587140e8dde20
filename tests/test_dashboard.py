"""Tests of the web dashboard (learnscope.dashboard) and its command.

The JSON endpoints are checked with Starlette's TestClient against values read from the store
file directly with sqlite3 (not through learnscope). The end-to-end test drives the system
Chromium (Playwright) against a dashboard served by uvicorn, and writes a new measurement while
the page is open to check that the page shows it without reloading.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra is not installed")
pytest.importorskip("uvicorn", reason="the dashboard extra is not installed")
pytest.importorskip("plotly", reason="the dashboard extra is not installed")

import httpx  # noqa: E402
import torch  # noqa: E402

with warnings.catch_warnings():  # Starlette would like httpx2; httpx works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import learnscope.store as store_mod  # noqa: E402
from learnscope import cli  # noqa: E402
from learnscope.dashboard import create_app  # noqa: E402
from learnscope.experiments.quickstart import run_quickstart  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
LOCAL_URL = "http://127.0.0.1"  # TestClient's default host (testserver) is refused
MEASURE = "entropy"  # the measure the run page shows first for a quickstart run


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A store with one real quickstart run (MLP, 1 epoch, measured every 5 steps)."""
    path = tmp_path_factory.mktemp("dashboard") / "runs.db"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outcome = run_quickstart(path, epochs=1, every_k=5, nets=("mlp",))
    finally:
        torch.set_num_threads(threads)
    return path, outcome[0].run_id


@pytest.fixture()
def copy(quick: tuple[Path, str], tmp_path: Path) -> tuple[Path, str]:
    """A private copy of the quickstart store (for tests that write or watch files)."""
    source, run_id = quick
    target = tmp_path / "copy" / "runs.db"
    target.parent.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy2(f"{source}{suffix}", f"{target}{suffix}")
    return target, run_id


def raw_query(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of ``sql`` run on the store file with plain sqlite3 (read-only)."""
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def expected_metrics(path: Path, run_id: str, measure: str, since: int = -1) -> dict:
    """steps, layers (forward order) and {(layer, step): value} of one measure, via sqlite3."""
    rows = raw_query(
        path,
        "SELECT step, layer, layer_index, value FROM metrics "
        "WHERE run = ? AND measure = ? AND step > ?",
        (run_id, measure, since),
    )
    layers = sorted({(index, layer) for _, layer, index, _ in rows})
    return {
        "steps": sorted({step for step, *_ in rows}),
        "layers": [layer for _, layer in layers],
        "values": {(layer, step): value for step, layer, _, value in rows},
    }


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


# --------------------------------------------------------------------------- JSON API


def test_api_runs_matches_the_store(quick: tuple[Path, str]) -> None:
    path, run_id = quick
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    response = client.get("/api/runs")
    assert response.status_code == 200
    body = response.json()
    assert body["store"] == str(path.resolve())
    assert body["poll_seconds"] == 2.0
    (run,) = body["runs"]
    name, experiment, status, total, last = raw_query(
        path,
        "SELECT name, experiment, status, total_steps, last_step FROM runs WHERE id = ?",
        (run_id,),
    )[0]
    (n_measurements,) = raw_query(
        path, "SELECT count(*) FROM measurements WHERE run = ?", (run_id,)
    )[0]
    assert run["id"] == run_id
    assert (run["name"], run["experiment"], run["status"]) == (name, experiment, status)
    assert (run["total_steps"], run["last_step"]) == (total, last)
    assert run["measurements"] == n_measurements
    assert status == "finished" and run["progress"] == 1.0 and run["eta_seconds"] == 0.0
    assert isinstance(run["updated_unix"], float)


def test_api_run_lists_measures_and_layers(quick: tuple[Path, str]) -> None:
    path, run_id = quick
    body = TestClient(create_app(path), base_url=LOCAL_URL).get(f"/api/runs/{run_id}").json()
    measures = {m["name"] for m in body["measures"]}
    stored = {m for (m,) in raw_query(path, "SELECT DISTINCT measure FROM metrics")}
    assert measures == stored
    assert body["default_measure"] == MEASURE
    layers = raw_query(
        path,
        "SELECT DISTINCT probe, layer, layer_index FROM metrics WHERE run = ? "
        "ORDER BY layer_index, probe, layer",
        (run_id,),
    )
    assert [(x["probe"], x["layer"], x["layer_index"]) for x in body["layers"]] == layers
    (config,) = raw_query(path, "SELECT config FROM runs WHERE id = ?", (run_id,))[0]
    assert body["run"]["config"] == json.loads(config)
    assert {m["name"]: m["per_layer"] for m in body["measures"]}["loss"] is False


@pytest.mark.parametrize("measure", [MEASURE, "added_since_last", "loss"])
def test_api_metrics_values_equal_the_store(quick: tuple[Path, str], measure: str) -> None:
    path, run_id = quick
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    response = client.get(f"/api/runs/{run_id}/metrics", params={"measure": measure})
    assert response.status_code == 200
    assert "NaN" not in response.text and "Infinity" not in response.text
    body = response.json()
    want = expected_metrics(path, run_id, measure)
    assert body["measure"] == measure
    assert body["steps"] == want["steps"]
    assert [s["layer"] for s in body["series"]] == want["layers"]
    for series in body["series"]:
        for step, value in zip(body["steps"], series["values"], strict=True):
            assert value == want["values"][(series["layer"], step)]  # NULL (NaN) -> null
    if measure == "added_since_last":  # NaN at the first measurement
        assert all(s["values"][0] is None for s in body["series"])
    # incremental polling: only the steps after since_step
    since = want["steps"][-3]
    part = client.get(
        f"/api/runs/{run_id}/metrics", params={"measure": measure, "since_step": since}
    ).json()
    assert (
        part["steps"]
        == want["steps"][-2:]
        == expected_metrics(path, run_id, measure, since)["steps"]
    )
    assert [s["values"] for s in part["series"]] == [s["values"][-2:] for s in body["series"]]


def test_unknown_run_and_measure_are_404_with_what_to_do(quick: tuple[Path, str]) -> None:
    path, run_id = quick
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    for url in ("/api/runs/nope", "/api/runs/nope/metrics?measure=entropy"):
        response = client.get(url)
        assert response.status_code == 404
        body = response.json()
        assert body["error"] == "Unknown run"
        assert "No run matches 'nope'" in body["detail"] and run_id in body["detail"]
        assert body["hint"]
    page = client.get("/runs/nope")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Unknown run" in page.text and "No run matches" in page.text
    assert "Traceback" not in page.text
    bad = client.get(f"/api/runs/{run_id}/metrics", params={"measure": "bogus"})
    assert bad.status_code == 404
    assert "Unknown measure 'bogus'" in bad.json()["detail"] and MEASURE in bad.json()["detail"]
    invalid = client.get(f"/api/runs/{run_id}/metrics", params={"since_step": "x"})
    assert invalid.status_code == 422 and "since_step" in invalid.json()["detail"]
    assert client.get("/api/nothing").json()["error"] == "Not found"


# --------------------------------------------------------------------------- pages


def test_pages_render_and_use_only_local_assets(quick: tuple[Path, str]) -> None:
    path, run_id = quick
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    pages = {
        "/": ["quickstart-mlp", run_id, "Compare selected runs"],
        f"/runs/{run_id}": ["quickstart-mlp", f'<option value="{MEASURE}" selected>', "loss"],
        "/runs/quickstart-mlp": [run_id],  # by name
        f"/compare?runs={run_id}&runs={run_id}": ["Compare runs", MEASURE],
    }
    for url, needles in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        for needle in needles:
            assert needle in response.text, (url, needle)
        for ref in re.findall(r'(?:src|href)="([^"]*)"', response.text):
            assert ref.startswith(("/", "data:")), (url, ref)  # nothing from elsewhere
        assert "cdn" not in response.text.lower()
    plotly_js = client.get("/assets/plotly.min.js")
    assert plotly_js.status_code == 200 and len(plotly_js.content) > 1_000_000
    assert b"plotly" in plotly_js.content[:2000].lower()
    for asset in ("/static/dashboard.js", "/static/dashboard.css"):
        assert client.get(asset).status_code == 200
    assert client.get("/docs").status_code == 404  # FastAPI's docs would load a CDN


def test_missing_store_page_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "runs.db"
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    page = client.get("/")
    assert page.status_code == 503
    assert "No run store yet" in page.text and str(path) in page.text
    assert "learnscope run quickstart --store" in page.text
    api = client.get("/api/runs")
    assert api.status_code == 503
    assert api.json()["error"] == "No run store yet" and "--store" in api.json()["hint"]
    assert client.get("/runs/anything").status_code == 503
    assert client.get("/api/runs/anything/metrics").status_code == 503
    assert list(tmp_path.iterdir()) == []  # no folder, no file


def test_empty_store_and_a_run_without_measurements(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store_mod.open(path).close()
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    page = client.get("/")
    assert page.status_code == 200 and "No runs yet" in page.text
    assert client.get("/api/runs").json()["runs"] == []
    assert "No runs yet" in client.get("/compare").text
    with store_mod.open(path) as s:
        run_id = s.create_run("fresh", {}, total_steps=100)
    (run,) = client.get("/api/runs").json()["runs"]
    assert run["progress"] == 0.0 and run["eta_seconds"] is None and run["last_step"] is None
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200 and "No measurements yet" in page.text
    empty = client.get(f"/api/runs/{run_id}/metrics")
    assert empty.status_code == 404 and empty.json()["error"] == "No measurements yet"


def test_files_that_are_not_stores_give_a_clear_page(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    page = TestClient(create_app(other), base_url=LOCAL_URL).get("/")
    assert page.status_code == 503
    assert "not a learnscope store" in page.text and "Traceback" not in page.text
    folder = TestClient(create_app(tmp_path), base_url=LOCAL_URL).get("/api/runs")
    assert folder.status_code == 503 and "directory" in folder.json()["detail"]


def test_the_dashboard_never_writes(copy: tuple[Path, str]) -> None:
    path, run_id = copy
    before = path.read_bytes()
    stat = path.stat()
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    for url in (
        "/",
        "/api/runs",
        f"/runs/{run_id}",
        f"/api/runs/{run_id}",
        f"/api/runs/{run_id}/metrics?measure={MEASURE}",
        f"/compare?runs={run_id}",
        "/api/runs/nope",
    ):
        assert client.get(url).status_code in (200, 404), url
    assert path.read_bytes() == before
    assert (path.stat().st_mtime_ns, path.stat().st_size) == (stat.st_mtime_ns, stat.st_size)
    names = set(files_of(path.parent))
    assert not any(name.endswith("-journal") for name in names)
    assert names <= {"runs.db", "runs.db-wal", "runs.db-shm"}  # SQLite's WAL index only
    wal = path.parent / "runs.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert not (path.parent / "runs.artifacts").exists()


def test_a_store_being_written_is_read_without_waiting(copy: tuple[Path, str]) -> None:
    path, run_id = copy
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    with store_mod.open(path) as writer:
        conn = writer._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")  # a writer in the middle of a transaction
        conn.execute("UPDATE runs SET status = 'failed' WHERE id = ?", (run_id,))
        try:
            started = time.monotonic()
            response = client.get("/api/runs")
            metrics = client.get(f"/api/runs/{run_id}/metrics", params={"measure": MEASURE})
            assert time.monotonic() - started < 10
        finally:
            conn.execute("ROLLBACK")
    assert response.status_code == 200 and metrics.status_code == 200
    assert response.json()["runs"][0]["status"] == "finished"  # the committed state


# --------------------------------------------------------------------------- command line


def test_command_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # makes `import uvicorn` fail
    result = CliRunner().invoke(cli.app, ["dashboard", "--port", "0"])
    assert result.exit_code == 2
    assert "pip install 'learnscope[dashboard]'" in result.output
    assert "uvicorn" in result.output


def test_command_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            cli.app, ["dashboard", "--store", str(tmp_path / "x.db"), "--port", str(port)]
        )
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "--port" in result.output
    assert list(tmp_path.iterdir()) == []


def test_command_serves_the_store(quick: tuple[Path, str]) -> None:
    path, run_id = quick
    proc = subprocess.Popen(
        [sys.executable, "-m", "learnscope.cli", "dashboard", "--store", str(path),
         "--port", "0", "--poll", "1", "--allowed-host", "dash.lan"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        seen: list[str] = []
        match = None
        while match is None:  # other output (warnings) may come first
            seen.append(lines.get(timeout=60))
            match = re.search(r"at (http://127\.0\.0\.1:\d+/) \(read-only", seen[-1])
            assert len(seen) < 50, seen
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(match.group(1) + "api/runs", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the dashboard did not answer"
                time.sleep(0.1)
        assert response.status_code == 200
        assert [r["id"] for r in response.json()["runs"]] == [run_id]
        assert response.json()["poll_seconds"] == 1.0
        api = match.group(1) + "api/runs"
        refused = httpx.get(api, headers={"Host": "evil.example"}, timeout=5)
        assert refused.status_code == 400 and "--allowed-host evil.example" in refused.text
        assert httpx.get(api, headers={"Host": "dash.lan:80"}, timeout=5).status_code == 200
        port = int(match.group(1).rstrip("/").rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"GET /api/runs HTTP/1.0\r\n\r\n")  # HTTP/1.0 allows no Host
            answer = b""
            while chunk := raw.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400") and b"the request has no Host header" in answer
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- in a browser


@contextmanager
def serve(path: Path, poll_seconds: float) -> Iterator[str]:
    """The dashboard of ``path`` served by uvicorn in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(path, poll_seconds=poll_seconds), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def require_browser() -> None:
    """Skip (fail on CI) when the system Chromium or Playwright is missing."""
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"the system Chromium ({CHROMIUM}) is missing: apt-get install -y chromium"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "Playwright is missing: pip install -e '.[test]'"
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI must provide it)")
    pytest.skip(problem)


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("LEARNSCOPE_TEST_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder



def doc_image(page, name: str) -> None:
    """A screenshot into the test artifacts, and into docs/images when
    LEARNSCOPE_DOC_IMAGES=1 (how the images in docs/dashboard.md are made)."""
    target = artifacts_dir() / name
    page.screenshot(path=str(target), full_page=True)
    if os.environ.get("LEARNSCOPE_DOC_IMAGES") == "1":
        (REPO / "docs" / "images").mkdir(exist_ok=True)
        shutil.copyfile(target, REPO / "docs" / "images" / name)


def test_browser_pages_update_live_and_offline(copy: tuple[Path, str]) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    path, run_id = copy
    want = expected_metrics(path, run_id, MEASURE)
    (probe,) = {p for (p,) in raw_query(
        path, "SELECT DISTINCT probe FROM metrics WHERE run = ? AND measure = ?", (run_id, MEASURE)
    )}  # fmt: skip
    requests: list[str] = []
    errors: list[str] = []
    navigations: list[str] = []
    heatmap = "document.getElementById('heatmap')"
    with serve(path, poll_seconds=0.25) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "framenavigated",
                lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
            )

            # the run list picks up a new run by itself
            page.goto(base + "/")
            page.wait_for_selector(f'#runs-table tr[data-run="{run_id}"]')
            page.evaluate("window.__lsMarker = 'list'")
            with store_mod.open(path) as s:
                new_run = s.create_run("arrives-later", {}, total_steps=10)
            page.wait_for_selector(f'#runs-table tr[data-run="{new_run}"]')
            assert page.evaluate("window.__lsMarker") == "list"

            # a run that fails while the list is open: its error's last line appears under its
            # status, and its page shows the whole stored error (learnscope.health)
            error = "Traceback (most recent call last):\nValueError: the loss went away"
            with store_mod.open(path) as s:
                crashed = s.create_run("crashes", {}, total_steps=10)
                s.set_status(crashed, "failed", error=error)
            cell = f'#runs-table tr[data-run="{crashed}"] .run-error'
            page.wait_for_selector(cell)
            assert page.inner_text(cell) == "ValueError: the loss went away"
            assert page.get_attribute(cell, "title") == error
            page.goto(f"{base}/runs/{crashed}")
            page.wait_for_function("() => !document.querySelector('[data-key=updated]')"
                                   ".textContent.includes('T')")  # the page script has run
            assert page.is_visible("#run-problem")
            assert page.inner_text("#run-problem pre") == error
            assert "failed before its first measurement" in page.inner_text("#ls-notice")

            # the run page: heatmap of the run's layers (forward order) x measured steps
            page.goto(f"{base}/runs/{run_id}")
            page.wait_for_function(f"() => {heatmap}.data && {heatmap}.data[0].x.length > 0")
            trace = page.evaluate(f"() => {{ const t = {heatmap}.data[0]; "
                                  "return {x: t.x, y: t.y, z: t.z, type: t.type}; }")  # fmt: skip
            assert trace["type"] == "heatmap"
            assert trace["y"] == want["layers"] and trace["x"] == want["steps"]
            for layer, row in zip(trace["y"], trace["z"], strict=True):
                assert row == [want["values"][(layer, step)] for step in trace["x"]]
            ticks = page.evaluate(
                "() => Array.from(document.querySelectorAll('#heatmap .ytick text'))"
                ".map(t => [t.getBoundingClientRect().top, t.textContent])"
                ".sort((a, b) => a[0] - b[0]).map(t => t[1])"
            )
            assert ticks == want["layers"]  # drawn top to bottom in forward order
            lines = page.evaluate(f"() => {heatmap.replace('heatmap', 'lines')}.data.length")
            assert lines == len(want["layers"])
            page.evaluate("window.__lsMarker = 'run'")
            loaded = len(navigations)

            # a new measurement written while the page is open appears without a reload
            new_step = max(want["steps"]) + 7
            written = {layer: 1.25 + i for i, layer in enumerate(want["layers"])}
            rows = [(layer, i, MEASURE, written[layer]) for i, layer in enumerate(want["layers"])]
            with store_mod.open(path) as s:
                s.write_measurement(run_id, new_step, 1, probe, rows)
            page.wait_for_function(f"() => {heatmap}.data[0].x.includes({new_step})")
            trace = page.evaluate(f"() => {{ const t = {heatmap}.data[0]; "
                                  "return {x: t.x, y: t.y, z: t.z}; }")  # fmt: skip
            assert trace["x"] == [*want["steps"], new_step] and trace["y"] == want["layers"]
            assert [row[-1] for row in trace["z"]] == [written[y] for y in trace["y"]]
            page.wait_for_function(
                f"() => document.querySelector('[data-key=last_step]').textContent === '{new_step}'"
            )
            assert page.evaluate("window.__lsMarker") == "run"  # same document: no reload
            assert len(navigations) == loaded
            page.screenshot(path=str(artifacts_dir() / "dashboard.png"), full_page=True)

            # each layer on its own colour scale: 0..1 per row, the values kept for hovering
            page.check("#per-layer-scale")
            page.wait_for_function(f"() => {heatmap}.data[0].zmax === 1")
            scaled = page.evaluate(f"() => {{ const t = {heatmap}.data[0]; "
                                   "return {z: t.z, raw: t.customdata}; }")  # fmt: skip
            assert [(min(row), max(row)) for row in scaled["z"]] == [(0, 1)] * len(trace["y"])
            assert scaled["raw"] == trace["z"]
            page.uncheck("#per-layer-scale")

            # another measure, then the comparison page
            page.select_option("#measure", "rel_entropy")
            page.wait_for_function(f"() => {heatmap}.data[0].colorbar.title.text === 'rel_entropy'")
            assert page.evaluate("window.__lsMarker") == "run"

            # a run without measurements yet: its page waits, then draws the first one
            page.goto(f"{base}/runs/{new_run}")
            assert "No measurements yet" in page.inner_text("#ls-notice")
            page.evaluate("window.__lsMarker = 'empty'")
            with store_mod.open(path) as s:
                first = want["layers"][0]
                s.write_measurement(new_run, 0, 0, probe, [(first, 0, MEASURE, 3.5)])
            page.wait_for_function(f"() => {heatmap}.data && {heatmap}.data[0].x.length === 1")
            assert page.evaluate(f"() => {heatmap}.data[0].z") == [[3.5]]
            assert page.is_hidden("#ls-notice")
            assert page.evaluate("window.__lsMarker") == "empty"

            # the comparison page: one heatmap per run
            page.goto(f"{base}/compare?runs={run_id}&runs={new_run}&measure={MEASURE}")
            for shown in (run_id, new_run):
                page.wait_for_function(
                    f"() => {{ const d = document.getElementById('heatmap-{shown}'); "
                    "return d && d.data && d.data[0].x.length > 0; }"
                )
            page.wait_for_function("() => window.learnscope.compare.draws > 0")  # compare.js
            lines = page.evaluate("() => document.getElementById('compare-lines').data")
            assert [len(trace["x"]) for trace in lines] == [len(want["steps"]) + 1, 1]
        finally:
            browser.close()
    assert errors == []
    outside = [url for url in requests if not url.startswith(base + "/") and
               not url.startswith("data:")]  # fmt: skip
    assert outside == [], outside  # works offline: everything comes from the dashboard
    assert any(url.startswith(f"{base}/assets/plotly.min.js") for url in requests)
    assert any("since_step=" in url for url in requests)  # incremental polling


# --------------------------------------------------------------------------- equi-separation


def write_separation(path: Path, run_id: str, step: int, rho: float) -> dict[str, float]:
    """Separation rows as the Separation probe writes them: D_l = 4 rho^l (input = 0, layers
    1..5) and the fit over layers 1..5 (numpy); returns the fit values."""
    import numpy as np

    layers = np.arange(6)
    d = 4.0 * rho**layers * (1.0 + 0.01 * np.sin(layers + step))
    slope = float(np.polyfit(layers[1:], np.log(d[1:]), 1)[0])
    r = float(np.corrcoef(layers[1:], np.log(d[1:]))[0, 1])
    law = {"law_slope": slope, "law_rho": float(np.exp(slope)), "law_pearson_r": r,
           "law_r2": r * r, "law_first": 1.0, "law_last": 5.0}  # fmt: skip
    rows = [("input" if i == 0 else f"fc{i}", i, "fuzziness", float(d[i])) for i in layers]
    rows += [("law", -1, m, v) for m, v in law.items()]
    with store_mod.open(path) as s:
        s.write_measurement(run_id, step, step / 10, "separation", rows)
    return law


@pytest.fixture()
def separated(tmp_path: Path) -> tuple[Path, str]:
    """A store with one run of separation rows at steps 0, 10, 20."""
    path = tmp_path / "sep" / "runs.db"
    path.parent.mkdir()
    with store_mod.open(path) as s:
        run_id = s.create_run("equisep-mlp", {}, experiment="equisep", total_steps=100)
    for step, rho in ((0, 0.95), (10, 0.85), (20, 0.75)):
        write_separation(path, run_id, step, rho)
    return path, run_id


def test_api_separation_equals_the_store(separated: tuple[Path, str], quick) -> None:
    path, run_id = separated
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    body = client.get(f"/api/runs/{run_id}/separation").json()
    want = expected_metrics(path, run_id, "fuzziness")
    assert body["probe"] == "separation" and body["steps"] == want["steps"]
    assert [s["layer"] for s in body["series"]] == want["layers"]
    assert [s["layer_index"] for s in body["series"]] == list(range(6))
    for series in body["series"]:
        assert series["values"] == [want["values"][(series["layer"], t)] for t in want["steps"]]
    for key in ("slope", "rho", "pearson_r", "r2", "first", "last"):
        rows = raw_query(
            path,
            "SELECT step, value FROM metrics WHERE run = ? AND layer = 'law' "
            "AND measure = ? ORDER BY step",
            (run_id, f"law_{key}"),
        )
        assert body["law"][key] == [v for _, v in rows]
    later = client.get(f"/api/runs/{run_id}/separation?since_step=10").json()
    assert later["steps"] == [20] and len(later["law"]["rho"]) == 1
    assert client.get(f"/api/runs/{run_id}").json()["separation_probe"] == "separation"
    page = client.get(f"/runs/{run_id}").text
    assert '<div id="separation">' in page and 'id="equisep"' in page
    # a run without separation rows: the section is hidden, the endpoint says what to run
    quick_path, quick_id = quick
    other = TestClient(create_app(quick_path), base_url=LOCAL_URL)
    assert '<div id="separation" hidden>' in other.get(f"/runs/{quick_id}").text
    missing = other.get(f"/api/runs/{quick_id}/separation")
    assert missing.status_code == 404 and "learnscope run equisep" in missing.json()["hint"]


def test_browser_equisep_plots_update_live(separated: tuple[Path, str]) -> None:
    require_browser()
    import math

    from playwright.sync_api import sync_playwright

    path, run_id = separated
    errors: list[str] = []
    plot = "document.getElementById('equisep')"
    with serve(path, poll_seconds=0.25) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/runs/{run_id}")
            page.wait_for_function(f"() => {plot}.data && {plot}.data.length === 2 && "
                                   f"{plot}.data[0].name.includes('step 20')")  # fmt: skip
            page.evaluate("window.__lsMarker = 'sep'")
            for step, rho in ((20, None), (30, 0.6)):
                law = write_separation(path, run_id, step, rho) if rho else None
                if law is not None:
                    page.wait_for_function(f"() => {plot}.data[0].name.includes('step {step}')")
                else:
                    law = {m: v for m, v in raw_query(
                        path, "SELECT measure, value FROM metrics WHERE run = ? AND step = ? "
                        "AND layer = 'law'", (run_id, step))}  # fmt: skip
                points, fit = page.evaluate(f"() => {plot}.data.map(t => ({{x: t.x, y: t.y, "
                                            "name: t.name}))")  # fmt: skip
                want = raw_query(path, "SELECT layer_index, value FROM metrics WHERE run = ? "
                                 "AND step = ? AND measure = 'fuzziness' ORDER BY layer_index",
                                 (run_id, step))  # fmt: skip
                assert points["x"] == [i for i, _ in want] == list(range(6))
                assert points["y"] == [v for _, v in want]
                assert fit["x"] == [1, 2, 3, 4, 5]
                slope = (math.log(fit["y"][-1]) - math.log(fit["y"][0])) / 4
                assert slope == pytest.approx(law["law_slope"], rel=1e-9)
                assert fit["name"] == (f"fit: ρ = {law['law_rho']:.3f}, "
                                       f"r = {law['law_pearson_r']:.3f}")  # fmt: skip
            dynamics = page.evaluate("() => document.getElementById('equisep-dynamics').data"
                                     ".map(t => ({name: t.name, x: t.x, y: t.y}))")  # fmt: skip
            assert [t["name"] for t in dynamics] == [
                "input",
                "fc1",
                "fc2",
                "fc3",
                "fc4",
                "fc5",
                "Pearson r",
                "ρ",
            ]
            assert all(t["x"] == [0, 10, 20, 30] for t in dynamics)
            rs = raw_query(path, "SELECT value FROM metrics WHERE run = ? AND measure = "
                           "'law_pearson_r' ORDER BY step", (run_id,))  # fmt: skip
            assert dynamics[-2]["y"] == [v for (v,) in rs]
            # the layer x step heatmap shows fuzziness too (the run's default measure)
            heat = page.evaluate("() => document.getElementById('heatmap').data[0].y")
            assert heat == ["input", "fc1", "fc2", "fc3", "fc4", "fc5"]
            assert page.evaluate("window.__lsMarker") == "sep"  # updated without a reload
            page.screenshot(path=str(artifacts_dir() / "dashboard-equisep.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []


# --------------------------------------------------------------------------- weight trajectories


def synthetic_map(seed: int = 0):
    """Three networks (two groups) with two scores, one missing value and a landscape that is
    NaN outside the snapshots' hull."""
    import numpy as np

    from learnscope.trajectory.maps import TrajectoryMap, score_landscape

    rng = np.random.default_rng(seed)
    sizes = (6, 4, 5)
    coords = [rng.normal(size=(n, 2)).cumsum(axis=0) for n in sizes]
    accuracy = [rng.uniform(0.1, 0.9, n) for n in sizes]
    accuracy[1][2] = np.nan
    loss = [rng.uniform(0.1, 3.0, n) for n in sizes]
    return TrajectoryMap(
        networks=["mlp-a", "mlp-b", "mlp-c"], runs=["", "", ""],
        groups=["scratch", "scratch", "pretrained"], steps=[np.arange(n) * 25 for n in sizes],
        coords=coords, scores={"test_accuracy": accuracy, "loss": loss}, trajectory="all",
        projection="PCA (fit on all)",
        landscape=score_landscape(coords, accuracy, resolution=9, score="test_accuracy"),
        meta={"fit_on": "all", "nan": float("nan")},
    )  # fmt: skip


def drawn_landscape(tmap):
    """The landscape as the dashboard and the figures draw it: NaN where no snapshot is near
    (the rule and its independent check: tests/test_viz_trajectories.py)."""
    import numpy as np

    from learnscope.trajectory.maps import support_mask

    supported = support_mask(tmap.landscape, tmap.coords)
    return np.where(supported, tmap.landscape.values, np.nan)


def nulls(array) -> list:
    """An array as nested lists with NaN as None (how the JSON and Plotly carry it)."""
    import numpy as np

    values = np.asarray(array, dtype=float)
    return np.where(np.isnan(values), None, values).tolist()


@pytest.fixture()
def mapped(tmp_path: Path) -> tuple[Path, str, str, object]:
    """(store, run with a trajectory map, run without one, the map)."""
    from learnscope.trajectory.maps import save_map

    path = tmp_path / "traj" / "runs.db"
    path.parent.mkdir()
    tmap = synthetic_map()
    with store_mod.open(path) as s:
        run_id = s.create_run("trajectories-demo", {}, experiment="trajectories")
        save_map(s, run_id, tmap)
        s.set_status(run_id, "finished")
        other = s.create_run("no-map", {}, total_steps=10)
    return path, run_id, other, tmap


def test_api_trajectories_equals_the_map(mapped) -> None:
    path, run_id, other, tmap = mapped
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    response = client.get(f"/api/runs/{run_id}/trajectories")
    assert response.status_code == 200
    assert "NaN" not in response.text and "Infinity" not in response.text
    body = response.json()
    assert body["run"]["id"] == run_id
    assert (body["networks"], body["runs"], body["groups"]) == (tmap.networks, tmap.runs,
                                                                tmap.groups)  # fmt: skip
    assert (body["trajectory"], body["projection"]) == ("all", "PCA (fit on all)")
    assert body["steps"] == [s.tolist() for s in tmap.steps]
    assert body["coords"] == [c.tolist() for c in tmap.coords]
    assert body["score_names"] == ["test_accuracy", "loss"]
    for name in body["score_names"]:
        assert body["scores"][name] == [nulls(v) for v in tmap.scores[name]]
    assert body["scores"]["test_accuracy"][1][2] is None
    land = body["landscape"]
    assert (land["method"], land["score"]) == ("interpolate", "test_accuracy")
    assert land["x"] == tmap.landscape.x.tolist() and land["y"] == tmap.landscape.y.tolist()
    assert land["values"] == nulls(drawn_landscape(tmap))
    assert None in sum(land["values"], [])  # outside the hull
    assert body["path_lengths"] == tmap.path_lengths()
    assert body["start_to_end"] == tmap.start_to_end()
    assert body["meta"] == {"fit_on": "all", "nan": None}
    assert client.get("/api/runs/trajectories-demo/trajectories").json()["coords"] == \
        body["coords"]  # by name
    assert client.get(f"/api/runs/{run_id}").json()["trajectory_map"] is True
    assert client.get(f"/api/runs/{other}").json()["trajectory_map"] is False
    missing = client.get(f"/api/runs/{other}/trajectories")
    assert missing.status_code == 404
    error = missing.json()
    assert error["error"] == "No trajectory map" and "has no trajectory map" in error["detail"]
    assert "learnscope run trajectories" in error["hint"]
    assert client.get("/api/runs/nope/trajectories").json()["error"] == "Unknown run"
    assert '<div id="trajectories">' in client.get(f"/runs/{run_id}").text
    assert '<div id="trajectories" hidden>' in client.get(f"/runs/{other}").text
    # the dashboard only read: the artifact folder holds the map and nothing else
    files = sorted(p.name for p in (path.parent / "runs.artifacts").rglob("*") if p.is_file())
    assert files == ["map.npz"]


def test_api_trajectories_reports_a_broken_map(mapped) -> None:
    from learnscope.trajectory.maps import map_folder

    path, run_id, _, _ = mapped
    with store_mod.open(path) as s:
        (map_folder(s, run_id) / "map.npz").write_bytes(b"not a map")
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    response = client.get(f"/api/runs/{run_id}/trajectories")
    assert response.status_code == 500
    assert response.json()["error"] == "Cannot read the trajectory map"
    assert "not a readable trajectory map" in response.json()["detail"]


def test_browser_trajectory_map(mapped) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from learnscope.trajectory.maps import save_map

    path, run_id, other, tmap = mapped
    requests: list[str] = []
    errors: list[str] = []
    plot = "document.getElementById('trajectory-map')"
    n = len(tmap.networks)
    read = (f"() => {plot}.data.map(t => ({{type: t.type, name: t.name, x: t.x, y: t.y, "
            "z: t.z || null, mode: t.mode || null, color: t.marker ? t.marker.color : null, "
            "line: t.line ? t.line.color : null, dash: t.line ? t.line.dash : null, "
            "bar: t.type === 'heatmap' ? t.colorbar.title.text : "
            "(t.marker && t.marker.showscale ? t.marker.colorbar.title.text : null)}))")
    with serve(path, poll_seconds=0.25) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(20_000)
            page.on("request", lambda request: requests.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/runs/{run_id}")
            page.wait_for_function(f"() => {plot}.data && {plot}.data.length === {n + 3}")
            assert page.is_visible("#trajectories")
            traces = page.evaluate(read)
            heat, lines, start, end = traces[0], traces[1:n + 1], traces[n + 1], traces[n + 2]
            # the landscape under everything: its grid and values (NaN -> null) as stored
            assert heat["type"] == "heatmap"
            assert heat["x"] == tmap.landscape.x.tolist()
            assert heat["y"] == tmap.landscape.y.tolist()
            assert heat["z"] == nulls(drawn_landscape(tmap))
            assert heat["bar"] == "test_accuracy (landscape, interpolated)"
            # one line per network through its points, markers coloured by the score
            for i, trace in enumerate(lines):
                assert trace["mode"] == "lines+markers"
                assert trace["name"] == f"{tmap.networks[i]} ({tmap.groups[i]})"
                assert trace["x"] == tmap.coords[i][:, 0].tolist()
                assert trace["y"] == tmap.coords[i][:, 1].tolist()
                assert trace["color"] == nulls(tmap.scores["test_accuracy"][i])
            assert lines[0]["bar"] == "test_accuracy" and lines[1]["bar"] is None
            assert len({t["line"] for t in lines}) == n  # a colour per network
            assert lines[0]["dash"] == lines[1]["dash"] != lines[2]["dash"]  # a dash per group
            assert (start["name"], end["name"]) == ("start", "end")
            assert start["x"] == [c[0, 0] for c in tmap.coords]
            assert start["y"] == [c[0, 1] for c in tmap.coords]
            assert end["x"] == [c[-1, 0] for c in tmap.coords]
            assert end["y"] == [c[-1, 1] for c in tmap.coords]
            assert end["color"] == [t["line"] for t in lines]
            # another score from the selector recolours the markers
            assert page.is_visible("#trajectory-score")
            page.select_option("#trajectory-score", "loss")
            page.wait_for_function(f"() => {plot}.data[1].marker.colorbar.title.text === 'loss'")
            traces = page.evaluate(read)
            for i in range(n):
                assert traces[1 + i]["color"] == tmap.scores["loss"][i].tolist()
            assert traces[0]["z"] == nulls(drawn_landscape(tmap))
            page.screenshot(path=str(artifacts_dir() / "dashboard-trajectories.png"),
                            full_page=True)

            # a run without a map: hidden; it appears by itself once a map is written
            page.goto(f"{base}/runs/{other}")
            assert page.is_hidden("#trajectories")
            page.evaluate("window.__lsMarker = 'waiting'")
            with store_mod.open(path) as s:
                save_map(s, other, synthetic_map(seed=1))
            page.wait_for_function(f"() => {plot}.data && {plot}.data.length === {n + 3}")
            assert page.is_visible("#trajectories")
            assert page.evaluate("window.__lsMarker") == "waiting"  # no reload
        finally:
            browser.close()
    assert errors == []
    outside = [url for url in requests if not url.startswith(base + "/") and
               not url.startswith("data:")]  # fmt: skip
    assert outside == [], outside
    assert base.startswith("http://127.0.0.1:")


# --------------------------------------------------------------------------- trusting no one

# Host headers the dashboard refuses, with the host it names as refused.
REFUSED_HOST_HEADERS = {
    "evil.example": "evil.example", "evil.example:8765": "evil.example",
    "127.0.0.1.evil.example": "127.0.0.1.evil.example",
    "localhost.evil.example:80": "localhost.evil.example", "[::2]:8765": "::2",
    "0.0.0.0:8765": "0.0.0.0", "": "",
}  # fmt: skip
LOCAL_HOST_HEADERS = ("127.0.0.1", "127.0.0.1:8765", "localhost", "LOCALHOST:1", "[::1]:8765",
                      "[::1]")  # fmt: skip


def test_only_requests_to_local_hosts_are_answered(quick: tuple[Path, str]) -> None:
    """A DNS-rebinding page reaches the dashboard with its own name in Host: refused."""
    path, run_id = quick
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    for header, name in REFUSED_HOST_HEADERS.items():
        for url in ("/api/runs", f"/api/runs/{run_id}", "/", "/static/dashboard.js"):
            response = client.get(url, headers={"Host": header})
            assert response.status_code == 400, (header, url)
            assert response.headers["content-type"].startswith("text/plain")
            assert response.text == (
                f"Refused: host {name!r} is not one this dashboard answers (127.0.0.1, "
                f"localhost, ::1); to allow it, start the dashboard with --allowed-host {name}.\n"
            )
    for header in LOCAL_HOST_HEADERS:
        response = client.get("/api/runs", headers={"Host": header})
        assert response.status_code == 200, header
        assert [r["id"] for r in response.json()["runs"]] == [run_id]
    assert TestClient(create_app(path)).get("/api/runs").status_code == 400  # Host: testserver


def test_allowed_hosts_add_names_and_star_allows_any(quick: tuple[Path, str]) -> None:
    path, _ = quick
    client = TestClient(create_app(path, allowed_hosts=["Dash.LAN", "10.0.0.5"]),
                        base_url=LOCAL_URL)  # fmt: skip
    for host, status in (("dash.lan:8765", 200), ("10.0.0.5", 200), ("localhost", 200),
                         ("evil.example", 400), ("dash.lan.evil.example", 400)):  # fmt: skip
        assert client.get("/api/runs", headers={"Host": host}).status_code == status, host
    everywhere = TestClient(create_app(path, allowed_hosts=["::"]), base_url=LOCAL_URL)
    assert everywhere.get("/api/runs", headers={"Host": "[::]:8765"}).status_code == 200
    assert everywhere.get("/api/runs", headers={"Host": "myhost.lan"}).status_code == 400
    anyone = TestClient(create_app(path, allowed_hosts=["*"]), base_url=LOCAL_URL)
    assert anyone.get("/api/runs", headers={"Host": "evil.example"}).status_code == 200
    for bad in ("", "*.example.com", None):
        with pytest.raises(ValueError, match="allowed hosts must be"):
            create_app(path, allowed_hosts=[bad])


def test_command_rejects_a_malformed_allowed_host(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli.app, ["dashboard", "--store", str(tmp_path / "x.db"), "--port", "0",
                  "--allowed-host", "http://dash.lan/"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--allowed-host must be a host name or address" in result.output
    assert "'http://dash.lan/'" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


BAD_QUERIES = [
    ("metrics", {"since_step": "-99999999999999999999999"}, "since_step"),
    ("metrics", {"since_step": "abc"}, "since_step"),
    ("metrics", {"since_step": str(2**63)}, "since_step"),  # beyond SQLite's int64
    ("metrics", {"since_step": "-2"}, "since_step"),
    ("metrics", {"since_step": "1.5"}, "since_step"),
    ("metrics", {"since_step": "9" * 5000}, "since_step"),
    ("metrics", {"measure": ""}, "measure"),
    ("metrics", {"measure": "m" * 1001}, "measure"),
    ("separation", {"since_step": "-99999999999999999999999"}, "since_step"),
    ("separation", {"since_step": "nan"}, "since_step"),
    ("separation", {"probe": "p" * 1001}, "probe"),
    ("separation", {"probe": ""}, "probe"),
]


@pytest.mark.parametrize(("endpoint", "params", "name"), BAD_QUERIES)
def test_bad_query_values_are_422_with_a_one_line_message(
    quick: tuple[Path, str], endpoint: str, params: dict, name: str
) -> None:
    path, run_id = quick
    client = TestClient(create_app(path), base_url=LOCAL_URL, raise_server_exceptions=False)
    response = client.get(f"/api/runs/{run_id}/{endpoint}", params=params)
    assert response.status_code == 422, response.text[:300]
    body = response.json()
    assert body["status"] == 422 and body["error"] == "Invalid request"
    assert body["detail"].startswith(f"{name} = ") and "\n" not in body["detail"]
    assert body["hint"].startswith(f"Allowed: {name}: ") and "\n" not in body["hint"]
    assert len(body["detail"]) < 300


def test_query_bounds_admit_every_storable_step(quick: tuple[Path, str]) -> None:
    path, run_id = quick
    client = TestClient(create_app(path), base_url=LOCAL_URL)
    url = f"/api/runs/{run_id}/metrics"
    everything = client.get(url, params={"measure": MEASURE, "since_step": -1}).json()
    assert everything["steps"] == expected_metrics(path, run_id, MEASURE)["steps"]
    last = client.get(url, params={"measure": MEASURE, "since_step": 2**63 - 1})
    assert last.status_code == 200 and last.json()["steps"] == []


def test_pages_refuse_absurd_queries_with_a_page(quick: tuple[Path, str]) -> None:
    path, run_id = quick
    client = TestClient(create_app(path), base_url=LOCAL_URL, raise_server_exceptions=False)
    long_measure = client.get(f"/runs/{run_id}", params={"measure": "m" * 1001})
    assert long_measure.status_code == 422 and "measure: a measure name" in long_measure.text
    empty_measure = client.get(f"/runs/{run_id}", params={"measure": ""})
    assert empty_measure.status_code == 200  # the default measure, as for an unknown one
    too_many = client.get("/compare", params={"runs": [f"r{i}" for i in range(101)]})
    assert too_many.status_code == 422 and "at most 100 runs" in too_many.text
    assert "Traceback" not in too_many.text


# Values a careless user or an attacker may send, by kind (a raw "%00" in a path sends NUL).
HOSTILE_PATHS = [
    "", " ", "..", "../..", "../../etc/passwd", "%2e%2e/", "%2e%2e%2f%2e%2e%2f", "..\\..\\", ".",
    "/", "//", "?", "#", "&", "=", "%", "%25", "%00x", "/etc/passwd", "static/../../app.py",
]
HOSTILE_TEXTS = [
    "_", "*", "'", '"', "' OR 1=1 --", "'; DROP TABLE runs; --", "<script>alert(1)</script>",
    "{}", "[]", "null", "true", "\t\r\n\x0b\x0c\x1b\x7f", "\u202e\u200b\ufeff", "é", "日本語",
    "𝔘𝔫𝔦", "\U0001f600" * 50, "x" * 5000, "-" * 300,
]
HOSTILE_NUMBERS = [
    "0", "-1", "-2", "1.5", "nan", "1e308", "0x10", str(2**63 - 1), str(2**63), str(-(2**63)),
    "-99999999999999999999999", "9" * 400,
]
HOSTILE = HOSTILE_PATHS + HOSTILE_TEXTS + HOSTILE_NUMBERS


def fuzz_store(quick: tuple[Path, str], folder: Path) -> tuple[Path, dict[str, list[str]]]:
    """A copy of the quickstart store plus a run of separation rows and a trajectory-map run;
    returns it with realistic values per parameter name."""
    from learnscope.trajectory.maps import save_map

    source, quick_id = quick
    path = folder / "runs.db"
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy2(f"{source}{suffix}", f"{path}{suffix}")
    with store_mod.open(path) as s:
        separation_id = s.create_run("equisep-mlp", {}, experiment="equisep", total_steps=100)
    for step, rho in ((0, 0.95), (10, 0.85)):
        write_separation(path, separation_id, step, rho)
    with store_mod.open(path) as s:
        map_id = s.create_run("trajectories-demo", {}, experiment="trajectories")
        save_map(s, map_id, synthetic_map())
        s.set_status(map_id, "finished")
    ids = [quick_id, separation_id, map_id]
    refs = ids + [i[:6] for i in ids] + ["equisep-mlp", "trajectories-demo"]
    measures = [r[0] for r in raw_query(path, "SELECT DISTINCT measure FROM metrics")]
    steps = [str(r[0]) for r in raw_query(path, "SELECT DISTINCT step FROM metrics")]
    return path, {"ref": refs, "runs": refs, "measure": measures, "probe": ["separation"],
                  "since_step": steps, "path": ["dashboard.js", "dashboard.css"]}  # fmt: skip


def every_route(app) -> list[tuple[str, list[str], list[str]]]:
    """(path template, path parameters, query parameters) of every route of the app, read
    from its router, so that a new route or parameter is fuzzed without editing the test."""
    routes = []
    for route in app.routes:
        dependant = getattr(route, "dependant", None)
        query = [p.name for p in dependant.query_params] if dependant is not None else []
        routes.append((route.path_format, list(route.param_convertors), query))
    return routes


def test_fuzzed_requests_never_fail_and_never_write(quick: tuple[Path, str], tmp_path: Path):
    import random
    from urllib.parse import quote, urlencode

    path, realistic = fuzz_store(quick, tmp_path)
    files = [Path(f"{path}{suffix}") for suffix in ("", "-wal")]
    before = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in files if f.exists()}
    app = create_app(path)
    routes = every_route(app)
    names = {name for _, params, query in routes for name in params + query}
    assert {"ref", "measure", "since_step", "probe", "runs", "path"} <= names
    assert len(routes) >= 11
    client = TestClient(app, base_url=LOCAL_URL, raise_server_exceptions=False)
    rng = random.Random(1313)

    def realistic_value(name: str) -> str:
        return rng.choice(realistic.get(name) or [""])

    def hostile_value() -> str:
        hostile = rng.choice(HOSTILE)
        return hostile + realistic_value("ref") if rng.random() < 0.1 else hostile

    def url_of(template: str, values: dict[str, str], query: list[tuple[str, str]]) -> str:
        url = template
        for name, raw in values.items():
            # one encoded segment, or raw (so '/', '..' and '%2e' reach the router as sent)
            url = url.replace("{" + name + "}", quote(raw, safe="") if rng.random() < 0.7
                              else quote(raw, safe="/%.?#&="), 1)  # fmt: skip
        return url + ("?" + urlencode(query) if query else "")

    # Every parameter of every route gets hostile values of each kind, the others realistic
    # ones (so the hostile value reaches past the run lookup); then requests with all of them
    # hostile (and an unknown parameter); the routes without parameters twice each.
    requests = []
    for template, path_params, query_params in routes:
        for target in path_params + query_params:
            chosen = (rng.sample(HOSTILE_PATHS, 3) + rng.sample(HOSTILE_TEXTS, 2)
                      + rng.sample(HOSTILE_NUMBERS, 4))  # fmt: skip
            for hostile in chosen:
                values = {n: hostile if n == target else realistic_value(n) for n in path_params}
                query = [(n, hostile if n == target else realistic_value(n))
                         for n in query_params if n == target or rng.random() < 0.5]  # fmt: skip
                requests.append(url_of(template, values, query))
        for _ in range(2 if not path_params + query_params else 4):
            values = {n: hostile_value() for n in path_params}
            query = [(n, hostile_value()) for n in query_params for _ in range(rng.randint(0, 2))]
            query.append((rng.choice(HOSTILE) or "x", hostile_value()))  # unknown parameter
            requests.append(url_of(template, values, query))

    seen: dict[int, int] = {}
    for url in requests:
        response = client.get(url)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (url[:300], response.text[:500])
        assert "Traceback" not in response.text, url[:300]
        if response.status_code >= 400 and response.url.path.startswith("/api/"):
            assert {"error", "detail", "hint", "status"} <= set(response.json()), url[:300]
    assert seen.get(200, 0) >= 20 and seen.get(404, 0) >= 20 and seen.get(422, 0) >= 10, seen
    after = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in files if f.exists()}
    assert after == before  # the dashboard only reads
