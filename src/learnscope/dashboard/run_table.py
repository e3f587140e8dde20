"""The run list as a table (``GET /api/run-table``): search, filters, grouping, sorting and
paging done on the server, so the page gets only the rows it shows.

Every run of the store is a :func:`~.payloads.run_summary` row (status, chance-level mark,
stored error, final test accuracy) plus its config flattened to dotted keys (``{"opt":
{"lr": 0.1}}`` gives ``opt.lr``). The config keys whose values differ between the matched runs
become columns (``config.KEY``); keys equal in all of them are left out, as they tell the runs
nothing apart.

Query parameters (all optional; bad values get 422 with what is allowed):

``q``           runs whose name or id contains this text (case-insensitive)
``experiment``  runs of this experiment (``-``: runs without one); repeated: any of them
``status``      runs with this status (``running``, ``finished``, ``failed``, ``diverged``,
                ``interrupted``) or ``chance`` (finished at chance level); repeated: any
``where``       ``KEY=VALUE``: runs whose config key ``KEY`` shows as ``VALUE``; repeated: all
``sort``        a column (:data:`SORT_COLUMNS`) or ``config.KEY``; ``order``: asc or desc
``group``       ``experiment``: rows grouped by experiment (groups in sort order of their
                first row), each row then carries its group
``offset``, ``limit``  the page of rows sent (``matched`` says how many there are)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Query

from learnscope.health import assess_runs
from learnscope.store import Store

from .errors import DashboardError
from .params import QUERY_RULES
from .payloads import SafeJSONResponse, run_summary
from .settings import Settings
from .store_reader import read_store

__all__ = [
    "MAX_TABLE_ROWS", "SORT_COLUMNS", "STATUS_CHOICES", "api_run_table", "config_cell",
    "flatten_config", "run_table",
]  # fmt: skip

#: The most rows one answer holds (a page of the table).
MAX_TABLE_ROWS = 1000

#: Columns the table sorts by, besides ``config.KEY``.
SORT_COLUMNS = (
    "name", "id", "experiment", "status", "progress", "eta_seconds", "test_accuracy",
    "measurements", "created_at", "updated_at", "last_step",
)  # fmt: skip

#: What ``status`` accepts (``chance``: finished at chance level).
STATUS_CHOICES = ("running", "finished", "failed", "diverged", "interrupted", "chance")

QUERY_RULES.update({
    "q": "q: text to find in run names and ids (at most 200 characters)",
    "experiment": "experiment: an experiment name, or - for runs without one",
    "status": "status: one of " + ", ".join(STATUS_CHOICES),
    "where": "where: KEY=VALUE with a config key (e.g. where=lr=0.1)",
    "sort": "sort: one of " + ", ".join(SORT_COLUMNS) + " or config.KEY",
    "order": "order: asc or desc",
    "group": "group: experiment (or empty for no grouping)",
    "offset": "offset: an integer from 0",
    "limit": f"limit: an integer from 1 to {MAX_TABLE_ROWS}",
})  # fmt: skip

TextQuery = Annotated[str | None, Query(max_length=200)]
ListQuery = Annotated[list[str] | None, Query()]
OrderQuery = Annotated[str, Query(pattern="^(asc|desc)$")]
GroupQuery = Annotated[str | None, Query(pattern="^(experiment)?$")]
OffsetQuery = Annotated[int, Query(ge=0, le=2**31)]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_TABLE_ROWS)]


def flatten_config(config: Any, prefix: str = "") -> dict[str, Any]:
    """``config`` with nested dicts flattened to dotted keys (lists and scalars kept)."""
    if not isinstance(config, Mapping):
        return {prefix or "config": config} if config not in (None, {}) else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, name))
        else:
            out[name] = value
    return out


def config_cell(value: Any) -> str:
    """How a config value shows in the table (and what ``where=KEY=VALUE`` compares with):
    strings as they are, anything else as JSON (``0.1``, ``true``, ``[64, 64]``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _refuse(name: str, given: Any, why: str) -> DashboardError:
    shown = repr(given)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    return DashboardError(422, "Invalid request", f"{name} = {shown}: {why}",
                          f"Allowed: {QUERY_RULES[name]}.")  # fmt: skip


def parse_where(items: list[str] | None) -> list[tuple[str, str]]:
    """``where`` items as (key, value) pairs; a 422 for an item without ``=`` or a key."""
    pairs = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise _refuse("where", item, "expected KEY=VALUE")
        pairs.append((key.strip(), value))
    return pairs


def _sort_key(value: Any) -> tuple[int, Any]:
    """Sorts numbers before text, missing values (None) last."""
    if value is None:
        return (2, 0)
    if isinstance(value, bool):
        return (0, float(value))
    if isinstance(value, (int, float)):
        return (0, float(value))
    return (1, str(value).lower())


def _matches(run: dict[str, Any], config: dict[str, Any], q: str | None,
             experiments: list[str], statuses: list[str],
             where: list[tuple[str, str]]) -> bool:  # fmt: skip
    if q and q.lower() not in f"{run['name']}\n{run['id']}".lower():
        return False
    if experiments and (run["experiment"] or "-") not in experiments:
        return False
    if statuses:
        kinds = {run["status"]} | ({"chance"} if run["chance_level"] else set())
        if not kinds & set(statuses):
            return False
    return all(key in config and config_cell(config[key]) == value for key, value in where)


def run_table(
    store: Store,
    *,
    q: str | None = None,
    experiment: list[str] | None = None,
    status: list[str] | None = None,
    where: list[str] | None = None,
    sort: str = "created_at",
    order: str = "desc",
    group: str | None = None,
    offset: int = 0,
    limit: int = 200,
) -> dict[str, Any]:
    """The table of the store's runs (see the module docstring for the parameters).

    Returns ``rows`` (the page: :func:`~.payloads.run_summary` fields plus ``config``, the
    flattened config values shown as :func:`config_cell`, and ``group``), ``config_keys`` (the
    keys that differ between the matched runs, the table's config columns), ``matched`` and
    ``total`` (runs matched / in the store), and the choices for the filters:
    ``experiments``, ``statuses`` and ``keys`` (every config key with its values).
    """
    statuses = list(dict.fromkeys(status or []))
    for item in statuses:
        if item not in STATUS_CHOICES:
            raise _refuse("status", item, "not a status")
    pairs = parse_where(where)
    if sort not in SORT_COLUMNS and not (sort.startswith("config.") and len(sort) > 7):
        raise _refuse("sort", sort, "not a column")
    frame = store.runs()
    health = assess_runs(store, frame)
    records = frame.iloc[::-1].to_dict("records")  # newest first, as the run list
    runs = [run_summary(record, health[record["id"]]) for record in records]
    configs = {}
    for record in records:
        try:
            parsed = json.loads(record["config"]) if record["config"] else {}
        except ValueError:
            parsed = {}
        configs[str(record["id"])] = flatten_config(parsed)
    experiments = list(dict.fromkeys(experiment or []))
    matched = [r for r in runs
               if _matches(r, configs[r["id"]], q, experiments, statuses, pairs)]  # fmt: skip
    keys: dict[str, set[str]] = {}
    for run in runs:
        for key, value in configs[run["id"]].items():
            keys.setdefault(key, set()).add(config_cell(value))
    differing = []
    for key in sorted(keys):
        shown = {config_cell(configs[r["id"]][key]) if key in configs[r["id"]] else None
                 for r in matched}  # fmt: skip
        if len(shown) > 1:
            differing.append(key)

    def value_of(run: dict[str, Any]) -> Any:
        if sort.startswith("config."):
            return configs[run["id"]].get(sort[7:])
        return run.get(sort)

    present = [r for r in matched if value_of(r) is not None]
    missing = [r for r in matched if value_of(r) is None]
    present.sort(key=lambda r: _sort_key(value_of(r)), reverse=order == "desc")
    ordered = present + missing  # missing values last in either order
    if group == "experiment":
        first: dict[str, int] = {}
        for i, run in enumerate(ordered):
            first.setdefault(run["experiment"] or "-", i)
        ordered.sort(key=lambda r: first[r["experiment"] or "-"])  # stable: keeps the sort
    rows = []
    for run in ordered[offset:offset + limit]:
        config = configs[run["id"]]
        rows.append({**run, "group": (run["experiment"] or "-") if group else None,
                     "config": {k: config_cell(config[k]) for k in differing if k in config}})
    return {
        "rows": rows,
        "config_keys": differing,
        "matched": len(matched),
        "total": len(runs),
        "offset": offset,
        "limit": limit,
        "sort": sort,
        "order": order,
        "group": group or None,
        "experiments": sorted({r["experiment"] or "-" for r in runs}),
        "statuses": sorted({r["status"] for r in runs}
                           | ({"chance"} if any(r["chance_level"] for r in runs) else set())),
        "keys": {k: sorted(v)[:50] for k, v in sorted(keys.items())},
    }


def api_run_table(
    settings: Settings, q: TextQuery = None, experiment: ListQuery = None,
    status: ListQuery = None, where: ListQuery = None,
    sort: Annotated[str, Query(max_length=300)] = "created_at", order: OrderQuery = "desc",
    group: GroupQuery = None, offset: OffsetQuery = 0, limit: LimitQuery = 200,
) -> SafeJSONResponse:
    """``GET /api/run-table``: the run list filtered, sorted, grouped and paged (module doc)."""
    with read_store(settings.store_path) as store:
        content = run_table(store, q=q, experiment=experiment, status=status, where=where,
                            sort=sort, order=order, group=group, offset=offset, limit=limit)
    return SafeJSONResponse(content, headers={"Cache-Control": "no-store"})
