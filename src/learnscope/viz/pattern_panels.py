"""What the activation-pattern figures show and read: the five panels of Figures 1 and 4, the
measures drawn on a fixed [0, 1] axis, measure titles, and the per-panel values and saturation
read from a run (with progress over several runs)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from learnscope.store import Store
from learnscope.viz.runs import (
    RunInfo,
    read_measures,
    saturation,
    select_runs,
    turnover,
    wide_table,
)

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")


@dataclass(frozen=True)
class Panel:
    """One of the five measures of Figures 1 and 4."""

    key: str
    title: str
    measure: str
    ylabel: str
    bounded: bool  # a share in [0, 1]: drawn on a fixed [0, 1] axis


#: The five panels of Figures 1 and 4, left to right.
FIGURE1_PANELS = (
    Panel("A", "(A) pattern-set size", "distinct", "|A| / max |A|", True),
    Panel("B", "(B) pattern turnover", "distinct", "(added + removed) / |A|", False),
    Panel("C", "(C) top pattern share", "max_frac", "max c(a) / E", True),
    Panel("D", "(D) relative entropy", "rel_entropy", "H / Hmax", True),
    Panel("E", "(E) w. Jaccard to init", "weighted_jaccard_since_init", "Ruzicka(init)", True),
)
#: Measures of panel B besides ``distinct``: patterns added and removed since the last
#: measurement.
TURNOVER_MEASURES = ("added_since_last", "removed_since_last")
_FIGURE1_MEASURES = list(dict.fromkeys([*(p.measure for p in FIGURE1_PANELS),
                                        *TURNOVER_MEASURES]))
#: Measures that are shares in [0, 1]; their axes and colour scales are fixed to [0, 1].
BOUNDED_MEASURES = ("rel_entropy", "max_frac", "distinct_frac", "occupancy", "jaccard_since_init",
                    "jaccard_since_last", "jaccard_since_final", "jaccard_t_since_init",
                    "jaccard_t_since_last", "jaccard_t_since_final",
                    "weighted_jaccard_since_init", "weighted_jaccard_since_last",
                    "weighted_jaccard_since_final")

@contextmanager
def _reporter() -> Iterator[Any]:
    """The active progress display, or a new one for the duration of the block."""
    from learnscope import progress as display

    active = getattr(display, "current", lambda: None)()
    if active is not None:
        yield active
        return
    with display.progress() as report:
        yield report


def _track(items: Sequence[T], description: str) -> Iterator[T]:
    """Iterate over ``items`` reporting progress (learnscope.progress) when there are several."""
    if len(items) < 2:
        yield from items
        return
    with _reporter() as report:
        try:
            task = report.task(description, total=len(items), transient=True)
        except TypeError:  # a progress module without transient tasks
            task = report.task(description, total=len(items))
        for item in items:
            yield item
            task.advance()
        task.finish()


def _read_runs(
    store: Store, runs: Sequence[str] | str | None, experiment: str | None, measures: list[str],
    probe: str | None, what: str,
) -> tuple[list[tuple[RunInfo, pd.DataFrame]], str]:
    if isinstance(runs, str):
        runs = [runs]
    infos, prefix = select_runs(store, runs, experiment=experiment)
    data = [(info, read_measures(store, info, measures, probe))
            for info in _track(infos, f"{what}: reading {len(infos)} runs")]
    return data, prefix


_wide = wide_table  # steps (rows) x layer indexes (columns) of one measure


def _layer_names(frame: pd.DataFrame) -> dict[int, str]:
    pairs = frame.drop_duplicates("layer_index").sort_values("layer_index")
    return dict(zip(pairs["layer_index"].astype(int), pairs["layer"], strict=True))


def _panel_values(wide: dict[str, pd.DataFrame], panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values of shape steps x layers) that ``panel`` draws."""
    table = wide[panel.measure]
    steps = table.index.to_numpy()
    values = table.to_numpy(dtype=float)
    if panel.key == "A":
        with np.errstate(invalid="ignore", divide="ignore"):
            peak = np.nanmax(np.where(np.isfinite(values), values, np.nan), axis=0)
            return steps, values / np.where(peak > 0, peak, np.nan)
    if panel.key == "B":
        added, removed = (wide[m].reindex(index=table.index, columns=table.columns)
                          .to_numpy(dtype=float) for m in TURNOVER_MEASURES)
        return steps, turnover(added, removed, values)
    return steps, values


def _bounded(measure: str) -> bool:
    return measure in BOUNDED_MEASURES


def _saturation_grid(store: Store, info: RunInfo, probe: str | None,
                     steps: Iterable[int], layers: Iterable[int]) -> np.ndarray | None:
    """Booleans, layers x steps: saturated cells of ``info`` (None when it cannot be told)."""
    table = saturation(store, info, probe)
    if table is None:
        return None
    grid = table.reindex(index=list(steps), columns=list(layers)).fillna(False)
    return grid.to_numpy(dtype=bool).T


_MEASURE_TITLES = {
    "rel_entropy": "relative entropy",
    "entropy": "entropy (bits)",
    "distinct": "distinct patterns",
    "distinct_frac": "patterns per evaluation",
    "max_frac": "most frequent pattern share",
    "occupancy": "hash-list occupancy",
    "weighted_jaccard_since_final": "weighted Jaccard to final",
    "weighted_jaccard_since_init": "weighted Jaccard to init",
    "weighted_jaccard_since_last": "weighted Jaccard to previous",
    "jaccard_since_final": "Jaccard to final",
    "jaccard_since_init": "Jaccard to init",
    "jaccard_since_last": "Jaccard to previous",
    "mutual_information": "MI(patterns; labels)",
}


def _measure_title(measure: str) -> str:
    return _MEASURE_TITLES.get(measure, measure)
