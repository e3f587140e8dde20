"""The dashboard's HTML: the page frame, the pieces pages share and each page's body.

Every value that comes from the store or the request goes through :func:`escape` (HTML-escaped,
quotes included); the page config travels as JSON in a ``<script type="application/json">``
with ``</`` escaped. The browser script ``static/dashboard.js`` draws the plots from the JSON
endpoints and keeps the pages up to date.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse

import learnscope

from .assets import plotly_version
from .payloads import json_safe

__all__ = [
    "RUNS_HEADER", "compare_page_body", "error_page_body", "escape", "format_duration",
    "format_progress", "notice_box", "render_page", "run_page_body", "runs_page_body",
]  # fmt: skip


def escape(text: Any) -> str:
    """``text`` (None: empty) HTML-escaped, quotes included, for element text and attributes."""
    return html.escape("" if text is None else str(text), quote=True)


def format_duration(seconds: Any) -> str:
    """``42 s``, ``3 min 12 s``, ``2 h 05 min``, ``3 d 4 h``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def or_dash(value: Any) -> Any:
    """``value``, or ``-`` when it is None."""
    return "-" if value is None else value


def format_progress(progress: Any) -> str:
    """A fraction as a whole percentage (``42%``); ``-`` when unknown."""
    if progress is None or not math.isfinite(progress):
        return "-"
    return f"{100 * progress:.0f}%"


def notice_box(title: str, detail: str, hint: str = "", kind: str = "info", ident: str = "") -> str:
    """A message box: ``title``, ``detail`` and an optional ``hint`` (escaped); ``kind`` (a CSS
    class: info, warning, error) and ``ident`` (an element id) come from this package."""
    attr = f' id="{ident}"' if ident else ""
    hint_html = f'<p class="hint">{escape(hint)}</p>' if hint else ""
    return (f'<div class="notice {kind}"{attr} role="status"><h2>{escape(title)}</h2>'
            f'<p class="detail">{escape(detail)}</p>{hint_html}</div>')  # fmt: skip


def status_badge(run: Mapping[str, Any]) -> str:
    """The status of a run as a badge: ``finished (chance-level)`` in warning colours."""
    kind = "chance" if run.get("chance_level") else run["status"]
    title = f' title="{escape(run["note"])}"' if run.get("note") else ""
    return (f'<span class="status status-{escape(kind)}"{title}>'
            f'{escape(run.get("status_label") or run["status"])}</span>')


def error_line(run: Mapping[str, Any]) -> str:
    """The shortened stored error under a run's status (nothing when there is none)."""
    if not run.get("error_short"):
        return ""
    return (f'<div class="run-error small" title="{escape(run["error"])}">'
            f'{escape(run["error_short"])}</div>')


def run_problem(run: Mapping[str, Any]) -> str:
    """The run page's box for a stored error or a chance-level result (an empty, hidden box
    otherwise, which the page script fills when the run changes)."""
    if run.get("error"):
        body = (f"<h2>Run {escape(run['status'])}: stored error</h2>"
                f'<pre class="detail">{escape(run["error"])}</pre>')
        return f'<div class="notice error" id="run-problem" role="alert">{body}</div>'
    if run.get("chance_level"):
        body = (f"<h2>Chance-level result</h2><p class=\"detail\">{escape(run['note'])}: the "
                "network learned nothing; do not average its measures with other runs.</p>")
        return f'<div class="notice warning" id="run-problem" role="alert">{body}</div>'
    return '<div class="notice" id="run-problem" role="alert" hidden></div>'


def runs_rows(runs: list[dict[str, Any]]) -> str:
    """The run list's table rows (columns as :data:`RUNS_HEADER`)."""
    rows = []
    for run in runs:
        progress = run["progress"]
        width = 0 if progress is None else max(0.0, min(1.0, progress)) * 100
        rows.append(
            f'<tr data-run="{escape(run["id"])}">'
            f'<td><input type="checkbox" name="runs" value="{escape(run["id"])}" '
            f'aria-label="compare {escape(run["id"])}"></td>'
            f'<td><a href="/runs/{escape(run["id"])}">{escape(run["name"])}</a>'
            f'<div class="muted small">{escape(run["id"])}</div></td>'
            f"<td>{escape(run['experiment'] or '-')}</td>"
            f"<td>{status_badge(run)}{error_line(run)}</td>"
            f'<td><div class="bar"><div style="width:{width:.1f}%"></div></div>'
            f"{escape(format_progress(progress))}</td>"
            f"<td>{escape(format_duration(run['eta_seconds']))}</td>"
            f"<td>{escape(run['measurements'])}</td>"
            f'<td title="{escape(run["updated_at"])}">{escape(run["updated_at"])}</td></tr>'
        )
    return "".join(rows)


