"""Checkpoint bytes, and bytes written to checkpoints per measurement, small and paper scale.

A run's checkpoint is rewritten at every measurement (and every `checkpoint_every` updates) while
the run can resume, and slimmed once it is finished. This script trains into fresh temporary
stores and records every checkpoint write (file and bytes, as written by the trainer's and the
quickstart's atomic save):

- the quickstart (both nets, its default settings);
- the `early` preset at small scale for resnet20 (`--early-steps` updates, every one measured);
- the `early` preset at paper scale for resnet20 (`--paper-steps` updates, every one measured)
  on CIFAR-10-format folders of synthetic images (`--paper-images`, total training images
  written; the preset keeps 99% for training and measuring, like the paper's 49,500 of 50,000).

For every run it prints the model's state dict bytes, the number of measurements and of
checkpoint writes while the run could resume, the largest of them, the bytes they wrote per
measurement, and the final (slim) checkpoint of the finished run. Run it once per source tree to
compare (`PYTHONPATH=<tree>/src`).

    python benchmarks/checkpoint_bytes.py [--early-steps 10] [--paper-images 5000,10000]
                                          [--paper-steps 1]
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import learnscope as ls
from learnscope.experiments import quickstart
from learnscope.experiments.presets import execute, expand
from learnscope.experiments.quickstart import run_quickstart
from learnscope.train import trainer

CHECKPOINTS = ("checkpoint.pt", "quickstart-checkpoint.pt")
#: (file, bytes, resumable) of every checkpoint write, in order; resumable: with the probes'
#: references (written while the run can resume), else the slim one of a finished run
WRITES: list[tuple[str, int, bool]] = []


def record_checkpoint_writes() -> None:
    """Wrap the trainer's and the quickstart's atomic save to record each checkpoint's bytes."""
    original = trainer._save_atomic

    def save(obj, path: Path) -> None:
        original(obj, path)
        if path.name in CHECKPOINTS:
            WRITES.append((str(path), path.stat().st_size, bool(obj.get("probes"))))

    trainer._save_atomic = save
    quickstart._save_atomic = save


def write_cifar_folder(root: Path, images: int, test_images: int = 100, seed: int = 0) -> None:
    """A CIFAR-10-format folder of synthetic pixels: five training batches holding `images`
    in all, a test batch and the metadata, as the reader expects (uint8 rows of 3,072)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    sizes = [images // 5 + (i < images % 5) for i in range(5)]
    for name, n in [(f"data_batch_{i + 1}", k) for i, k in enumerate(sizes)] + [
            ("test_batch", test_images)]:
        batch = {b"batch_label": name.encode(), b"labels": (np.arange(n) % 10).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    names = [c.encode() for c in ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                  "frog", "horse", "ship", "truck")]
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072}))


def state_dict_bytes(name: str, options: dict) -> int:
    buffer = io.BytesIO()
    torch.save(ls.models.create(name, **options).state_dict(), buffer)
    return buffer.tell()


def mib(size: float) -> str:
    return f"{size / 2**20:,.2f}"


def report(label: str, store: Path, model_bytes: int | None, seconds: float) -> None:
    """One table row per run of `store`, from the writes recorded since the last report."""
    with ls.store.open(store, read_only=True) as reader:
        for run in reader.runs().itertuples():
            folder = reader.artifacts_root / run.id
            writes = [size for path, size, resumable in WRITES
                      if resumable and Path(path).parent == folder]
            measured = len(reader.measured_steps(run.id, "patterns"))
            final = sum((folder / name).stat().st_size for name in CHECKPOINTS
                        if (folder / name).exists())
            largest = max(writes, default=0)
            model = "-" if model_bytes is None else mib(model_bytes)
            print(f"| {label} | {run.name} | {model} | {measured} | {len(writes)} | "
                  f"{mib(largest)} | {mib(sum(writes) / max(measured, 1))} | {mib(final)} | "
                  f"{seconds:,.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--early-steps", type=int, default=10)
    parser.add_argument("--paper-images", default="5000,10000",
                        help="comma-separated training-image counts of the CIFAR folders "
                             "('' for none)")
    parser.add_argument("--paper-steps", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    record_checkpoint_writes()
    print(f"learnscope from {Path(ls.__file__).parent}")
    print("| scale | run | model state dict MiB | measurements | resumable checkpoint writes "
          "| largest checkpoint MiB | checkpoint MiB written per measurement "
          "| final checkpoint MiB | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        start = time.perf_counter()
        run_quickstart(scratch / "quickstart" / "s.db")
        report("small", scratch / "quickstart" / "s.db", None, time.perf_counter() - start)
        (spec,) = expand("early", "small", models=["resnet20"], steps=args.early_steps)
        start = time.perf_counter()
        execute(spec, scratch / "early-small" / "s.db")
        report("small", scratch / "early-small" / "s.db",
               state_dict_bytes(spec.model, spec.model_options), time.perf_counter() - start)
        for images in [int(n) for n in args.paper_images.split(",") if n]:
            root = scratch / f"cifar-{images}"
            write_cifar_folder(root, images)
            os.environ["LEARNSCOPE_DATA"] = str(root)
            (spec,) = expand("early", "paper", models=["resnet20"], steps=args.paper_steps)
            store = scratch / f"early-paper-{images}" / "s.db"
            start = time.perf_counter()
            execute(spec, store)
            report(f"paper, {images:,} images", store,
                   state_dict_bytes(spec.model, spec.model_options), time.perf_counter() - start)
            for path, _, _ in WRITES:  # free the disk for the next size
                Path(path).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
