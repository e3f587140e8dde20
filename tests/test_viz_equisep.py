"""viz.equisep / viz.equisep_dynamics and `learnscope plot equisep(-dynamics)`: figures of
separation rows written directly into a store (an exact geometric D_l = c * rho^l with noise, the
fit computed here with numpy), checked against the store read with sqlite3."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import learnscope.store as store_mod
from learnscope import viz
from learnscope.cli import app
from learnscope.viz.runs import FigureError

LAYERS = 7  # input (0) + 6 layers
STEPS = (0, 10, 20, 30)
FIT = (1, 6)  # law_first, law_last


def separation_rows(rng: np.random.Generator, rho: float, c: float = 5.0) -> list[tuple]:
    """Per-layer fuzziness rows and the fit rows (numpy's least squares over FIT)."""
    ls = np.arange(LAYERS)
    d = c * rho**ls * np.exp(rng.normal(0.0, 0.05, LAYERS))
    rows = [("input" if i == 0 else f"layer{i}", int(i), "fuzziness", float(d[i])) for i in ls]
    x = ls[FIT[0]:FIT[1] + 1].astype(float)
    y = np.log(d[FIT[0]:FIT[1] + 1])
    slope = float(np.polyfit(x, y, 1)[0])
    r = float(np.corrcoef(x, y)[0, 1])
    law = {"law_slope": slope, "law_rho": float(np.exp(slope)), "law_pearson_r": r,
           "law_r2": r * r, "law_first": FIT[0], "law_last": FIT[1]}
    return rows + [("law", -1, m, v) for m, v in law.items()]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str, str, str]:
    """(store, separation run, second separation run, run without separation rows)."""
    path = tmp_path_factory.mktemp("equisep") / "runs.db"
    rng = np.random.default_rng(0)
    with store_mod.open(path) as s:
        run = s.create_run("sep-a", {"user": {"model": "mlp"}}, experiment="equisep")
        for k, step in enumerate(STEPS):
            s.write_measurement(run, step, k, "separation", separation_rows(rng, 0.9 - 0.05 * k))
        other = s.create_run("sep-b", {"user": {"model": "mlp"}}, experiment="equisep")
        for k, step in enumerate(STEPS[:2]):
            s.write_measurement(other, step, k, "separation", separation_rows(rng, 0.7))
        plain = s.create_run("patterns-only", {})
        s.write_measurement(plain, 0, 0, "patterns", [("relu1", 0, "entropy", 1.5)])
    return path, run, other, plain


