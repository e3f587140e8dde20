"""The numbers of the claims table in docs/reproducing.md, computed from stores of preset runs.

Reads finished runs of the presets `early`, `entropycurve`, `methods` (activation patterns) and
`equisep` (separation) from one or more stores and prints, per claim of the activation-pattern
paper and of the equi-separation paper, the number measured at small scale, as a Markdown table,
plus the share of saturated (layer, step) cells (distinct/E > 0.95) per preset and the final
test accuracy of every run. Nothing is hard-coded: re-run the presets, then this script.

    learnscope run early --store runs/small.db      # and entropycurve, methods, equisep
    learnscope run equisep --models fnn_nobn,fnn_linear --optimizers adam --store runs/small.db
    python benchmarks/claims_table.py runs/small.db [more.db ...]

What each number is (layers are numbered in forward order; "mean" is over runs):

- rel. entropy vs depth at init: entropycurve, step 0: Pearson r of (layer index, rel_entropy)
  per run; the mean r per family and the share of runs with r > 0.
- drop in the first updates: entropycurve: mean over layers of rel_entropy after the second
  measured update (0.1 epoch) minus at step 0, per family (mean over runs).
- initial patterns kept: early, last step: mean over layers of weighted_jaccard_since_init.
- changes concentrate early: early: turnover (added + removed since the last measurement) /
  distinct, mean over layers, averaged over updates 1-10 and over the last 50 updates.
- bottom-up convergence: methods, middle epoch: Spearman correlation of (layer index,
  weighted_jaccard_since_final) per run (negative: lower layers closer to their final patterns).
- ResNet zigzag: entropycurve ResNets at 0.1 epoch and at the end: share of blocks whose second
  activation (inside the residual branch, before the skip addition) has a lower rel_entropy than
  the first (after the previous skip addition); the same share for ConvNets as a control.
- equi-separation: equisep, last step: the stored law_pearson_r (fit over l >= 1) per net and
  depth, and the fit over l >= 0 (input included, `fit_law(first=0)`) from the stored D_l.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

import learnscope as ls
from learnscope.separation import fit_law

SATURATED = 0.95
CHANCE_MARGIN = 0.02


def _load(paths: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(finished runs with columns id, name, experiment, model, store; their metric rows)."""
    runs, rows = [], []
    for path in paths:
        with ls.store.open(path, read_only=True) as store:
            found = store.runs()
            found = found[found["status"] == "finished"]
            for _, run in found.iterrows():
                record = store.run(run["id"])
                spec = record["config"].get("user", {})  # the preset's RunSpec
                runs.append({"id": run["id"], "name": run["name"],
                             "experiment": run["experiment"], "model": spec.get("model", ""),
                             "recipe": spec.get("recipe", ""), "store": path})
                rows.append(store.metrics(run["id"]))
    if not runs:
        raise SystemExit(f"no finished runs in {list(paths)}; run the presets first")
    return pd.DataFrame(runs), pd.concat(rows, ignore_index=True)


def _family(model: str) -> str:
    return model.rstrip("0123456789")


def _series(rows: pd.DataFrame, run: str, measure: str, probe: str = "patterns") -> pd.DataFrame:
    """step x layer_index table of one measure of one run (activation layers only)."""
    part = rows[(rows["run"] == run) & (rows["measure"] == measure) & (rows["probe"] == probe)
                & (rows["layer_index"] >= 0)]
    return part.pivot_table(index="step", columns="layer_index", values="value", aggfunc="first")


def _layer_names(rows: pd.DataFrame, run: str) -> dict[int, str]:
    part = rows[(rows["run"] == run) & (rows["layer_index"] >= 0) & (rows["probe"] == "patterns")]
    return dict(zip(part["layer_index"], part["layer"], strict=False))


