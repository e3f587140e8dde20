"""Fault injection on a small run: kills, concurrent writers, a full disk, a killed sweep.

Not part of `make test` (it takes minutes); its table goes to benchmarks/RESULTS.md. Every count
in the table must be zero:

1. kill and resume: a run is SIGKILLed at `--kills` random moments, resumed each time by the
   same call, then finished; every stored value is compared with an uninterrupted run of the
   same spec (values missing, duplicated, or different);
2. concurrent writers: 4 processes run 4 different specs into one store at once; each run is
   compared with the same spec run alone;
3. full disk: a run writes into a store on a 3 MiB tmpfs (needs root; skipped otherwise) until
   the disk is full; counted are measurements whose artifact manifest exists without their
   database row, and runs marked finished that are not complete; after the disk is freed, the
   same call resumes and the run is compared with the uninterrupted one;
4. a killed sweep: a 2-worker sweep's parent gets SIGINT, SIGTERM or SIGKILL; counted are
   worker processes alive 15 s later and runs left `running` (not resumable).

    .venv/bin/python benchmarks/faults.py [--kills 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

import learnscope as ls
from learnscope.experiments.presets import RunSpec
from learnscope.store.db import _pid_alive  # zombies count as dead

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "LEARNSCOPE_PROGRESS": "off"}
KEY = ["step", "probe", "layer", "measure"]


def spec(seed: int, steps: int = 240) -> RunSpec:
    """A small MLP on Gaussian clusters, measured every 4 updates (patterns, with counts)."""
    return RunSpec(preset="faults", name=f"faults-mlp-s{seed}", model="mlp",
                   model_options={"hidden": (32, 32)}, dataset="synthetic",
                   data_options={"shape": (64,), "num_samples": 1200, "val_fraction": 0.0},
                   recipe="multistep", recipe_options={"epochs": 40}, seed=seed,
                   max_steps=steps, schedule="every 4", probe_options={"batch_size": 512})


RUN_ONE = textwrap.dedent("""
    import json, sys
    import torch
    from learnscope.experiments.presets import RunSpec, execute
    torch.set_num_threads(1)
    print(execute(RunSpec(**json.loads(sys.argv[2])), sys.argv[1]))
""")


def start(run: RunSpec, store: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RUN_ONE, str(store), json.dumps(asdict(run))],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def finish(run: RunSpec, store: Path) -> int:
    job = start(run, store)
    _, error = job.communicate()
    if job.returncode != 0:
        print(error[-2000:], file=sys.stderr)
    return job.returncode


def values(store: Path, name: str) -> pd.DataFrame:
    with ls.store.open(store, read_only=True) as s:
        runs = s.runs()
        run_id = runs[runs["name"].str.split("~").str[0] == name]["id"].iloc[-1]
        return s.metrics(run=run_id)[KEY + ["value"]]


def compare(got: pd.DataFrame, want: pd.DataFrame) -> dict[str, int]:
    """Counts of values missing from `got`, duplicated in it, and different from `want`."""
    duplicated = int(got.duplicated(KEY).sum())
    merged = want.merge(got.drop_duplicates(KEY), on=KEY, how="left", suffixes=("_want", ""))
    missing = int(merged["value"].isna().sum() - merged["value_want"].isna().sum())
    both = merged.dropna(subset=["value", "value_want"])
    differing = int((both["value"] != both["value_want"]).sum())
    return {"values": len(want), "missing": max(missing, 0), "duplicated": duplicated,
            "differing": differing}


def kill_and_resume(folder: Path, kills: int, rng: random.Random, reference: Path) -> dict:
    store = folder / "killed.db"
    run = spec(0)
    for _ in range(kills):
        job = start(run, store)
        time.sleep(rng.uniform(1.0, 6.0))  # start-up (imports) takes a few seconds of it
        job.send_signal(signal.SIGKILL)
        job.wait()
    rc = finish(run, store)
    return {"check": f"SIGKILL x{kills} then resume", "exit": rc,
            **compare(values(store, run.name), values(reference, run.name))}


def concurrent_writers(folder: Path, reference: Path) -> dict:
    store = folder / "concurrent.db"
    runs = [spec(seed) for seed in range(1, 5)]
    jobs = [start(run, store) for run in runs]
    codes = [job.wait() for job in jobs]
    totals = {"values": 0, "missing": 0, "duplicated": 0, "differing": 0}
    for run in runs:
        for key, count in compare(values(store, run.name), values(reference, run.name)).items():
            totals[key] += count
    return {"check": "4 concurrent writers", "exit": max(codes), **totals}


def full_disk(folder: Path, reference: Path) -> dict | None:
    mount = folder / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs",
                                            str(mount)], capture_output=True).returncode:
        return None
    run = spec(0)
    try:
        store = mount / "s.db"
        rc_full = finish(run, store)
        orphans, unfinished = _manifests_without_rows(store), _finished_but_incomplete(store)
        saved = folder / "moved"
        shutil.copytree(mount, saved)  # free the disk: carry on from the same files elsewhere
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    rc = finish(run, saved / "s.db")
    counts = compare(values(saved / "s.db", run.name), values(reference, run.name))
    return {"check": "full disk, then resume elsewhere", "exit": rc, **counts,
            "manifest without row": orphans, "finished but incomplete": unfinished,
            "note": f"first attempt exit {rc_full}"}


def _manifests_without_rows(store: Path) -> int:
    if not store.exists():
        return 0
    with ls.store.open(store, read_only=True) as s:
        runs = s.runs()
        stored = {(run_id, "patterns", step) for run_id in runs["id"]
                  for step in s.measured_steps(run_id, "patterns")}
    orphans = 0
    for manifest in Path(f"{store.with_suffix('')}.artifacts").glob("*/*/step_*/manifest.json"):
        run_id, probe, step = manifest.parts[-4], manifest.parts[-3], manifest.parts[-2]
        orphans += (run_id, probe, int(step.split("_")[1])) not in stored
    return orphans


def _finished_but_incomplete(store: Path) -> int:
    if not store.exists():
        return 0
    with ls.store.open(store, read_only=True) as s:
        runs = s.runs()
        done = runs[runs["status"] == "finished"]
        return int(sum(s.measured_steps(r, "patterns")[-1:] != [int(r_total)]
                       for r, r_total in zip(done["id"], done["total_steps"], strict=True)))


SWEEP = textwrap.dedent("""
    import json, sys
    from learnscope.experiments.presets import RunSpec
    from learnscope.experiments.sweep import sweep
    if __name__ == "__main__":
        specs = [RunSpec(**s) for s in json.loads(sys.argv[2])]
        sweep(specs, sys.argv[1], workers=2, device="cpu", threads=1)