def query(path: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


def stored_d(path: Path, run: str, step: int) -> tuple[list[int], list[float]]:
    rows = query(path, "SELECT layer_index, value FROM metrics WHERE run = ? AND step = ? AND "
                 "probe = 'separation' AND measure = 'fuzziness' ORDER BY layer_index", run, step)
    return [r[0] for r in rows], [r[1] for r in rows]


def stored_law(path: Path, run: str, step: int) -> dict[str, float]:
    return dict(query(path, "SELECT measure, value FROM metrics WHERE run = ? AND step = ? AND "
                      "layer = 'law' AND layer_index = -1", run, step))


def line(ax, gid: str):
    (found,) = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    return np.asarray(found.get_xdata(), float), np.asarray(found.get_ydata(), float)


def test_equisep_points_fit_and_legend_match_the_store(store, tmp_path):
    path, run, _, _ = store
    fig = viz.equisep(path, "sep-a")
    (ax,) = viz.panels(fig)
    last = max(STEPS)
    assert ax.panel_info["figure"] == "equisep" and ax.panel_info["steps"] == {run: last}
    assert ax.get_yscale() == "log"
    layers, d = stored_d(path, run, last)
    xs, ys = line(ax, f"{run}:points")
    assert xs.tolist() == layers and ys.tolist() == d  # exact stored values
    law = stored_law(path, run, last)
    fx, fy = line(ax, f"{run}:fit")
    assert fx.tolist() == list(range(FIT[0], FIT[1] + 1))
    np.testing.assert_allclose(np.diff(np.log(fy)) / np.diff(fx), law["law_slope"], rtol=1e-9)
    # the intercept: least squares for that slope, through the centroid of the fitted points
    inside = slice(FIT[0], FIT[1] + 1)
    np.testing.assert_allclose(np.mean(np.log(fy)), np.mean(np.log(d[inside])), rtol=1e-9)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    want = f"ρ = {law['law_rho']:.3f}, r = {law['law_pearson_r']:.3f}"
    assert any(want in text for text in legend), legend
    assert law["law_pearson_r"] < -0.95  # the geometric data obeys the law
    for suffix in ("png", "pdf"):
        out = viz.save(fig, tmp_path / f"equisep.{suffix}")
        assert out.stat().st_size > 5000
    assert (tmp_path / "equisep.pdf").read_bytes().startswith(b"%PDF-1.")


def test_equisep_chosen_step_and_several_runs(store):
    path, run, other, _ = store
    fig = viz.equisep(path, run, step=10)
    (ax,) = viz.panels(fig)
    assert line(ax, f"{run}:points")[1].tolist() == stored_d(path, run, 10)[1]
    fig = viz.equisep(path, [run, other])
    (ax,) = viz.panels(fig)
    assert ax.panel_info["steps"] == {run: max(STEPS), other: STEPS[1]}
    assert line(ax, f"{other}:points")[1].tolist() == stored_d(path, other, STEPS[1])[1]
    assert len([ln for ln in ax.get_lines() if ln.get_gid().endswith(":fit")]) == 2
    with pytest.raises(FigureError, match="no separation measurement at step 5"):
        viz.equisep(path, run, step=5)


def test_equisep_dynamics_panels_equal_the_stored_series(store, tmp_path):
    path, run, _, _ = store
    fig = viz.equisep_dynamics(path, run)
    axes = viz.panels(fig)
    assert [ax.panel_info["panel"] for ax in axes] == ["A", "B", "C"]
    assert [ax.get_label() for ax in fig.axes].count("<colorbar>") == 1
    a, b, c = axes
    assert a.get_yscale() == "log" and a.panel_info["x"] == "epoch"
    epochs = [e for (e,) in query(path, "SELECT epoch FROM measurements WHERE run = ? AND "
                                  "probe = 'separation' ORDER BY step", run)]
    names = [n for (n,) in query(path, "SELECT DISTINCT layer FROM metrics WHERE run = ? AND "
                                 "measure = 'fuzziness' ORDER BY layer_index", run)]
    assert [ln.get_gid() for ln in a.get_lines()] == names
    for index, name in enumerate(names):
        xs, ys = line(a, name)
        assert xs.tolist() == epochs
        assert ys.tolist() == [stored_d(path, run, s)[1][index] for s in STEPS]
    for ax, measure in ((b, "law_pearson_r"), (c, "law_rho")):
        xs, ys = line(ax, measure)
        assert xs.tolist() == epochs
        assert ys.tolist() == [stored_law(path, run, s)[measure] for s in STEPS]
    # a marker on every measured point, and points only where measured (x = the epochs above)
    assert {ln.get_marker() for ax in axes for ln in ax.get_lines()} == {"o"}
    assert viz.panels(viz.equisep_dynamics(path, run, x="step"))[0].panel_info["x"] == "step"
    viz.save(fig, tmp_path / "dyn.png")
    viz.save(fig, tmp_path / "dyn.pdf")
    assert (tmp_path / "dyn.png").stat().st_size > 5000


def test_run_without_separation_says_what_to_run(store):
    path, _, _, plain = store
    for draw in (viz.equisep, viz.equisep_dynamics):
        with pytest.raises(FigureError, match=f"run {plain}.*no separation measurements.*"
                           "learnscope run equisep.*ls.Separation"):
            draw(path, "patterns-only")


def test_cli_writes_both_and_fails_clearly(store, tmp_path):
    path, run, _, _ = store
    runner = CliRunner()
    out = tmp_path / "figs" / "eq"
    result = runner.invoke(app, ["plot", "equisep", "sep-a", "-s", str(path), "-o", str(out),
                                 "--format", "png,pdf", "--step", "20"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "figs" / "eq.png").is_file() and (tmp_path / "figs" / "eq.pdf").is_file()
    result = runner.invoke(app, ["plot", "equisep-dynamics", run, "-s", str(path), "-o",
                                 str(tmp_path / "dyn.pdf")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dyn.pdf").read_bytes().startswith(b"%PDF-1.")
    for args, expected in (
        (["equisep", "patterns-only"], "learnscope run equisep"),
        (["equisep-dynamics", "patterns-only"], "ls.Separation"),
        (["equisep", "sep-a", "--step", "7"], "no separation measurement at step 7"),
        (["equisep", "nope"], "No run matches 'nope'"),
        (["equisep-dynamics", "sep-a", "--x", "time"], "x must be"),
    ):
        result = runner.invoke(app, ["plot", *args, "-s", str(path), "-o",
                                     str(tmp_path / "x.png")])
        assert result.exit_code == 2, result.output
        assert "error:" in result.output and expected in " ".join(result.output.split())
        assert "Traceback" not in result.output
    result = runner.invoke(app, ["plot", "equisep", "sep-a", "-s", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no run store" in result.output
