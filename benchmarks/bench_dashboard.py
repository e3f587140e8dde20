"""The dashboard on a big store: 200 runs x 19 layers x 3,000 measured steps (issue 16, point 6).

Generates the store with the store API (``Store.write_measurements``, one transaction per run:
per step 19 per-layer ``entropy`` rows; a final ``test_accuracy``; 5% of the runs failed with a
stored error, 5% at chance level; four experiments; configs differing in net, width, lr and
seed), unless ``--store`` already holds it. Then times, as medians of ``--repeats`` requests
answered in-process (Starlette's TestClient, so no network and no browser):

  run list      GET / (the page, with the table's first drawing in it), GET /api/run-table
                (what static/runs_table.js asks for when filtering or polling),
                GET /api/runs
  run page      GET /runs/RUN, GET /api/runs/RUN, GET /api/runs/RUN/metrics (every step of
                every layer, and thinned to 1,000 steps on the server as the page asks for its
                first plot), and the live update a page polls for,
                GET /api/runs/RUN/metrics?since_step=LAST-1 (only the new rows)
  compare       GET /api/compare for 3 runs (thinned to 2,000 points per line on the server)

and, with the system Chromium and Playwright present, in a headless browser against a
dashboard served by uvicorn: the seconds from opening ``/`` until the table is drawn, and
from opening a run page until its first plot (the layer x step heatmap) is drawn.

    OMP_NUM_THREADS=1 python benchmarks/bench_dashboard.py [--runs 200] [--layers 19]
        [--steps 3000] [--store PATH] [--repeats 5] [--no-browser]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def generate(path: Path, runs: int, layers: int, steps: int) -> list[str]:
    """Writes the store; returns the run ids in creation order."""
    import numpy as np

    import learnscope.store as store_mod

    rng = np.random.default_rng(0)
    nets = ("mlp", "cnn", "resnet", "vit")
    ids = []
    with store_mod.open(path) as store:
        for i in range(runs):
            net = nets[i % 4]
            config = {"net": net, "width": [64, 128][i // 4 % 2], "lr": [0.1, 0.01][i // 8 % 2],
                      "seed": i // 16, "num_classes": 10, "epochs": 30}  # fmt: skip
            run = store.create_run(f"{net}-w{config['width']}-lr{config['lr']}-s{config['seed']}",
                                   config, experiment=f"sweep-{i % 4}", total_steps=steps - 1)
            base = rng.uniform(1.0, 4.0, size=layers)
            trend = np.linspace(0.0, 1.0, steps)
            values = base[None, :] + np.outer(trend, np.linspace(0.5, 2.0, layers))
            names = [f"{net}.layer{j}" for j in range(layers)]
            rows = [(step, step / 100, "patterns",
                     [(names[j], j, "entropy", float(values[step, j])) for j in range(layers)])
                    for step in range(steps)]  # fmt: skip
            accuracy = 0.1 if i % 20 == 7 else float(rng.uniform(0.6, 0.95))
            rows[-1][3].append(("model", -1, "test_accuracy", accuracy))
            store.write_measurements(run, rows)
            if i % 20 == 13:
                store.set_status(run, "failed", error="Traceback ...\nRuntimeError: out of memory")
            else:
                store.set_status(run, "finished")
            ids.append(run)
            if (i + 1) % 20 == 0:
                print(f"  generated {i + 1}/{runs} runs", file=sys.stderr, flush=True)
    return ids


def timed(client, url: str, repeats: int) -> dict[str, float]:
    """Median seconds and bytes of GET url (one untimed warm-up request first)."""
    response = client.get(url)
    assert response.status_code == 200, (url, response.text[:300])
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.get(url)
        seconds.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.text[:300])
    return {"seconds": statistics.median(seconds), "bytes": len(response.content)}


def browser_times(path: Path, run_id: str, repeats: int) -> dict[str, float]:
    """Median seconds from opening a page in headless Chromium to its first drawing."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    from learnscope.dashboard import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(path, poll_seconds=30),
                                           log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    out: dict[str, list[float]] = {"run list drawn": [], "run page first plot drawn": []}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            for i in range(repeats + 1):  # the first round warms caches up
                start = time.perf_counter()
                page.goto(base + "/")
                page.wait_for_function("() => (window.learnscope.tableDraws || 0) > 0")
                list_s = time.perf_counter() - start
                start = time.perf_counter()
                page.goto(f"{base}/runs/{run_id}")
                page.wait_for_function("() => { const h = document.getElementById('heatmap');"
                                       " return h && h.data && h.data[0].x.length > 0; }")
                run_s = time.perf_counter() - start
                if i:
                    out["run list drawn"].append(list_s)
                    out["run page first plot drawn"].append(run_s)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    return {name: statistics.median(values) for name, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--layers", type=int, default=19)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--store", type=Path, default=None,
                        help="store to use (generated there when missing)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()

    import learnscope.store as store_mod

    path = args.store or Path(tempfile.mkdtemp()) / "big.db"
    if path.exists():
        with store_mod.open(path) as store:
            ids = list(store.runs()["id"])
        print(f"using {path}: {len(ids)} runs", file=sys.stderr)
    else:
        start = time.perf_counter()
        ids = generate(path, args.runs, args.layers, args.steps)
        print(f"generated {path} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    from learnscope.dashboard import create_app

    client = TestClient(create_app(path), base_url="http://127.0.0.1")
    run_id = ids[len(ids) // 2]
    last = client.get(f"/api/runs/{run_id}").json()["run"]["last_step"]
    three = "&".join(f"runs={r}" for r in ids[:3])
    urls = {
        "GET / (run list page)": "/",
        "GET /api/run-table": "/api/run-table?limit=1000",
        "GET /api/runs": "/api/runs",
        "GET /runs/RUN (run page)": f"/runs/{run_id}",
        "GET /api/runs/RUN": f"/api/runs/{run_id}",
        "GET /api/runs/RUN/metrics (all steps)": f"/api/runs/{run_id}/metrics?measure=entropy",
        "GET /api/runs/RUN/metrics?max_steps=1000 (first plot)":
            f"/api/runs/{run_id}/metrics?measure=entropy&max_steps=1000",
        "GET /api/runs/RUN/metrics?since_step (live update)":
            f"/api/runs/{run_id}/metrics?measure=entropy&since_step={last - 1}",
        "GET /api/compare (3 runs)": f"/api/compare?{three}&measure=entropy&layer=last",
    }
    results = {name: timed(client, url, args.repeats) for name, url in urls.items()}
    browser = {}
    if not args.no_browser and Path(CHROMIUM).exists():
        browser = browser_times(path, run_id, args.repeats)
    report = {
        "store": {"runs": len(ids), "bytes": path.stat().st_size},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "server": results, "browser": browser,
    }
    print(json.dumps(report, indent=2))
    print("\n| request | median s | bytes |\n| --- | --- | --- |")
    for name, value in results.items():
        print(f"| {name} | {value['seconds']:.3f} | {value['bytes']:,} |")
    for name, seconds in browser.items():
        print(f"| Chromium: {name} | {seconds:.3f} | |")


if __name__ == "__main__":
    main()
