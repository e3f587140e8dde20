"""What one activation-pattern measurement costs, stage by stage, and how it grows.

Stages of a measurement pass, each timed on its own (synchronously, so they add up; the real pass
overlaps host counting with the forward pass on a background thread):
  forward    plain no-grad forward pass over all batches (BatchNorm in train mode, frozen copy)
  packing    learnscope.patterns.pack_keys: activation inputs -> int64 keys, on their device
  transfer   the keys to the host (`.cpu().numpy()`); on the CPU this is a zero-copy view: none
  count-np   learnscope's NumPy counter (PatternCounter.add per batch, then result())
  count-t    learnscope's torch counter on the keys' device (DevicePatternCounter; result()
             includes bringing the final tables to the host)
  merge-W    the cross-rank reduction of today's gather merge, simulated in one process: the
             batches are split round-robin over W shards (as `sharded()` does), each counted on
             its own, and merge-W is the time of PatternCounts.from_tables over the W shards'
             tables (what every rank computes after the all-gather; the all-gather's transfer
             itself is measured by bench_distributed.py); "gathered MiB" is what each rank
             receives: (W - 1) x the longest shard's padded table, summed over layers.
The merged tables are checked equal to the single counter's.

Part 1 (always): learnscope.models.create("resnet20") over N CIFAR-shaped inputs, per layer
width (16 / 32 / 64 channels) and in all, median of --repeats instrumented passes, with a
projection to --project-inputs inputs (default 50,000, the paper's CIFAR-10 training set) that
scales every stage linearly with the inputs (marked as projected; the sweep shows how far the
per-key cost stays constant).
Part 2 (--sweep): a plain conv net (stride-2 stem to 16x16, then L x [BN, ReLU, conv3x3],
width d) over inputs {512, 1024, 2048} (L 4, d 32), layers {2, 4, 8} (N 1024, d 32) and width
{16, 32, 64, 128} (N 1024, L 4), one instrumented pass each.

    python benchmarks/bench_stages.py [--device cpu|cuda] [--inputs 2048] [--repeats 3]
        [--labels] [--sweep] [--project-inputs 50000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict
from functools import partial

import numpy as np
import torch
from torch import nn

import learnscope as ls
from learnscope.measurement import measurement_copy
from learnscope.patterns import DevicePatternCounter, PatternCounter, PatternCounts, PatternLayout
from learnscope.patterns.keys import pack_keys

WORLDS = (2, 4)
STAGES = ("packing", "transfer", "count-np", "count-t", *(f"merge-{w}" for w in WORLDS))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StageTimer:
    """Counts every ReLU input of a model with both backends (and per shard), timing each stage."""

    def __init__(self, model: nn.Module, device: torch.device, labelled: bool) -> None:
        self.frozen = measurement_copy(model, "train")
        self.device = device
        self.labelled = labelled
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.layers: dict[str, dict] = {}
        self.batch = 0
        self.batch_labels: torch.Tensor | None = None
        self.hooks = [m.register_forward_pre_hook(self._hook(name))
                      for name, m in self.frozen.named_modules() if isinstance(m, nn.ReLU)]

    def _timed(self, name: str, stage: str, fn):
        sync(self.device)
        start = time.perf_counter()
        result = fn()
        sync(self.device)
        self.seconds[name][stage] += time.perf_counter() - start
        return result

    def _hook(self, name: str):
        def hook(module, args) -> None:
            z = args[0].detach()
            layer = self.layers.get(name)
            if layer is None:
                layout = PatternLayout(int(z.shape[1]), (0.0,))
                layer = self.layers[name] = {
                    "layout": layout, "workspace": {}, "keys": 0,
                    "numpy": PatternCounter(layout, labelled=self.labelled),
                    "torch": DevicePatternCounter(layout, labelled=self.labelled,
                                                  device=z.device),
                    "shards": {w: [PatternCounter(layout, labelled=self.labelled)
                                   for _ in range(w)] for w in WORLDS},
                }
            keys = self._timed(name, "packing",
                               lambda: pack_keys(z, layer["layout"], 1, layer["workspace"]))
            host = self._timed(name, "transfer", lambda: keys.cpu().numpy())
            labels = host_labels = None
            if self.labelled:
                per_sample = keys.shape[0] // z.shape[0]
                labels = self.batch_labels.to(z.device).repeat_interleave(per_sample)
                host_labels = labels.cpu().numpy()
            layer["keys"] += keys.shape[0]
            self._timed(name, "count-np", lambda: layer["numpy"].add(host, host_labels))
            self._timed(name, "count-t", lambda: layer["torch"].add(keys, labels))
            for world, shards in layer["shards"].items():
                shards[self.batch % world].add(host, host_labels)

        return hook

    def run(self, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        with torch.no_grad():
            for self.batch, start in enumerate(range(0, inputs.shape[0], batch_size)):
                self.batch_labels = labels[start : start + batch_size]
                self.frozen(inputs[start : start + batch_size])
        for hook in self.hooks:
            hook.remove()
        for name, layer in self.layers.items():
            whole = self._timed(name, "count-np", layer["numpy"].result)
            on_device = self._timed(name, "count-t", layer["torch"].result)
            if not np.array_equal(whole.to_rows(), on_device.to_rows()):
                raise AssertionError(f"{name}: the torch counter disagrees with the NumPy one")
            layer["distinct"] = whole.distinct
            for world, shards in layer["shards"].items():
                tables = [s.result().to_rows() for s in shards]
                merged = self._timed(name, f"merge-{world}",
                                     partial(PatternCounts.from_tables, whole.kind(), tables))
                if not np.array_equal(merged.to_rows(), whole.to_rows()):
                    raise AssertionError(f"{name}: merging {world} shards changed the counts")
                longest = max(t.shape[0] for t in tables) * tables[0].shape[1] * 8
                layer[f"gathered-{world}"] = longest * (world - 1)


def forward_seconds(model: nn.Module, inputs: torch.Tensor, batch_size: int,
                    device: torch.device) -> float:
    frozen = measurement_copy(model, "train")
    sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        for begin in range(0, inputs.shape[0], batch_size):
            frozen(inputs[begin : begin + batch_size])
    sync(device)
    return time.perf_counter() - start


def measure(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, args,
            device: torch.device) -> tuple[float, StageTimer]:
    """Forward seconds and an instrumented pass's stage timer (after a small warm-up)."""
    forward_seconds(model, inputs[: args.batch_size], args.batch_size, device)
    StageTimer(model, device, args.labels).run(inputs[: args.batch_size],
                                               labels[: args.batch_size], args.batch_size)
    forward = forward_seconds(model, inputs, args.batch_size, device)
    timer = StageTimer(model, device, args.labels)
    timer.run(inputs, labels, args.batch_size)
    return forward, timer


