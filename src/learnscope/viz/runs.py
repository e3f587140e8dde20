"""Selecting runs and reading what the figures need from a run store (no matplotlib here).

(Formerly ``learnscope.viz.data``, a name easily confused with the ``learnscope.data`` package
of datasets; that module re-exports this one for old imports.)

Runs are referred to like everywhere in learnscope (id, unique id prefix, or name) or selected
by experiment (`select_runs(store, experiment="entropycurve")`). Activation-pattern measures are
the rows of a run with ``layer_index >= 0`` (model-level scalars logged with ``Scope.log`` have
layer ``"model"`` and index -1 and are never drawn as layers).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnscope.health import RunHealth, assess_run
from learnscope.store import Store, StoreError
from learnscope.store import open as open_store

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = [
    "CLIP_PERCENTILES",
    "FigureError",
    "RunInfo",
    "StoreLike",
    "clipped_change",
    "epochs_by_step",
    "model_of",
    "open_runs",
    "read_measures",
    "saturation",
    "select_runs",
    "turnover",
    "wide_table",
    "x_axis",
]

#: What the figure functions accept as a store: an open Store, or the path of one.
StoreLike = Store | str | os.PathLike

#: Percentiles the "patterns changed" panels are clipped to (the paper's "truncated").
CLIP_PERCENTILES = (1.0, 99.0)

_PRESETS = ("quickstart", "early", "entropycurve", "methods")
_FAMILY_DEPTH = re.compile(r"^(?P<family>.*?)(?P<depth>\d+)$")


class FigureError(ValueError):
    """A figure cannot be drawn from the store: the message says what was found and what to do."""


@dataclass
class RunInfo:
    """One run as the figures see it."""

    id: str
    name: str
    experiment: str | None
    status: str
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    health: RunHealth | None = None  # chance level and error (learnscope.health)

    @property
    def chance_level(self) -> bool:
        """A finished run whose final test accuracy is at chance level (learnscope.health)."""
        return self.health is not None and self.health.chance_level

    @property
    def model(self) -> str:
        """Model name from the run's configuration (e.g. ``resnet20``), see :func:`model_of`."""
        return model_of(self.config, self.name)

    @property
    def family(self) -> str:
        """Model family: the model name without its trailing depth (``resnet20`` -> ``resnet``)."""
        match = _FAMILY_DEPTH.match(self.model)
        if match is None:
            return self.model
        return match["family"].rstrip("-_") or self.model

    @property
    def depth(self) -> int | None:
        """The depth in the model name (``resnet20`` -> 20), None without one (``mlp``)."""
        match = _FAMILY_DEPTH.match(self.model)
        return int(match["depth"]) if match else None

    @property
    def seed(self) -> int | None:
        """The seed recorded in the run's configuration, if any."""
        user = self.config.get("user")
        seed = user.get("seed") if isinstance(user, dict) else None
        return seed if isinstance(seed, int) else None


def model_of(config: dict[str, Any], fallback: str = "?") -> str:
    """The model name of a run configuration.

    Preset and quickstart runs record it in the user part of the configuration (``model``, or
    ``net`` for the quickstart); otherwise the model class name recorded by ``Scope`` is used.
    """
    user = config.get("user") if isinstance(config, dict) else None
    if isinstance(user, dict):
        for key in ("model", "net", "arch", "architecture"):
            if isinstance(user.get(key), str) and user[key]:
                return user[key]
    if isinstance(config, dict) and isinstance(config.get("model"), str) and config["model"]:
        return config["model"]
    return fallback


@contextmanager
def open_runs(store: Store | str | os.PathLike[str]) -> Iterator[Store]:
    """An open store: ``store`` itself, or the store at that path (which must exist)."""
    if isinstance(store, Store):
        yield store
        return
    path = Path(store).expanduser()
    if not path.is_file():
        raise FigureError(
            f"no run store at {path}; run an experiment first (e.g. `learnscope run "
            "quickstart`) or pass the path of an existing store (--store PATH)"
        )
    with open_store(path, read_only=True) as opened:
        yield opened


def _short_labels(names: list[str]) -> tuple[str, list[str]]:
    """(common prefix, names without it), cut at a '-' or '_' so words stay whole."""
    if len(names) < 2:
        return "", list(names)
    prefix = os.path.commonprefix(names)
    cut = max(prefix.rfind("-"), prefix.rfind("_"))
    prefix = prefix[: cut + 1] if cut >= 0 else ""
    if not prefix or any(len(n) == len(prefix) for n in names):
        return "", list(names)
    return prefix.rstrip("-_"), [n[len(prefix):] for n in names]


