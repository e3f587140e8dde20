"""Repeat tests/test_distributed.py: do torchrun ranks exit cleanly? (not part of make test)

A rank that aborts at exit fails one run in a few, so one green run proves little: this runs the
file `--runs` times (default 20), every other run with a busy-looping process beside it (a CPU
hog, to shift thread timings as a loaded CI machine does), and prints how many passed. Each
failing run's output is kept under `--logs`.

    .venv/bin/python benchmarks/stress_distributed.py --runs 20
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOG = "while True: pass"


def one_run(loaded: bool) -> tuple[bool, str, float]:
    hog = subprocess.Popen([sys.executable, "-c", HOG]) if loaded else None
    start = time.perf_counter()
    try:
        job = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_distributed.py", "-q", "-x",
             "-p", "no:cacheprovider"],
            cwd=ROOT, capture_output=True, text=True, timeout=900)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return job.returncode == 0, job.stdout + job.stderr, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--logs", type=Path, default=Path("stress-logs"))
    args = parser.parse_args()
    passed = {True: 0, False: 0}
    for index in range(args.runs):
        loaded = index % 2 == 1
        ok, output, seconds = one_run(loaded)
        passed[loaded] += ok
        print(f"run {index + 1:2d} {'with' if loaded else 'no  '} CPU hog: "
              f"{'pass' if ok else 'FAIL'} ({seconds:.0f} s)", flush=True)
        if not ok:
            args.logs.mkdir(parents=True, exist_ok=True)
            (args.logs / f"run-{index + 1}.log").write_text(output)
    loaded_runs = args.runs // 2
    print(f"passed {sum(passed.values())} of {args.runs}: {passed[False]} of "
          f"{args.runs - loaded_runs} quiet, {passed[True]} of {loaded_runs} with a CPU hog")
    sys.exit(0 if sum(passed.values()) == args.runs else 1)


if __name__ == "__main__":
    main()