class PlainConvNet(nn.Module):
    """Stride-2 stem to 16x16, then `layers` x [BN, ReLU, conv3x3], all `width` channels."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 2, 1, bias=False)
        self.body = nn.Sequential(*[
            nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(),
                          nn.Conv2d(width, width, 3, 1, 1, bias=False))
            for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))


def cifar_like(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return (torch.randn(n, 3, 32, 32, generator=g).to(device),
            torch.randint(0, 10, (n,), generator=g).to(device))


def resnet20_part(args, device: torch.device) -> None:
    torch.manual_seed(0)
    model = ls.models.create("resnet20", num_classes=10).to(device)
    inputs, labels = cifar_like(args.inputs, device)
    runs = [measure(model, inputs, labels, args, device) for _ in range(args.repeats)]
    forward = statistics.median(f for f, _ in runs)
    layers = runs[0][1].layers
    groups: dict[str, list[str]] = defaultdict(list)
    for name, layer in layers.items():
        groups[f"width {layer['layout'].width}"].append(name)
    groups["all"] = list(layers)
    keys_all = sum(layer["keys"] for layer in layers.values())

    def stage(names: list[str], name: str) -> float:
        return statistics.median(sum(t.seconds[n][name] for n in names) for _, t in runs)

    print(f"resnet20, {args.inputs:,} inputs, batch {args.batch_size}, labels "
          f"{'on' if args.labels else 'off'}, device {device}, torch threads "
          f"{torch.get_num_threads()}, median of {args.repeats} passes; forward pass "
          f"{forward:.3f} s ({keys_all / forward / 1e6:.1f} M keys/s of all layers)")
    print("| layers | count | keys (M) | distinct (M) | "
          + " | ".join(f"{s} s" for s in STAGES)
          + " | packing M keys/s | count-np M keys/s | count-t M keys/s | gathered MiB per rank "
            "(W=2 / W=4) |")
    print("|---|---|---|---|" + "---|" * len(STAGES) + "---|---|---|---|")
    for group, names in groups.items():
        keys = sum(layers[n]["keys"] for n in names)
        seconds = {s: stage(names, s) for s in STAGES}
        gathered = " / ".join(f"{sum(layers[n][f'gathered-{w}'] for n in names) / 2**20:.1f}"
                              for w in WORLDS)
        print(f"| {group} | {len(names)} | {keys / 1e6:.2f} | "
              f"{sum(layers[n]['distinct'] for n in names) / 1e6:.3f} | "
              + " | ".join(f"{seconds[s]:.3f}" for s in STAGES)
              + f" | {keys / seconds['packing'] / 1e6:.0f} | {keys / seconds['count-np'] / 1e6:.0f}"
              f" | {keys / seconds['count-t'] / 1e6:.0f} | {gathered} |")
    scale = args.project_inputs / args.inputs
    every = {s: stage(groups["all"], s) for s in STAGES}
    print(f"\nprojected (linear in inputs, x{scale:.2f}) to {args.project_inputs:,} inputs, "
          f"{keys_all * scale / 1e6:.1f} M keys, device {device}: forward "
          f"{forward * scale:.1f} s, " + ", ".join(f"{s} {every[s] * scale:.1f} s"
                                                    for s in STAGES)
          + " (counting and merging grow with the distinct patterns, which grow less than "
            "linearly where a layer's patterns saturate: there the projection is an upper bound)")
    for backend in ("count-np", "count-t"):
        total = forward + every["packing"] + every["transfer"] + every[backend]
        print(f"  with {backend}: forward + packing + transfer + counting = {total * scale:.1f} s "
              f"per measurement ({total / forward:.2f}x the forward pass, stages run one after "
              "another)")


def sweep_part(args, device: torch.device) -> None:
    configs = [(n, 4, 32) for n in (512, 1024, 2048)]
    configs += [(1024, layers, 32) for layers in (2, 8)]
    configs += [(1024, 4, width) for width in (16, 64, 128)]
    print("\nplain conv net (16x16 positions), one instrumented pass each")
    print("| inputs | layers | width | keys (M) | distinct (M) | forward s | "
          + " | ".join(f"{s} s" for s in STAGES)
          + " | packing ns/key | count-np ns/key | count-t ns/key |")
    print("|---|---|---|---|---|---|" + "---|" * len(STAGES) + "---|---|---|")
    sweep_args = argparse.Namespace(**vars(args))
    for n, layers, width in sorted(configs, key=lambda c: (c[2], c[1], c[0])):
        torch.manual_seed(0)
        model = PlainConvNet(width, layers).to(device)
        inputs, labels = cifar_like(n, device)
        forward, timer = measure(model, inputs, labels, sweep_args, device)
        keys = sum(layer["keys"] for layer in timer.layers.values())
        distinct = sum(layer["distinct"] for layer in timer.layers.values())
        seconds = {s: sum(timer.seconds[name][s] for name in timer.layers) for s in STAGES}
        print(f"| {n} | {layers} | {width} | {keys / 1e6:.2f} | {distinct / 1e6:.3f} | "
              f"{forward:.3f} | " + " | ".join(f"{seconds[s]:.3f}" for s in STAGES)
              + f" | {seconds['packing'] / keys * 1e9:.1f} | "
              f"{seconds['count-np'] / keys * 1e9:.1f} | {seconds['count-t'] / keys * 1e9:.1f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--inputs", type=int, default=2048, help="ResNet-20 part: inputs")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="ResNet-20 part: passes")
    parser.add_argument("--labels", action="store_true", help="count (pattern, label) rows")
    parser.add_argument("--sweep", action="store_true", help="also run the inputs / layers / "
                        "width sweep on a plain conv net")
    parser.add_argument("--project-inputs", type=int, default=50_000)
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's adaptive malloc thresholds (noisier timings)")
    args = parser.parse_args()
    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise SystemExit(f"--device {args.device!r}: use cpu or cuda (cuda:N for another GPU)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch {torch.__version__} sees no CUDA device "
                         "here (torch.cuda.is_available() is False); run on a machine with a GPU "
                         "and a CUDA build of torch, or use --device cpu")
    if min(args.inputs, args.batch_size, args.repeats, args.project_inputs) < 1:
        raise SystemExit("--inputs, --batch-size, --repeats and --project-inputs must be >= 1")
    if not args.default_malloc and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 28),
                   MALLOC_TRIM_THRESHOLD_=str(1 << 30))
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    device = torch.device(args.device)
    resnet20_part(args, device)
    if args.sweep:
        sweep_part(args, device)


if __name__ == "__main__":
    main()
