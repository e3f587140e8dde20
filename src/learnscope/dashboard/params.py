"""The query parameters the dashboard accepts, their bounds, and the 422 answer for a value
outside them (it says what was given and what is allowed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.exceptions import RequestValidationError

from .errors import DashboardError

__all__ = [
    "MAX_COMPARED_RUNS", "MAX_NAME_CHARS", "MAX_STEP", "QUERY_RULES", "MeasureQuery",
    "PageMeasureQuery", "ProbeQuery", "RunsQuery", "SinceStepQuery", "compared_refs",
    "invalid_request", "MAX_THINNED_STEPS", "MaxStepsQuery",
]  # fmt: skip

#: The largest step SQLite can store (a signed 64-bit integer).
MAX_STEP = 2**63 - 1

#: The longest measure or probe name a request may ask for.
MAX_NAME_CHARS = 1000

#: The most runs one comparison page shows.
MAX_COMPARED_RUNS = 100

#: What each query parameter accepts, as said in a 422 answer.
QUERY_RULES = {
    "since_step": f"since_step: an integer from -1 (all steps) to {MAX_STEP}",
    "measure": f"measure: a measure name (1 to {MAX_NAME_CHARS} characters)",
    "probe": f"probe: a probe name (1 to {MAX_NAME_CHARS} characters)",
    "runs": f"runs: run ids, id prefixes or names (at most {MAX_COMPARED_RUNS} runs)",
    "max_points": "max_points: an integer from 2 to 100000 (points per training series)",
    "format": "format: json or csv",
}

SinceStepQuery = Annotated[
    int | None, Query(ge=-1, le=MAX_STEP, description="only steps greater than this")
]
MeasureQuery = Annotated[
    str | None, Query(min_length=1, max_length=MAX_NAME_CHARS, description="measure name")
]
#: A page's ``measure`` (an empty one, like an unknown one, shows the run's default measure).
PageMeasureQuery = Annotated[
    str | None, Query(max_length=MAX_NAME_CHARS, description="measure name")
]
ProbeQuery = Annotated[
    str | None, Query(min_length=1, max_length=MAX_NAME_CHARS, description="probe name")
]
#: The comparison page's ``runs`` (repeated, or comma-separated); bounded by
#: :func:`compared_refs`.
RunsQuery = Annotated[list[str] | None, Query(description=QUERY_RULES["runs"])]


def compared_refs(runs: list[str] | None) -> list[str]:
    """The distinct run references of a ``runs`` query (repeated and/or comma-separated), or a
    422 :class:`DashboardError` when there are more than :data:`MAX_COMPARED_RUNS`."""
    refs = [part.strip() for item in runs or [] for part in item.split(",") if part.strip()]
    refs = list(dict.fromkeys(refs))
    if len(refs) > MAX_COMPARED_RUNS:
        raise DashboardError(
            422, "Too many runs", f"runs: {len(refs)} runs were asked to be compared.",
            f"Allowed: {QUERY_RULES['runs']}; pick fewer runs.",
        )  # fmt: skip
    return refs


def invalid_request(error: RequestValidationError) -> DashboardError:
    """The 422 answer to query parameters outside their bounds: each value given and why it
    was refused, then what the parameters concerned allow (:data:`QUERY_RULES`)."""
    problems, names = [], []
    for item in error.errors():
        name = str(item.get("loc", ("", "?"))[-1])
        given = repr(item.get("input"))
        given = given if len(given) <= 60 else given[:60] + "..."
        problems.append(f"{name} = {given}: {item.get('msg', 'invalid')}")
        names.append(name)
    allowed = [QUERY_RULES[n] for n in dict.fromkeys(names) if n in QUERY_RULES]
    return DashboardError(422, "Invalid request", "; ".join(problems),
                          "Allowed: " + "; ".join(allowed) + "." if allowed else
                          "Fix the request's parameters.")  # fmt: skip


#: The most steps one ``/metrics`` answer may be thinned to (``max_steps``; issue 16, point 6).
MAX_THINNED_STEPS = 100_000
QUERY_RULES["max_steps"] = f"max_steps: an integer from 2 to {MAX_THINNED_STEPS}"
MaxStepsQuery = Annotated[
    int | None, Query(ge=2, le=MAX_THINNED_STEPS,
                      description="at most this many steps, evenly spread (first, last kept)")
]