def saturation(runs: pd.DataFrame, rows: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per experiment: (cells with distinct/E > SATURATED, measured cells)."""
    share: dict[str, tuple[int, int]] = {}
    for experiment, group in runs.groupby("experiment"):
        part = rows[rows["run"].isin(group["id"]) & (rows["measure"] == "distinct_frac")]
        if part.empty:
            continue
        share[experiment] = (int((part["value"] > SATURATED).sum()), len(part))
    return share


def accuracies(runs: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per run (NaN where none was logged)."""
    tests = rows[rows["measure"] == "test_accuracy"].sort_values("step")
    last = tests.groupby("run")["value"].last()
    out = runs[["experiment", "name"]].copy()
    out["test_accuracy"] = runs["id"].map(last)
    return out


def entropy_claims(runs: pd.DataFrame, rows: pd.DataFrame) -> dict[str, dict]:
    """Init slope, early drop and zigzag shares per family, from the entropycurve runs."""
    result: dict[str, dict] = {}
    curve = runs[runs["experiment"] == "entropycurve"]
    for _, run in curve.iterrows():
        table = _series(rows, run["id"], "rel_entropy")
        if len(table.index) < 3:
            continue
        steps = sorted(table.index)
        family = _family(run["model"])
        entry = result.setdefault(family, {"init_r": [], "drop_1": [], "drop_2": [],
                                           "init_first": [], "init_last": [],
                                           "zig_early": [], "zig_end": []})
        init = table.loc[steps[0]].to_numpy(dtype=float)
        entry["init_r"].append(float(np.corrcoef(np.arange(init.size), init)[0, 1]))
        entry["init_first"].append(init[0])
        entry["init_last"].append(init[-1])
        entry["drop_1"].append(float(table.loc[steps[1]].mean() - table.loc[steps[0]].mean()))
        entry["drop_2"].append(float(table.loc[steps[2]].mean() - table.loc[steps[0]].mean()))
        names = _layer_names(rows, run["id"])
        for key, step in (("zig_early", steps[2]), ("zig_end", steps[-1])):
            entry[key].extend(_zigzag(table.loc[step], names))
    return result


def _zigzag(values: pd.Series, names: dict[int, str]) -> list[bool]:
    """Per block: is rel_entropy of relu2 (before the skip addition) below that of relu1?"""
    by_name = {names[int(i)]: float(v) for i, v in values.items()}
    lower = []
    for name, value in by_name.items():
        match = re.fullmatch(r"(stages\.\d+\.\d+)\.relu1", name)
        if match and f"{match[1]}.relu2" in by_name:
            lower.append(by_name[f"{match[1]}.relu2"] < value)
    return lower


def early_claims(runs: pd.DataFrame, rows: pd.DataFrame) -> dict[str, dict]:
    """Per net of the early preset: similarity to init at the end, turnover early vs late."""
    result: dict[str, dict] = {}
    for _, run in runs[runs["experiment"] == "early"].iterrows():
        similarity = _series(rows, run["id"], "weighted_jaccard_since_init")
        added = _series(rows, run["id"], "added_since_last")
        removed = _series(rows, run["id"], "removed_since_last")
        distinct = _series(rows, run["id"], "distinct")
        if similarity.empty or added.empty:
            continue
        turnover = ((added + removed) / distinct).mean(axis=1).drop(index=0, errors="ignore")
        last = int(turnover.index.max())
        result[run["model"]] = {
            "similarity_end": float(similarity.loc[similarity.index.max()].mean()),
            "similarity_first_layer": float(similarity.loc[similarity.index.max()].iloc[0]),
            "turnover_first10": float(turnover.loc[1:10].mean()),
            "turnover_last50": float(turnover.loc[last - 49:last].mean()),
            "steps": last,
        }
    return result


def bottom_up(runs: pd.DataFrame, rows: pd.DataFrame) -> dict[str, float]:
    """Per methods run: Spearman r of (layer index, similarity to final) at the middle epoch."""
    result: dict[str, float] = {}
    for _, run in runs[runs["experiment"] == "methods"].iterrows():
        table = _series(rows, run["id"], "weighted_jaccard_since_final")
        if table.empty:
            continue
        steps = sorted(table.index)
        middle = steps[len(steps) // 2]
        values = table.loc[middle]
        ranks = pd.Series(values.to_numpy()).rank().to_numpy()
        index = pd.Series(np.arange(len(values))).rank().to_numpy()
        result[run["name"]] = float(np.corrcoef(index, ranks)[0, 1])
    return result


def equisep_claims(runs: pd.DataFrame, rows: pd.DataFrame) -> list[dict]:
    """Per equisep run at its last step: r of the stored fit (l >= 1) and of the fit l >= 0."""
    result = []
    for _, run in runs[runs["experiment"] == "equisep"].iterrows():
        part = rows[(rows["run"] == run["id"]) & (rows["probe"] == "separation")]
        if part.empty:
            continue
        last = part["step"].max()
        at = part[part["step"] == last]
        stored = at[at["measure"] == "law_pearson_r"]["value"]
        d = at[at["measure"] == "fuzziness"].sort_values("layer_index")["value"].to_numpy()
        try:
            from_input = fit_law(d, first=0).pearson_r
        except ValueError:
            from_input = math.nan
        depth = re.search(r"-L(\d+)-", run["name"])
        result.append({"name": run["name"], "model": run["model"],
                       "depth": int(depth[1]) if depth else -1,
                       "r": float(stored.iloc[0]) if len(stored) else math.nan,
                       "r_from_input": float(from_input)})
    return result


def _fmt(values: Sequence[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "n/a"
    mean = float(np.mean(values))
    return f"{mean:+.3f}" + (f" ± {np.std(values):.3f} (n={len(values)})" if len(values) > 1
                             else "")


def report(paths: Sequence[str]) -> str:
    runs, rows = _load(paths)
    lines = ["## Saturated cells (distinct/E > 0.95) per preset", ""]
    for experiment, (hot, total) in saturation(runs, rows).items():
        lines.append(f"- {experiment}: {hot} of {total} (layer, step) cells "
                     f"({100 * hot / total:.1f}%)")
    lines += ["", "## Final test accuracy", ""]
    acc = accuracies(runs, rows)
    for experiment, group in acc.groupby("experiment"):
        values = group["test_accuracy"].dropna()
        low = group[group["test_accuracy"] <= 0.1 + CHANCE_MARGIN]["name"].tolist()
        lines.append(f"- {experiment}: {len(values)} runs, test accuracy min {values.min():.3f}, "
                     f"median {values.median():.3f}, max {values.max():.3f}; "
                     f"chance-level: {low or 'none'}")
        if experiment in ("early", "methods"):
            lines.append("  " + ", ".join(
                f"{name.split('-small-')[-1]} {value:.3f}"
                for name, value in zip(group["name"], group["test_accuracy"], strict=True)))
    lines += ["", "## Activation-pattern paper", ""]
    entropy = entropy_claims(runs, rows)
    for family, entry in sorted(entropy.items()):
        zig_early, zig_end = entry["zig_early"], entry["zig_end"]
        lines.append(
            f"- entropycurve {family} ({len(entry['init_r'])} runs): init r(layer, rel_entropy) "
            f"{_fmt(entry['init_r'])}, runs with r > 0: "
            f"{sum(r > 0 for r in entry['init_r'])}/{len(entry['init_r'])}; init rel_entropy "
            f"first layer {_fmt(entry['init_first'])}, last {_fmt(entry['init_last'])}; mean "
            f"change after update 2 {_fmt(entry['drop_1'])}, after 0.1 epoch "
            f"{_fmt(entry['drop_2'])}; blocks with relu2 < relu1 at 0.1 epoch "
            f"{sum(zig_early)}/{len(zig_early)}, at the end {sum(zig_end)}/{len(zig_end)}")
    for model, entry in sorted(early_claims(runs, rows).items()):
        lines.append(
            f"- early {model} ({entry['steps']} updates): weighted Jaccard to init at the end "
            f"{entry['similarity_end']:.3f} (first layer {entry['similarity_first_layer']:.3f}); "
            f"turnover per update, updates 1-10 {entry['turnover_first10']:.3f}, last 50 "
            f"{entry['turnover_last50']:.3f}")
    orders = bottom_up(runs, rows)
    if orders:
        negative = [name for name, r in orders.items() if r < 0]
        lines.append(f"- methods, middle epoch, Spearman r(layer, similarity to final): "
                     f"{len(negative)}/{len(orders)} runs negative (bottom-up); " + ", ".join(
                         f"{name.split('-small-')[-1]} {r:+.2f}" for name, r in orders.items()))
    laws = equisep_claims(runs, rows)
    if laws:
        lines += ["", "## Equi-separation paper (last step; r of log D_l vs l)", ""]
        frame = pd.DataFrame(laws)
        for (model, depth), group in frame.groupby(["model", "depth"]):
            lines.append(
                f"- {model} L={depth}: {len(group)} runs, fit l >= 1: r "
                f"{', '.join(f'{r:+.3f}' for r in group['r'])} "
                f"({(group['r'] <= -0.9).sum()} with r <= -0.9); fit l >= 0: "
                f"{', '.join(f'{r:+.3f}' for r in group['r_from_input'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+", help="store files holding the preset runs")
    print(report(parser.parse_args().stores))


if __name__ == "__main__":
    main()