""")


def killed_sweep(folder: Path, signum: int) -> dict:
    store = folder / f"sweep-{signum}.db"
    runs = [replace(spec(seed, steps=100_000), name=f"sweep-s{seed}") for seed in (7, 8, 9)]
    # SIGINT as a terminal's Ctrl-C delivers it: a shell starts background jobs with SIGINT
    # ignored, and Python then never turns it into KeyboardInterrupt (nothing to stop)
    parent = subprocess.Popen([sys.executable, "-c", SWEEP, str(store),
                               json.dumps([asdict(r) for r in runs])], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    workers: list[int] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.5)
        try:
            with ls.store.open(store, read_only=True) as s:
                table = s.runs()
        except Exception:  # noqa: BLE001 - not created yet
            continue
        table = table[table["last_step"].fillna(0) >= 4]
        workers = [int(pid) for pid in table["pid"].dropna()]
    parent.send_signal(signum)
    stopped = time.monotonic()
    parent.wait(timeout=300)  # generous: a loaded machine is slow to stop runs and exit
    seconds = time.monotonic() - stopped
    time.sleep(15)
    alive = sum(_pid_alive(pid) for pid in workers)
    with ls.store.open(store, read_only=True) as s:
        table = s.runs()
    stuck = int((table["status"] == "running").sum())
    return {"check": f"sweep parent {signal.Signals(signum).name}", "exit": parent.returncode,
            "parent exit s": round(seconds, 1), "workers alive after 15 s": alive,
            "runs left running": stuck}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="learnscope-faults-"))
    try:
        reference = folder / "reference.db"
        for seed in range(5):
            assert finish(spec(seed), reference) == 0, "the reference run failed"
        rows = [kill_and_resume(folder, args.kills, rng, reference),
                concurrent_writers(folder, reference)]
        disk = full_disk(folder, reference)
        rows.append(disk or {"check": "full disk (skipped: needs root to mount a tmpfs)"})
        rows += [killed_sweep(folder, s) for s in (signal.SIGINT, signal.SIGTERM,
                                                   signal.SIGKILL)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    table = pd.DataFrame(rows).set_index("check")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.fillna("").to_string())
    bad = ["missing", "duplicated", "differing", "manifest without row",
           "finished but incomplete", "workers alive after 15 s", "runs left running"]
    failures = table[[c for c in bad if c in table]].fillna(0).to_numpy().sum()
    sys.exit(0 if failures == 0 else 1)


if __name__ == "__main__":
    main()
