"""Bytes a finished run leaves in its artifact folder, and how much of it is the checkpoint.

Trains into a fresh temporary store: the quickstart (both nets, its default settings), the
`early` preset at small scale for resnet20 (`--early-steps` updates, measured after every one),
the first `methods` run at small scale (convnet20 with ReLU, `--methods-epochs` epochs,
measured every epoch, weights kept for the since-final pass) and the first `entropycurve` run at
small scale (resnet8, its 6 epochs, measured 5 times). Then, for every run, it prints
the size of `<store>.artifacts/<run id>/` split into the checkpoint, the kept weights and the
rest, as a Markdown table.

    python benchmarks/artifact_bytes.py [--early-steps 20] [--methods-epochs 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

import learnscope as ls
from learnscope.experiments.presets import execute, expand
from learnscope.experiments.quickstart import run_quickstart

CHECKPOINTS = ("checkpoint.pt", "quickstart-checkpoint.pt")


def folder_bytes(folder: Path) -> dict[str, int]:
    """Bytes of the files under `folder`: checkpoint, kept weights, everything else."""
    sizes = {"checkpoint": 0, "weights": 0, "other": 0}
    for path in folder.rglob("*"):
        if not path.is_file():
            continue
        part = path.relative_to(folder).parts
        kind = ("checkpoint" if part[0] in CHECKPOINTS
                else "weights" if part[0] == "weights" else "other")
        sizes[kind] += path.stat().st_size
    return sizes


def kib(size: int) -> str:
    return f"{size / 1024:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--early-steps", type=int, default=20)
    parser.add_argument("--methods-epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as scratch:
        store = Path(scratch) / "runs" / "learnscope.db"
        run_quickstart(store)
        for spec in (expand("early", "small", models=["resnet20"], steps=args.early_steps)
                     + expand("methods", "small", epochs=args.methods_epochs)[:1]
                     + expand("entropycurve", "small", seeds=[0], models=["resnet"],
                              blocks=[1])):
            execute(spec, store)
        print("| run | status | steps measured | artifact folder KiB | checkpoint KiB "
              "| kept weights KiB | other KiB |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        with ls.store.open(store, read_only=True) as reader:
            for run in reader.runs().itertuples():
                sizes = folder_bytes(reader.artifacts_root / run.id)
                steps = len(reader.measured_steps(run.id, "patterns"))
                print(f"| {run.name} | {run.status} | {steps} | {kib(sum(sizes.values()))} | "
                      f"{kib(sizes['checkpoint'])} | {kib(sizes['weights'])} | "
                      f"{kib(sizes['other'])} |")


if __name__ == "__main__":
    main()
