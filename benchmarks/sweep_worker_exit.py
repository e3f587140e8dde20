"""Seconds from the last sweep worker's "ended" log line to the sweep's "pool shut down" line.

Runs the 2-worker CLI sweep of tests/test_diagnostics.py N times (default 3) with debug logging:
    .venv/bin/python benchmarks/sweep_worker_exit.py [N]
"""
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, "tests")
from test_diagnostics import log_lines, run_sweep_cli  # noqa: E402

for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
    with tempfile.TemporaryDirectory() as folder:
        job = run_sweep_cli(Path(folder) / "s.db", env={"LEARNSCOPE_LOG": "debug"})
    stamps = {}
    for m in log_lines(job.stderr):
        t = datetime.strptime(m.group(0)[:23], "%Y-%m-%d %H:%M:%S,%f")
        if m["message"].startswith("sweep worker pid") and "ended" in m["message"]:
            stamps["ended"] = t
        if m["message"].startswith("sweep: pool shut down"):
            stamps["shut"] = t
            codes = m["message"].split("exit codes")[1]
    print(f"{(stamps['shut'] - stamps['ended']).total_seconds():.2f} s{codes}", flush=True)
