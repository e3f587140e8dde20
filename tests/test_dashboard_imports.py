"""What the dashboard imports: beyond FastAPI, numpy and pandas, only the store, the run-health
rules and the trajectory maps of learnscope (no models, training, figures or torch of its own),
checked in a fresh interpreter that serves every page and endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the dashboard extra is not installed")
pytest.importorskip("plotly", reason="the dashboard extra is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

#: What the dashboard may import of learnscope (its own modules aside), with what they import.
ALLOWED = ("learnscope.store", "learnscope.health", "learnscope.trajectory.maps",
           "learnscope.defaults")  # the last: constants only (names of the law's rows)

SERVE_EVERYTHING = """
    import json, sys, warnings
    warnings.simplefilter("ignore")
    import numpy as np
    import learnscope.store as store_mod
    for name in {allowed!r}:
        __import__(name)
    before = set(sys.modules)
    from learnscope.dashboard import create_app
    from learnscope.trajectory.maps import TrajectoryMap
    with store_mod.open("runs.db") as store:
        run = store.create_run("shown", {{}}, total_steps=4)
        store.write_measurement(run, 0, 0, "separation", [
            ("fc1", 1, "fuzziness", 1.0), ("fc2", 2, "fuzziness", 0.5), ("law", -1, "law_rho", 0.5),
        ])
    from starlette.testclient import TestClient
    app = create_app("runs.db")
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    statuses = {{}}
    for route in app.routes:
        path = getattr(route, "path", "")
        if path == "/static":
            path = "/static/dashboard.js"
        url = path.replace("{{ref}}", run)
        if path == "/api/compare":  # it needs runs and a measure
            url += "?runs=" + run + "&measure=fuzziness"
        statuses[url] = client.get(url).status_code
    added = sorted(set(sys.modules) - before)
    print(json.dumps({{"run": run, "statuses": statuses, "added": added}}))
"""


def test_serving_every_route_imports_nothing_beyond_the_store_health_and_maps(
    tmp_path: Path,
) -> None:
    code = textwrap.dedent(SERVE_EVERYTHING).format(allowed=ALLOWED)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    # every route answered (the trajectory endpoint: 404, the run has no map)
    assert len(found["statuses"]) >= 11
    failed = {url: code for url, code in found["statuses"].items() if code != 200}
    assert failed == {f"/api/runs/{found['run']}/trajectories": 404}
    added = found["added"]
    learnscope_added = [m for m in added if m.startswith("learnscope.")]
    assert [m for m in learnscope_added if not m.startswith("learnscope.dashboard")] == []
    assert [m for m in added if m.split(".")[0] == "torch"] == []
