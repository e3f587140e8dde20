"""learnscope.viz and `learnscope plot`: figures drawn from small real runs, checked against the
store read directly with sqlite3 (never against pixels)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from learnscope import store as ls_store
from learnscope import viz
from learnscope.cli import app
from learnscope.viz.runs import FigureError

SMALL_DATA = {"normalize": True, "val_fraction": 0.0, "per_class": 16}  # 160 digits


# --------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One store with real runs: quickstart, early, entropycurve and methods (exact + hashlist)."""
    from learnscope.experiments.presets import execute, expand
    from learnscope.experiments.quickstart import run_quickstart

    path = tmp_path_factory.mktemp("viz") / "runs.db"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_quickstart(path, epochs=1, every_k=5, nets=("mlp",))
        specs = expand("early", "small", models=["resnet8"], steps=5,
                       data_options=SMALL_DATA)
        for family, blocks in (("resnet", [1, 2]), ("convnet", [1])):  # depths 8, 14 and 8
            specs += expand("entropycurve", "small", models=[family], blocks=blocks,
                            seeds=[0, 1], steps=6, schedule="at 0 3; end",
                            data_options=SMALL_DATA)
        methods = [s for s in expand("methods", "small", models=["convnet8", "resnet14"],
                                     epochs=2, data_options=SMALL_DATA)
                   if s.name.endswith("-relu-s0")]
        specs += methods
        specs += [replace(s, name=f"{s.name}-hashlist",
                          probe_options={**s.probe_options, "mode": "hashlist",
                                         "table_size": 4096})
                  for s in methods if "convnet8" in s.name]
        for spec in specs:
            assert execute(spec, path)[1] == "finished"
    finally:
        torch.set_num_threads(threads)
    return path