def select_runs(
    store: Store, refs: Sequence[str] | None = None, *, experiment: str | None = None
) -> tuple[list[RunInfo], str]:
    """Resolve run references and/or an experiment to runs, and a common title prefix.

    ``refs`` are ids, unique id prefixes or names (see ``Store.run``); ``experiment`` adds every
    run recorded with that experiment (preset) name, the latest run of each name, in creation
    order. Runs are returned once each, in the order given. Labels are the run names without
    their common prefix (returned as the second element), or the ids where names repeat.
    """
    refs = list(refs or [])
    if not refs and experiment is None:
        raise FigureError("no runs given: name one or more runs (id, id prefix or name) or "
                          "pass --experiment NAME (e.g. early, entropycurve, methods)")
    ids: list[str] = []
    for ref in refs:
        try:
            ids.append(store.run(ref)["id"])
        except StoreError as error:
            raise FigureError(str(error)) from None
    if experiment is not None:
        frame = store.runs()
        chosen = frame[frame["experiment"] == experiment]
        if chosen.empty:
            known = sorted({str(e) for e in frame["experiment"].dropna()})
            found = f"experiments in the store: {', '.join(known)}" if known else \
                "the store has no runs recorded with an experiment name"
            todo = (f"run it first: `learnscope run {experiment} --store {store.path}`"
                    if experiment in _PRESETS else "check the name (`learnscope runs` lists "
                    "the runs with their experiment)")
            raise FigureError(
                f"no runs of experiment {experiment!r} in the store {store.path} ({found}); "
                f"{todo}"
            )
        latest = chosen.drop_duplicates("name", keep="last")
        ids.extend(str(i) for i in latest["id"])
    unique = list(dict.fromkeys(ids))
    infos = []
    for run_id in unique:
        record = store.run(run_id)
        infos.append(RunInfo(run_id, str(record["name"]), record["experiment"],
                             str(record["status"]), record["config"] or {},
                             health=assess_run(store, record)))
    names = [info.name for info in infos]
    if len(set(names)) < len(names):
        prefix, labels = _short_labels([info.id for info in infos])
    else:
        prefix, labels = _short_labels(names)
    for info, label in zip(infos, labels, strict=True):
        info.label = label
    return infos, prefix


_HINTS = {
    "since_final": "run the since-final pass, which compares every measured state with the "
                   "final network: train with save_weights=True, then call "
                   "learnscope.train.trainer.measure_since_final (the methods preset does "
                   "both: `learnscope run methods`)",
    "since_init": "measure with ActivationPatterns(compare_to=('init', 'last')) (the default)",
    "since_last": "measure with ActivationPatterns(compare_to=('init', 'last')) (the default)",
    "occupancy": "count in hash-list mode: ActivationPatterns(mode='hashlist')",
}


def _hint(measure: str) -> str:
    for key, hint in _HINTS.items():
        if measure.endswith(key):
            return hint
    return ("measure it with ActivationPatterns(...) (measures=None, the default, reports "
            "every measure)")


def read_measures(
    store: Store, run: RunInfo, measures: Sequence[str], probe: str | None = None
) -> pd.DataFrame:
    """The activation-layer rows of ``measures`` for ``run`` (long form, as ``Store.metrics``).

    Raises :class:`FigureError` naming the run, the missing measure(s), what the run has, and how
    to record what is missing. With several pattern probes in the run, ``probe`` picks one
    (default: ``patterns`` if present, else the only one).
    """
    measures = list(dict.fromkeys(measures))
    try:
        frame = store.metrics(run=run.id, measure=measures, probe=probe)
    except ValueError as error:
        frame = None
        reason = str(error)
    else:
        frame = frame[frame["layer_index"] >= 0]
        reason = ""
    if frame is not None and probe is None:
        probes = sorted(frame["probe"].unique())
        if len(probes) > 1:
            if "patterns" in probes:
                frame = frame[frame["probe"] == "patterns"]
            else:
                raise FigureError(
                    f"run {run.id} has these measures in several probes ({', '.join(probes)}); "
                    "choose one with probe=... (--probe NAME)"
                )
    if probe is not None and "Unknown probe" in reason:
        raise FigureError(f"run {run.id} has no probe {probe!r}: {reason}")
    present = set() if frame is None else set(frame["measure"].unique())
    if not [m for m in measures if m not in present]:
        return frame.reset_index(drop=True)
    latest = store.latest(run.id)
    layers = latest[latest["layer_index"] >= 0]
    if probe is not None:
        layers = layers[layers["probe"] == probe]
    available = sorted(layers["measure"].unique())
    missing = [m for m in measures if m not in available] or \
        [m for m in measures if m not in present]
    has = (f"it has: {', '.join(available)}" if available
           else "it has no activation-pattern measures at all")
    hints = "; ".join(dict.fromkeys(_hint(m) for m in missing))
    raise FigureError(
        f"run {run.id} ({run.model}) has no {', '.join(missing)} for its activation layers "
        f"({has}). To get {'it' if len(missing) == 1 else 'them'}: {hints}."
    )


