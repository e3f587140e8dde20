"""What importing learnscope costs: the package root and the store load no torch (each checked in
a fresh interpreter, since this one has torch loaded already), and the dashboard serves its run
list without it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

import learnscope as ls


def _fresh(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a new interpreter (cwd ``tmp_path``); it prints one JSON line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["learnscope", "learnscope.store", "learnscope.store.db"])
def test_importing_the_package_or_the_store_loads_no_torch(module: str, tmp_path: Path) -> None:
    loaded = _fresh(f"""
        import json, sys
        import {module}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "torch")))
    """, tmp_path)
    assert loaded == []


def test_the_store_works_without_torch(tmp_path: Path) -> None:
    """Writing and reading a run (metrics and snapshots) needs numpy and pandas, not torch."""
    found = _fresh("""
        import json, sys
        import numpy as np
        import learnscope.store as store_mod
        with store_mod.open("runs.db") as store:
            run = store.create_run("r", {"lr": 0.1}, total_steps=2)
            store.write_measurement(run, 1, 0, "w", [("model", 0, "loss", 0.5)],
                                    snapshots={"all": np.arange(3.0)})
            values = store.metrics(run)["value"].tolist()
            snapshot = store.snapshots(run).array().tolist()
        print(json.dumps({"values": values, "snapshot": snapshot, "torch": "torch" in sys.modules}))
    """, tmp_path)
    assert found == {"values": [0.5], "snapshot": [[0.0, 1.0, 2.0]], "torch": False}


def test_the_dashboard_serves_runs_without_torch(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")  # Starlette's TestClient
    found = _fresh("""
        import json, sys
        import learnscope.store as store_mod
        with store_mod.open("runs.db") as store:
            run = store.create_run("shown", {}, total_steps=4)
            store.write_measurement(run, 0, 0, "loss", [("model", 0, "loss", 1.0)])
        from learnscope.dashboard.app import create_app
        from starlette.testclient import TestClient
        response = TestClient(create_app("runs.db"), base_url="http://127.0.0.1").get("/api/runs")
        print(json.dumps({"status": response.status_code, "body": response.text,
                          "torch": "torch" in sys.modules}))
    """, tmp_path)
    assert found["status"] == 200
    assert "shown" in found["body"]
    assert found["torch"] is False


def test_lazy_names_are_the_documented_objects() -> None:
    from learnscope.patterns import ActivationPatterns
    from learnscope.scope import Scope
    from learnscope.train.schedules import every
    from learnscope.trajectory.probe import Weights

    assert ls.Scope is Scope and ls.ActivationPatterns is ActivationPatterns
    assert ls.every is every and ls.Weights is Weights
    assert set(ls.__all__) <= set(dir(ls))
    for name in ls.__all__:
        assert getattr(ls, name) is not None
    assert ls.separation.__name__ == "learnscope.separation"  # any submodule, on first use
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        ls.no_such_name  # noqa: B018


def test_the_version_is_the_package_metadata() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = next(line.split('"')[1] for line in pyproject.read_text().splitlines()
                    if line.startswith("version = "))
    assert ls.__version__ == metadata.version("learnscope") == declared