def query(store: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(store) as conn:
        return conn.execute(sql, params).fetchall()


def run_id(store: Path, name: str) -> str:
    rows = query(store, "SELECT id FROM runs WHERE name = ?", name)
    assert len(rows) == 1
    return rows[0][0]


def pivot(store: Path, run: str, measure: str) -> tuple[list[int], list[int], np.ndarray]:
    """(steps, layer indexes, layers x steps values) of one measure, by hand."""
    rows = query(store, "SELECT step, layer_index, value FROM metrics WHERE run = ? AND "
                 "measure = ? AND layer_index >= 0 AND probe = 'patterns'", run, measure)
    steps = sorted({r[0] for r in rows})
    layers = sorted({r[1] for r in rows})
    table = np.full((len(layers), len(steps)), np.nan)
    for step, layer, value in rows:
        table[layers.index(layer), steps.index(step)] = np.nan if value is None else value
    return steps, layers, table


def panels(figure) -> list:
    return [ax for ax in figure.axes if ax.get_label() == "panel"]


def colorbars(figure) -> list:
    return [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]


def check_png(path: Path, figure) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode in ("RGB", "RGBA")
        width, height = image.size
    fig_w, fig_h = figure.get_size_inches()
    assert width >= 300 and height >= 200
    assert width / height == pytest.approx(fig_w / fig_h, rel=0.35)  # tight bbox trims a little


def check_pdf(path: Path) -> None:
    """A structurally valid PDF: header, trailer, and an xref table whose offsets hit objects."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-1.")
    assert data.rstrip().endswith(b"%%EOF")
    start = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    assert data[start:start + 4] == b"xref"
    header = re.match(rb"xref\s+(\d+)\s+(\d+)\s+", data[start:])
    first, count = int(header[1]), int(header[2])
    entries = data[start + header.end():].split(b"\n", count)[:count]
    objects = 0
    for number, entry in enumerate(entries, start=first):
        offset, _, kind = entry.split()[:3]
        if kind == b"n":
            assert re.match(rb"%d 0 obj" % number, data[int(offset):int(offset) + 20])
            objects += 1
    assert objects > 5
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1


def check_saved(figure, folder: Path, stem: str) -> None:
    png = viz.save(figure, folder / f"{stem}.png")
    pdf = viz.save(figure, folder / f"{stem}.pdf")
    check_png(png, figure)
    check_pdf(pdf)


def assert_cells_centred(mesh, xs) -> None:
    """Each column of a heatmap spans its x value, with edges half-way between neighbours."""
    edges = mesh.get_coordinates()[0, :, 0]
    xs = np.asarray(xs, dtype=float)
    assert len(edges) == len(xs) + 1
    np.testing.assert_allclose(edges[1:-1], (xs[1:] + xs[:-1]) / 2)
    assert edges[0] < xs[0] and edges[-1] > xs[-1]


def line_by_gid(ax, gid: str):
    (line,) = [line for line in ax.get_lines() if line.get_gid() == gid]
    return line


# --------------------------------------------------------------------------- figures


def test_figure1_first_and_last_layer_of_each_run(store, tmp_path):
    quick = run_id(store, "quickstart-mlp")
    before = dict(matplotlib.rcParams)
    figure = viz.figure1(store, [quick], experiment="early")
    assert dict(matplotlib.rcParams) == before  # style applied in a context only
    runs = [quick, run_id(store, "early-small-resnet8-s0")]
    found = panels(figure)
    assert len(found) == 5 * len(runs)  # one row of five panels per run
    assert [ax.panel_info["run"] for ax in found[::5]] == runs
    assert figure.get_size_inches()[0] <= 8.27  # as wide as an A4 page
    for run in runs:
        steps, layers, distinct = pivot(store, run, "distinct")
        for ax in (a for a in found if a.panel_info["run"] == run):
            info = ax.panel_info
            for where, row in (("last", -1), ("first", 0)):
                assert info["layer_indexes"][where] == layers[row]
                (line,) = [line for line in ax.get_lines() if line.get_gid() == where]
                x, y = line.get_data()
                d = distinct[row]
                if info["panel"] == "A":
                    expected = d / d.max()
                elif info["panel"] == "B":  # turnover: (added + removed since last) / |A|
                    added = pivot(store, run, "added_since_last")[2][row]
                    removed = pivot(store, run, "removed_since_last")[2][row]
                    expected = (added + removed) / d
                else:
                    expected = pivot(store, run, info["measure"])[2][row]
                np.testing.assert_allclose(y, expected, rtol=1e-12)
                np.testing.assert_array_equal(x, steps)
            if info["panel"] != "B":
                assert ax.get_ylim() == (0.0, 1.0)  # shares on a fixed axis
    assert all(ax.get_title() for ax in found)  # every panel names its measure
    check_saved(figure, tmp_path, "figure1")


def test_figure2_mean_and_band_over_seeds(store, tmp_path):
    figure = viz.figure2(store, experiment="entropycurve")
    found = panels(figure)
    steps = [r[0] for r in query(store, "SELECT DISTINCT step FROM measurements WHERE probe = "
                                 "'patterns' AND run LIKE 'entropycurve-%' ORDER BY step")]
    assert steps == [0, 3, 6]
    assert len(found) == 2 * len(steps)  # families resnet, convnet x measure points
    families = sorted({ax.panel_info["family"] for ax in found})
    assert families == ["convnet", "resnet"]
    expected_labels: dict[str, str] = {}
    for ax in found:
        k, family = ax.panel_info["point"], ax.panel_info["family"]
        assert ax.panel_info["steps"] == [steps[k]]
        assert f"step {steps[k]}" in found[2 * k].get_ylabel()
        depths = (8, 14) if family == "resnet" else (8,)
        for depth in depths:
            model = f"{family}{depth}"
            rows = query(store, "SELECT m.run, m.layer_index, m.value FROM metrics m JOIN runs r "
                         "ON r.id = m.run WHERE r.name LIKE ? AND m.measure = 'rel_entropy' "
                         "AND m.step = ? AND m.layer_index >= 0", f"entropycurve-small-{model}-s%",
                         steps[k])
            seeds = sorted({r[0] for r in rows})
            layers = sorted({r[1] for r in rows})
            # runs whose last test accuracy is at most 1/10 + 0.02 (chance level on digits) are
            # left out of the mean, unless every run is
            chance = {run for run in seeds if query(
                store, "SELECT value FROM metrics WHERE run = ? AND measure = 'test_accuracy' "
                "ORDER BY step DESC LIMIT 1", run)[0][0] <= 0.12}
            kept = [run for run in seeds if run not in chance] or seeds
            table = np.array([[v for run, i, v in sorted(rows, key=lambda r: r[1]) if run == s]
                              for s in kept])
            assert len(seeds) == 2 and table.shape == (len(kept), len(layers))
            expected_labels[model] = (f"{model} (n=2)" if not chance else
                                      f"{model} (n=2, all at CHANCE LEVEL)" if len(chance) == 2
                                      else f"{model} (n=1; 1 at chance level left out)")
            line = line_by_gid(ax, model)
            np.testing.assert_array_equal(line.get_xdata(), layers)
            np.testing.assert_allclose(line.get_ydata(), table.mean(axis=0), rtol=1e-12)
            (band,) = [c for c in ax.collections if c.get_gid() == model]
            ys = band.get_paths()[0].vertices[:, 1]
            mean, std = table.mean(axis=0), table.std(axis=0)
            assert ys.max() == pytest.approx((mean + std).max(), rel=1e-9)
            assert ys.min() == pytest.approx((mean - std).min(), rel=1e-9)
            assert line.get_color() == line_by_gid(found[0], f"resnet{depth}").get_color()
        if k == 0:
            labels = [t.get_text() for t in ax.get_legend().get_texts()]
            assert labels[:len(depths)] == [expected_labels[f"{family}{depth}"]
                                            for depth in depths]
    check_saved(figure, tmp_path, "figure2")


@pytest.mark.parametrize("mode, third", [("exact", "distinct_frac"), ("hashlist", "occupancy")])
def test_figure3_heatmaps_per_method(store, tmp_path, mode, third):
    if mode == "exact":
        runs = [run_id(store, f"methods-small-{net}-relu-s0") for net in ("convnet8", "resnet14")]
    else:
        runs = [run_id(store, "methods-small-convnet8-relu-s0-hashlist")]
    figure = viz.figure3(store, runs)
    found = panels(figure)
    assert len(found) == 3 * len(runs)
    assert len(colorbars(figure)) == 3  # one per row
    measures = ["rel_entropy", "weighted_jaccard_since_final", third]
    assert [ax.panel_info["measure"] for ax in found] == [m for m in measures for _ in runs]
    layer_counts = [len(pivot(store, run, "rel_entropy")[1]) for run in runs]
    assert mode == "hashlist" or layer_counts[0] < layer_counts[1]  # rows still line up
    for row, measure in enumerate(measures):
        row_axes = found[row * len(runs):(row + 1) * len(runs)]
        tables = [pivot(store, run, measure)[2] for run in runs]
        limits = {ax.collections[0].get_clim() for ax in row_axes}
        assert limits == {(min(np.nanmin(t) for t in tables), max(np.nanmax(t) for t in tables))}
        assert {ax.get_ylim() for ax in row_axes} == {(-0.5, max(layer_counts) - 0.5)}
        for ax, run, table in zip(row_axes, runs, tables, strict=True):
            mesh = ax.collections[0]
            np.testing.assert_allclose(np.ma.filled(mesh.get_array(), np.nan), table,
                                       rtol=1e-12)
            # x = epochs: the since-final pass leaves the pattern rows without an epoch, so it
            # comes from the training log (epoch = step / steps per epoch) at the same steps
            steps = pivot(store, run, measure)[0]
            logged = dict(query(store, "SELECT step, epoch FROM measurements WHERE run = ? AND "
                                "probe = 'train'", run))
            expected = [0.0 if s == 0 else logged[s] for s in steps]
            assert_cells_centred(mesh, expected)
            assert ax.panel_info["x"] == "epoch"
    check_saved(figure, tmp_path, f"figure3-{mode}")


def test_figure3_without_since_final_says_what_to_run(store):
    quick = run_id(store, "quickstart-mlp")
    with pytest.raises(FigureError) as caught:
        viz.figure3(store, [run_id(store, "methods-small-convnet8-relu-s0"), quick])
    message = str(caught.value)
    assert quick in message and "weighted_jaccard_since_final" in message
    assert "since-final pass" in message and "measure_since_final" in message


def batch_size(store, run: str) -> int:
    """The training batch size a preset run was stored with."""
    with ls_store.open(store, read_only=True) as s:
        return s.run(run)["config"]["user"]["recipe_options"]["batch_size"]


def test_figure4_every_layer_over_training(store, tmp_path):
    runs = [run_id(store, f"methods-small-{net}-relu-s0") for net in ("convnet8", "resnet14")]
    figure = viz.figure4(store, runs)
    found = panels(figure)
    assert len(found) == 5 * len(runs)
    assert len(colorbars(figure)) == len(runs)
    for ax in found:
        run = ax.panel_info["run"]
        steps, layers, table = pivot(store, run, ax.panel_info["measure"])
        lines = [line for line in ax.get_lines() if line.get_gid() != "zero"]
        assert len(lines) == len(layers)
        if ax.panel_info["panel"] in ("C", "D", "E"):
            for line, values in zip(lines, table, strict=True):
                np.testing.assert_allclose(line.get_ydata(), values, rtol=1e-12)
                per_epoch = -(-160 // batch_size(store, run))  # SMALL_DATA's 160 digits
                np.testing.assert_allclose(line.get_xdata(), [s / per_epoch for s in steps])
            assert ax.get_ylim() == (0.0, 1.0)
        if ax.panel_info["panel"] == "B":
            added = pivot(store, run, "added_since_last")[2]
            removed = pivot(store, run, "removed_since_last")[2]
            got = np.array([line.get_ydata() for line in lines])
            np.testing.assert_allclose(got, (added + removed) / table, rtol=1e-12)
    colours = [line.get_color() for line in found[2].get_lines()]
    assert len(set(map(tuple, colours))) == len(colours)  # one colour per layer
    check_saved(figure, tmp_path, "figure4")


def test_heatmap_and_curves_match_the_store(store, tmp_path):
    quick = run_id(store, "quickstart-mlp")
    steps, layers, table = pivot(store, quick, "rel_entropy")
    figure = viz.heatmap(store, "quickstart-mlp", "rel_entropy")
    (ax,) = panels(figure)
    assert len(colorbars(figure)) == 1
    np.testing.assert_allclose(np.ma.filled(ax.collections[0].get_array(), np.nan), table)
    assert_cells_centred(ax.collections[0], steps)
    assert ax.get_xlabel() == "step" and ax.get_title()
    check_saved(figure, tmp_path, "heatmap")

    figure = viz.curves(store, quick[:20], "max_frac")
    (ax,) = panels(figure)
    assert len(colorbars(figure)) == 1
    steps, layers, table = pivot(store, quick, "max_frac")
    assert len(ax.get_lines()) == len(layers)
    for line, values in zip(ax.get_lines(), table, strict=True):
        np.testing.assert_array_equal(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), values)
    check_saved(figure, tmp_path, "curves")

    methods = run_id(store, "methods-small-resnet14-relu-s0")
    figure = viz.heatmap(store, methods, "distinct_frac", x="epoch")
    assert panels(figure)[0].panel_info["x"] == "epoch"
    with pytest.raises(FigureError, match="epochs"):
        viz.heatmap(store, quick, "rel_entropy", x="epoch")  # quickstart logs whole epochs
    with pytest.raises(FigureError, match="no nonsense_measure.*it has: .*rel_entropy"):
        viz.curves(store, quick, "nonsense_measure")
    with pytest.raises(FigureError, match="suffix"):
        viz.save(figure, tmp_path / "figure.svg")
    with pytest.raises(FigureError, match="no run store"):
        viz.heatmap(tmp_path / "missing.db", quick, "rel_entropy")


def test_import_is_light_and_no_pyplot_state():
    code = ("import sys, learnscope.cli, learnscope.viz; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    if "matplotlib.pyplot" in sys.modules:  # figures are never registered with pyplot
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


def test_old_module_names_still_import_the_same_objects():
    """viz.data (renamed viz.runs) and viz.figures (split by figure family) keep old imports."""
    import learnscope.viz.data as old_data
    import learnscope.viz.figures as figures
    import learnscope.viz.runs as runs
    from learnscope.viz import measure_figures, paper_figures

    assert old_data.__all__ == runs.__all__
    for name in runs.__all__:
        assert getattr(old_data, name) is getattr(runs, name), name
    for name in ("figure1", "figure2", "figure3", "figure4"):
        assert getattr(figures, name) is getattr(paper_figures, name) is getattr(viz, name)
    for name in ("heatmap", "curves"):
        assert getattr(figures, name) is getattr(measure_figures, name) is getattr(viz, name)
    assert viz.save is figures.save and figures.FigureError is FigureError


# --------------------------------------------------------------------------- command line


def invoke(*args: str):
    result = CliRunner().invoke(app, ["plot", *args])
    return result, result.output


def test_cli_writes_figures(store, tmp_path):
    quick = run_id(store, "quickstart-mlp")
    out = tmp_path / "x.pdf"
    result, output = invoke("heatmap", quick, "-m", "rel_entropy", "-s", str(store), "-o",
                            str(out))
    assert result.exit_code == 0, output
    check_pdf(out)
    assert f"wrote {out}" in output.replace("\n", "")
    result, output = invoke("figure2", "--experiment", "entropycurve", "-s", str(store), "-o",
                            str(tmp_path / "sub" / "fig2.png"), "--format", "png,pdf")
    assert result.exit_code == 0, output
    assert (tmp_path / "sub" / "fig2.png").is_file() and (tmp_path / "sub" / "fig2.pdf").is_file()
    check_pdf(tmp_path / "sub" / "fig2.pdf")
    result, output = invoke("curves", "quickstart-mlp", "-m", "entropy", "-s", str(store),
                            "-o", str(tmp_path / "c.png"))
    assert result.exit_code == 0, output
    with Image.open(tmp_path / "c.png") as image:
        assert image.format == "PNG"


@pytest.mark.parametrize("args, expected", [
    (["heatmap", "quickstart-mlp", "-m", "rel_entropy", "-s", "{missing}"], "no run store"),
    (["heatmap", "no-such-run", "-m", "rel_entropy", "-s", "{store}"], "No run matches"),
    (["curves", "quickstart-mlp", "-m", "nonsense", "-s", "{store}"], "has no nonsense"),
    (["figure1", "quickstart-mlp", "-s", "{store}", "-o", "{tmp}/f.svg"], "suffix '.svg'"),
    (["figure1", "quickstart-mlp", "-s", "{store}", "--format", "png,gif"], "unknown format"),
    (["figure3", "quickstart-mlp", "-s", "{store}"], "since-final pass"),
    (["figure4", "-s", "{store}"], "no runs given"),
    (["figure2", "-e", "nope", "-s", "{store}"], "no runs of experiment 'nope'"),
    (["heatmap", "quickstart-mlp", "-m", "rel_entropy", "--x", "time", "-s", "{store}"],
     "x must be"),
])
def test_cli_errors_exit_2_without_traceback(store, tmp_path, args, expected):
    args = [a.format(store=store, missing=tmp_path / "none.db", tmp=tmp_path) for a in args]
    result, output = invoke(*args)
    flat = " ".join(output.split())
    assert result.exit_code == 2, output
    assert flat.startswith("error:") and expected in flat
    assert "Traceback" not in output
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.pdf"))
