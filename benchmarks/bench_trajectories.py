"""Time the weight-trajectory projections (learnscope.trajectory.projections) on real snapshots.

Snapshots: 5 MLPs 64-300-250-10 (97,260 parameters; seeds 0-4) trained with SGD (lr 0.05,
momentum 0.9, batch 64) on scikit-learn's digits (1,797 images, pixels / 16), the flattened
parameters (torch.nn.utils.parameters_to_vector) taken at initialisation and every 3 steps:
100 snapshots per network, 500 x 97,260 float32 (194 MB) in all. A sixth network (seed 5) gives
100 new snapshots for the transform of unseen data.

Cases, interleaved in every repeat (for r in repeats: for case in cases) so that drift hits all
alike, medians reported:
  pca-full / pca-randomized / pca-incremental   PCAProjection(solver=...), 2 components
  autoencoder        AutoencoderProjection() with its defaults: span coordinates (d > n, so the
                     network is 499-256-64-2 on the snapshots' principal coordinates), early
                     stopping (patience 50, up to 1,000 epochs); --ae-epochs N instead trains N
                     epochs without early stopping; --ae-raw trains on the raw 97,260 values
                     (span=False)
  som                SOMProjection() with its defaults (11 x 11 grid, 5,500 updates)
  autoencoder-som    make_projection("autoencoder-som"): the autoencoder to 32 dims, then a SOM
  autoencoder-tsne   make_projection("autoencoder-tsne"): the autoencoder to 32 dims, then t-SNE
  tsne               TSNEProjection() (openTSNE, perplexity 30, exact neighbours below 1,000)
  umap               UMAPProjection() (numba compilation is paid once in a warm-up, not timed)
Columns: fit (on the 500 snapshots), transform of those 500 (t-SNE / UMAP: the fitted embedding,
recognised by a hash), fit + transform, transform of 100 unseen snapshots, and the peak RSS growth
during the case (VmHWM reset through /proc/self/clear_refs before each case; the largest over
the repeats).

    python benchmarks/bench_trajectories.py [--repeats 3] [--ae-epochs N] [--ae-raw] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from learnscope.trajectory.projections import (
    AutoencoderProjection,
    PCAProjection,
    SOMProjection,
    TSNEProjection,
    UMAPProjection,
    make_projection,
)

SIZES = (64, 300, 250, 10)


def trajectory(seed: int, snapshots: int = 100, every: int = 3) -> np.ndarray:
    """Flattened parameters of one MLP at init and every `every` SGD steps on digits."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    out = np.empty((snapshots, sum(p.numel() for p in model.parameters())), dtype=np.float32)
    order, position = torch.randperm(len(x), generator=generator), 0
    for k in range(snapshots):
        if k:
            for _ in range(every):
                if position + 64 > len(x):
                    order, position = torch.randperm(len(x), generator=generator), 0
                batch = order[position:position + 64]
                position += 64
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
        out[k] = nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    return out


def cases(ae_epochs: int | None, ae_raw: bool = False) -> dict[str, Callable[[], object]]:
    ae: dict[str, object] = {} if ae_epochs is None else {"epochs": ae_epochs, "patience": None}
    if ae_raw:
        ae["span"] = False
    nested = {f"autoencoderprojection__{k}": v for k, v in ae.items()}
    return {
        "pca-full": lambda: PCAProjection(solver="full"),
        "pca-randomized": lambda: PCAProjection(solver="randomized"),
        "pca-incremental": lambda: PCAProjection(solver="incremental"),
        "autoencoder": lambda: AutoencoderProjection(**ae),
        "som": lambda: SOMProjection(),
        "autoencoder-som": lambda: make_projection("autoencoder-som", **nested),
        "autoencoder-tsne": lambda: make_projection("autoencoder-tsne", **nested),
        "tsne": lambda: TSNEProjection(),
        "umap": lambda: UMAPProjection(),
    }


def status_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ae-epochs", type=int, default=None,
                        help="train the autoencoder this many epochs, no early stopping")
    parser.add_argument("--ae-raw", action="store_true",
                        help="autoencoder on the raw parameter values (span=False)")
    parser.add_argument("--only", action="append", help="run only these cases (repeatable)")
    parser.add_argument("--json", default=None, help="also write the raw timings here")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)

    start = time.perf_counter()
    X = np.concatenate([trajectory(seed) for seed in range(5)])
    unseen = trajectory(5)
    made = time.perf_counter() - start
    start = time.perf_counter()
    warm = UMAPProjection().fit(X[:40, :500])
    warm.transform(X[40:50, :500])
    warmup = time.perf_counter() - start

    todo = cases(args.ae_epochs, args.ae_raw)
    if args.only:
        todo = {name: todo[name] for name in args.only}
    columns = ("fit", "transform", "total", "unseen", "peak")
    results: dict[str, dict[str, list[float]]] = {
        name: {c: [] for c in columns} for name in todo
    }
    for _ in range(args.repeats):
        for name, make in todo.items():
            estimator = make()
            can_reset = reset_peak()
            before = status_mib("VmRSS")
            t0 = time.perf_counter()
            estimator.fit(X)
            t1 = time.perf_counter()
            out = estimator.transform(X)
            t2 = time.perf_counter()
            estimator.transform(unseen)
            t3 = time.perf_counter()
            assert out.shape == (len(X), 2)
            peak = status_mib("VmHWM") - before if can_reset else float("nan")
            if name == "autoencoder":
                results[name].setdefault("epochs", []).append(estimator.n_epochs_)
            for column, value in zip(columns, (t1 - t0, t2 - t1, t2 - t0, t3 - t2, peak),
                                     strict=True):
                results[name][column].append(value)
            del estimator, out

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, X = {X.shape[0]} x {X.shape[1]} "
          f"float32, {args.repeats} interleaved repeats, autoencoder "
          f"{'early stopping' if args.ae_epochs is None else f'{args.ae_epochs} epochs'}"
          f"{' on raw values' if args.ae_raw else ''}; "
          f"snapshots made in {made:.1f} s, UMAP warm-up (numba compilation) {warmup:.1f} s")
    print("| projection | fit s | transform 500 s | fit + transform s | transform 100 unseen s "
          "| peak RSS growth MiB |")
    print("|---|---|---|---|---|---|")
    for name, values in results.items():
        med = {c: statistics.median(v) for c, v in values.items() if c in columns}
        print(f"| {name} | {med['fit']:.2f} | {med['transform']:.2f} | {med['total']:.2f} | "
              f"{med['unseen']:.2f} | {max(values['peak']):.0f} |")
    if "autoencoder" in results and "epochs" in results["autoencoder"]:
        epochs = statistics.median(results["autoencoder"]["epochs"])
        per_epoch = statistics.median(results["autoencoder"]["fit"]) / epochs
        print(f"\nautoencoder: median {epochs:.0f} epochs, {per_epoch:.3f} s per epoch "
              "(400 training + 100 validation rows)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"shape": list(X.shape), "repeats": args.repeats,
                       "ae_epochs": args.ae_epochs, "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "umap_warmup_s": warmup,
                       "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