def epochs_by_step(store: Store, run: RunInfo, frame: pd.DataFrame) -> dict[int, float] | None:
    """Epoch of every step in ``frame``; None when some step's epoch cannot be known.

    A measurement written without an epoch (e.g. rewritten by the since-final pass) takes the
    epoch recorded by another probe of the run at the same step (the training log), step 0 is
    epoch 0, and steps between two known ones are interpolated linearly.
    """
    import numpy as np

    pairs = frame.groupby("step")["epoch"].first()
    known = {int(s): float(e) for s, e in pairs.items() if not math.isnan(e)}
    steps = [int(s) for s in pairs.index]
    if all(s in known for s in steps):
        return {s: known[s] for s in steps}
    try:
        logged = store.metrics(run=run.id, layer="model")
    except ValueError:
        logged = None
    if logged is not None and not logged.empty:
        for step, epoch in logged.groupby("step")["epoch"].first().items():
            if not math.isnan(epoch):
                known.setdefault(int(step), float(epoch))
    if not known:
        return None
    known.setdefault(0, 0.0)
    xs = np.array(sorted(known), dtype=float)
    ys = np.array([known[int(x)] for x in xs])
    result = {}
    for step in steps:
        if step in known:
            result[step] = known[step]
        elif xs[0] <= step <= xs[-1]:
            result[step] = float(np.interp(step, xs, ys))
        else:
            return None
    return result


def x_axis(store: Store, run: RunInfo, frame: pd.DataFrame, steps: Iterable[int],
            x: str) -> tuple[np.ndarray, str]:
    """x values of ``steps`` and the axis label.

    ``x``: ``step``, ``epoch`` (a FigureError when the epochs are unknown or do not increase) or
    ``auto`` (epochs when known and increasing, else steps).
    """
    import numpy as np

    steps = [int(s) for s in steps]
    if x == "step":
        return np.asarray(steps, dtype=float), "step"
    epochs = epochs_by_step(store, run, frame)
    values = None
    if epochs is not None and all(s in epochs for s in steps):
        values = np.asarray([epochs[s] for s in steps], dtype=float)
    if values is not None and np.all(np.diff(values) > 0):
        return values, "epoch"
    if x == "epoch":
        found = ("no epochs are recorded for its measurements" if values is None
                 else "its measurements' epochs do not increase with the step (whole-epoch "
                      "numbers recorded for several measurements)")
        raise FigureError(f"run {run.id} cannot be drawn over epochs: {found}; draw it over "
                          "steps instead (x='step', --x step)")
    return np.asarray(steps, dtype=float), "step"



def clipped_change(values: Any, percentiles: tuple[float, float] = CLIP_PERCENTILES) -> Any:
    """Differences between consecutive values, clipped to the given percentiles of themselves.

    ``values`` is an array of shape (steps,) or (steps, layers); the result has one row less.
    The percentiles are taken over all finite differences together.
    """
    import numpy as np

    change = np.diff(np.asarray(values, dtype=float), axis=0)
    finite = change[np.isfinite(change)]
    if finite.size == 0:
        return change
    low, high = np.percentile(finite, percentiles)
    return np.clip(change, low, high)


def wide_table(frame: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Steps (rows) x layer indexes (columns) of one measure of a long metrics frame."""
    rows = frame[frame["measure"] == measure]
    table = rows.pivot_table(index="step", columns="layer_index", values="value",
                             aggfunc="first", dropna=False)
    return table.sort_index().sort_index(axis=1)


def turnover(added: Any, removed: Any, distinct: Any) -> Any:
    """Pattern turnover: (added + removed since the last measurement) / distinct patterns now.

    Element-wise on arrays; NaN where any input is NaN (the first measurement has no "last")
    or ``distinct`` is 0.
    """
    import numpy as np

    added, removed, distinct = (np.asarray(v, dtype=float) for v in (added, removed, distinct))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(distinct > 0, (added + removed) / distinct, np.nan)


def saturation(store: Store, run: RunInfo, probe: str | None = None) -> pd.DataFrame | None:
    """Steps (rows) x layer indexes (columns): whether distinct / E > 0.95 there
    (``learnscope.health.is_saturated``), from the stored ``distinct_frac`` or else ``distinct``
    and ``evaluations``; None when the run has neither."""
    from learnscope.health import is_saturated

    try:
        frame = read_measures(store, run, ["distinct_frac"], probe)
        share = wide_table(frame, "distinct_frac")
    except FigureError:
        try:
            frame = read_measures(store, run, ["distinct", "evaluations"], probe)
        except FigureError:
            return None
        share = wide_table(frame, "distinct") / wide_table(frame, "evaluations")
    return is_saturated(share.fillna(0.0))