RUNS_HEADER = (
    "<tr><th></th><th>run</th><th>experiment</th><th>status</th><th>progress</th>"
    "<th>ETA</th><th>measurements</th><th>last update</th></tr>"
)


def render_page(
    title: str,
    page: str,
    body: str,
    config: dict[str, Any],
    *,
    store: Path,
    status_code: int = 200,
    plotly: bool = False,
    scripts_after: tuple[str, ...] = (),
) -> HTMLResponse:
    """A complete HTML page: header, body, the page config and the scripts (``scripts_after``:
    names of ``static/`` scripts loaded after ``dashboard.js``, which use its helpers)."""
    config = {"page": page, **config}
    data = json.dumps(json_safe(config), allow_nan=False).replace("</", "<\\/")
    version = escape(learnscope.__version__)
    plotly_src = f"/assets/plotly.min.js?v={escape(plotly_version())}"
    scripts = f'<script src="{plotly_src}"></script>' if plotly else ""
    text = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} - learnscope</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/dashboard.css?v={version}">
</head>
<body data-page="{escape(page)}">
<header class="top">
<a class="brand" href="/">learnscope</a>
<nav><a href="/">Runs</a><a href="/compare">Compare</a></nav>
<span class="store" title="run store (read-only)">{escape(store)}</span>
</header>
<div id="ls-banner" class="banner" hidden></div>
<main>
{body}
</main>
<script type="application/json" id="ls-config">{data}</script>
{scripts}
<script src="/static/dashboard.js?v={version}"></script>
{"".join(f'<script src="/static/{escape(name)}?v={version}"></script>' for name in scripts_after)}
</body>
</html>
"""
    return HTMLResponse(text, status_code=status_code, headers={"Cache-Control": "no-store"})



def error_page_body(error_html: str) -> str:
    """An error page's body: the error's notice and a way back."""
    return error_html + '<p><a href="/">Back to the run list</a></p>'


def runs_page_body(runs: list[dict[str, Any]], notice: str, poll: float) -> str:
    """The run list (``/``): ``runs`` as :func:`~learnscope.dashboard.payloads.runs_payload`
    gives them, under ``notice`` (HTML), refreshed every ``poll`` seconds."""
    return f"""<h1>Runs</h1>
{notice}
<form id="runs-form" action="/compare" method="get">
<div class="controls" id="runs-controls">
<label>search <input type="search" id="runs-search" placeholder="name or id"></label>
<label>experiment <select id="runs-experiment"><option value="">all experiments</option>
</select></label>
<label>status <select id="runs-status"><option value="">any status</option></select></label>
<label title="config filters KEY=VALUE, separated by ;">config <input id="runs-where"
 list="runs-where-choices" placeholder="key=value"></label>
<datalist id="runs-where-choices"></datalist>
<label><input type="checkbox" id="runs-group"> group by experiment</label>
<span class="muted small" id="runs-count"></span>
</div>
<table id="runs-table" class="runs"{" hidden" if not runs else ""}>
<thead>{RUNS_HEADER}</thead>
<tbody>{runs_rows(runs)}</tbody>
</table>
<p class="actions"><button type="submit" id="compare-button"{" hidden" if not runs else ""}>
Compare selected runs</button>
<span class="muted small" id="runs-live">updates every {poll:g} s</span></p>
</form>"""


#: The run page's view controls (the page script sets them from the address and keeps the
#: address up to date): x-axis, log scale and smoothing of the line plots.
VIEW_CONTROLS = """<div class="controls" id="view-controls">
<label>x-axis <select id="x-axis"><option value="step">step</option>
<option value="epoch">epoch</option></select></label>
<label title="log y-axis on the loss, learning-rate and per-layer line plots">
<input type="checkbox" id="log-scale"> log scale</label>
<label title="exponential moving average of the line plots (0: none), as TensorBoard">smoothing
<input type="range" id="smoothing" min="0" max="0.99" step="0.01" value="0">
<span id="smoothing-value" class="small">0.00</span></label>
</div>"""


def run_page_body(
    content: Mapping[str, Any], chosen: str | None, notice: str, poll: float
) -> str:
    """One run's page (``/runs/{run}``): ``content`` as
    :func:`~learnscope.dashboard.payloads.run_payload` gives it, showing measure ``chosen``,
    with ``notice`` (HTML) under the run's summary."""
    run = content["run"]
    mapped = content["trajectory_map"]
    problem = run_problem(run)
    options = "".join(
        f'<option value="{escape(m["name"])}"{" selected" if m["name"] == chosen else ""}>'
        f"{escape(m['name'])}{'' if m['per_layer'] else ' (model)'}</option>"
        for m in content["measures"]
    )
    config_text = json.dumps(run["config"], indent=2, sort_keys=True, default=str)
    separation = content["separation_probe"]
    progress = escape(format_progress(run["progress"]))
    eta = escape(format_duration(run["eta_seconds"]))
    last_step = escape(or_dash(run["last_step"]))
    return f"""<h1 id="run-title">{escape(run["name"])}</h1>
<p class="muted" id="run-id">{escape(run["id"])}</p>
<dl class="summary" id="run-summary">
<div><dt>status</dt><dd data-key="status">{status_badge(run)}</dd></div>
<div><dt>experiment</dt><dd data-key="experiment">{escape(run["experiment"] or "-")}</dd></div>
<div><dt>progress</dt><dd data-key="progress">{progress}</dd></div>
<div><dt>ETA</dt><dd data-key="eta">{eta}</dd></div>
<div><dt>last step</dt><dd data-key="last_step">{last_step}</dd></div>
<div><dt>measurements</dt><dd data-key="measurements">{escape(run["measurements"])}</dd></div>
<div><dt>last update</dt><dd data-key="updated">{escape(run["updated_at"])}</dd></div>
</dl>
{problem}
{notice}
{VIEW_CONTROLS}
<section id="training-section" hidden><h2 class="plot-title">training: loss, accuracy and
learning rate</h2><div id="training" class="plot"></div></section>
<div id="trajectories"{"" if mapped else " hidden"}>
<section><h2 class="plot-title">weight trajectories</h2>
<div class="controls" id="trajectory-controls">
<span class="muted small" id="trajectory-about"></span>
<label id="trajectory-score-label" hidden>score <select id="trajectory-score"></select></label>
</div>
<div id="trajectory-notice" hidden></div>
<div id="trajectory-map" class="plot"></div></section>
</div>
<div class="controls">
<label>measure <select id="measure">{options}</select></label>
<label title="each layer's colours span its own minimum to maximum">
<input type="checkbox" id="per-layer-scale"> colour each layer on its own scale</label>
<a id="compare-link" href="/compare?runs={escape(run["id"])}">compare with other runs</a>
<span class="muted small" id="run-live">updates every {poll:g} s</span>
</div>
<details id="measure-details" open><summary>layer measures</summary>
<section><h2 class="plot-title">layer x step</h2><div id="heatmap" class="plot"></div></section>
<section><h2 class="plot-title">per layer</h2><div id="lines" class="plot"></div></section>
</details>
<div id="separation"{"" if separation else " hidden"}>
<section><h2 class="plot-title">equi-separation: fuzziness D<sub>l</sub> per layer at the latest
step</h2><div id="equisep" class="plot"></div></section>
<section><h2 class="plot-title">separation dynamics</h2><div id="equisep-dynamics" class="plot">
</div></section>
</div>
<details><summary>config</summary><pre id="run-config">{escape(config_text)}</pre></details>"""


def compare_page_body(
    every: list[dict[str, Any]],
    ids: list[str],
    counts: Mapping[str, int],
    names: list[str],
    selected: str | None,
    notice: str,
    poll: float,
) -> str:
    """The comparison page (``/compare``): the measures ``names`` (each held by ``counts[name]``
    of the ``len(ids)`` compared runs; ``selected`` chosen), and every run of the store as a
    box to tick (``ids`` ticked), with ``notice`` (HTML) on top."""
    compared = len(ids)
    options = "".join(
        f'<option value="{escape(n)}"{" selected" if n == selected else ""}>{escape(n)}'
        f"{'' if counts[n] == compared else f' ({counts[n]} of {compared} runs)'}"
        "</option>"
        for n in names
    )
    boxes = "".join(
        f'<label class="pick"><input type="checkbox" name="runs" value="{escape(r["id"])}"'
        f"{' checked' if r['id'] in ids else ''}> {escape(r['name'])} "
        f'<span class="muted small">{escape(r["id"])}</span></label>'
        for r in every
    )
    return f"""<h1>Compare runs</h1>
{notice}
<form id="compare-form" action="/compare" method="get">
<div class="controls">
<label>measure <select id="measure" name="measure">{options}</select></label>
<span class="muted small" id="compare-live">updates every {poll:g} s</span>
</div>
<h2>Runs on one plot per measure</h2>
<div class="controls" id="compare-controls">
<label title="layers are lined up by their index in forward order, not by name">layer
<select id="layer"><option value="0">index 0 (first)</option>
<option value="last">last layer of each run</option></select></label>
<label>x <select id="x-axis"><option value="step">step</option>
<option value="epoch">epoch</option></select></label>
<label title="seeds of one config are drawn as mean &#177; s.d."><input type="checkbox"
 id="single-runs"> show single runs</label>
</div>
<div id="compare-plots"></div>
<h2>Config keys that differ</h2>
<table id="compare-diff" class="runs"></table>
<h2>Layer x step, per run</h2>
<div id="compare-grid" class="grid"></div>
<details{" open" if len(ids) < 2 else ""}><summary>runs to compare</summary>
<div class="picks">{boxes}</div>
<p><button type="submit">Compare</button></p>
</details>
</form>"""
