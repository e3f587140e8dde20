"""Exports (`learnscope.exports`, `learnscope export`): CSV, Parquet and TensorBoard.

Every export is read back with an independent reader (pandas for CSV/Parquet, TensorBoard's own
EventAccumulator for event files) and compared with the metrics table queried directly with
sqlite3, not with learnscope's store reader.
"""

from __future__ import annotations

import math
import sqlite3
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from learnscope import cli, exports
from learnscope.experiments.quickstart import run_quickstart
from learnscope.store import StoreError
from learnscope.store import open as open_store

COLUMNS = ["run", "run_name", "experiment", "step", "epoch", "probe", "layer", "layer_index",
           "measure", "value"]
KEY = ["run", "step", "probe", "layer", "measure"]
REFERENCE_SQL = """
SELECT m.run, r.name AS run_name, r.experiment, m.step, ms.epoch, m.probe, m.layer,
       m.layer_index, m.measure, m.value
FROM metrics AS m
JOIN measurements AS ms ON ms.run = m.run AND ms.step = m.step AND ms.probe = m.probe
JOIN runs AS r ON r.id = m.run
WHERE m.run = ?
"""


@pytest.fixture(scope="module", autouse=True)
def _fixed_console_width():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli.console, "width", 160)
        yield


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """A store with one real quickstart run (MLP, 1 epoch) and one hand-written run."""
    path = tmp_path_factory.mktemp("store") / "runs.db"
    run_quickstart(path, epochs=1, every_k=5, nets=("mlp",))
    with open_store(path) as store:
        # no experiment, no epochs, two probes with layer values, NaN and infinities
        run = store.create_run("handmade", {"lr": 0.5, "nested": {"a": [1, 2]}}, total_steps=4)
        for step in (0, 2, 4):
            store.write_measurement(run, step, None, "patterns", [
                ("relu", 0, "distinct", float(10 + step)),
                ("relu", 0, "jaccard_since_last", math.nan if step == 0 else 0.5 + step / 100),
            ])
            store.write_measurement(run, step, None, "other", [
                ("relu", 0, "distinct", float(step)),
                ("relu", 0, "score", math.inf if step == 2 else -math.inf if step == 4 else 1.0),
            ])
        store.set_status(run, "finished")
    return path


def _ids(path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, id FROM runs").fetchall())


@pytest.fixture(scope="module")
def run_ids(store_path) -> dict[str, str]:
    return _ids(store_path)


def _reference(path, run_id: str) -> pd.DataFrame:
    """The run's metrics straight from SQLite (NULL -> NaN), sorted by KEY."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(REFERENCE_SQL, (run_id,)).fetchall()
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["value"] = frame["value"].astype("float64")
    frame["epoch"] = frame["epoch"].astype("float64")
    return _normalised(frame)


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[COLUMNS].copy()
    for column in ("run", "run_name", "experiment", "probe", "layer", "measure"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    for column in ("step", "layer_index"):
        frame[column] = frame[column].astype("int64")
    for column in ("epoch", "value"):
        frame[column] = frame[column].astype("float64")
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _invoke(*args: str):
    result = CliRunner().invoke(cli.app, ["export", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def _ok(*args: str) -> str:
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    return _flat(result.output)


def _error(*args: str) -> str:
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    output = _flat(result.output)
    assert output.startswith("error:"), output
    return output


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("name", ["quickstart-mlp", "handmade"])
def test_table_export_equals_the_sqlite_metrics(store_path, run_ids, tmp_path, fmt, name):
    out = tmp_path / f"export.{fmt}"
    output = _ok(name, "--store", store_path, "--format", fmt, "--out", out)
    assert run_ids[name] in output and "rows" in output
    frame = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    assert list(frame.columns) == COLUMNS
    expected = _reference(store_path, run_ids[name])
    assert len(expected) > 0
    pd.testing.assert_frame_equal(_normalised(frame), expected, check_exact=True)
    # the file's own row order: run, step, probe, layer_index, measure
    order = frame[["step", "probe", "layer_index", "measure"]].to_records(index=False).tolist()
    assert order == sorted(order)


def test_quickstart_table_has_the_expected_content(store_path, run_ids, tmp_path):
    out = tmp_path / "mlp.csv"
    _ok("quickstart-mlp", "-s", store_path, "-o", out)
    frame = pd.read_csv(out)
    assert set(frame["run"]) == {run_ids["quickstart-mlp"]}
    assert set(frame["experiment"]) == {"quickstart"}
    assert set(frame["probe"]) == {"patterns", "train"}
    # 1437 digits, batches of 64: 23 updates; measured every 5 and at the end
    assert sorted(set(frame.loc[frame["probe"] == "patterns", "step"])) == [0, 5, 10, 15, 20, 23]
    assert sorted(set(frame.loc[frame["measure"] == "loss", "step"])) == list(range(1, 24))
    # the first since-last comparison has nothing to compare with: NaN (an empty CSV field)
    first = frame[(frame["step"] == 0) & (frame["measure"] == "jaccard_since_last")]
    assert len(first) == 3 and first["value"].isna().all()


def test_measure_filter(store_path, run_ids, tmp_path):
    out = tmp_path / "some.csv"
    _ok("quickstart-mlp", "-s", store_path, "-o", out, "-m", "entropy", "-m", "loss")
    frame = pd.read_csv(out)
    assert set(frame["measure"]) == {"entropy", "loss"}
    expected = _reference(store_path, run_ids["quickstart-mlp"])
    expected = expected[expected["measure"].isin(["entropy", "loss"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(_normalised(frame), expected)


def test_to_frame_api(store_path, run_ids):
    mlp, hand = run_ids["quickstart-mlp"], run_ids["handmade"]
    frame = exports.to_frame(store_path, [hand, "quickstart-mlp"], measures="distinct")
    assert list(frame.columns) == COLUMNS
    assert list(dict.fromkeys(frame["run"])) == [hand, mlp]  # in the order asked
    assert set(frame["measure"]) == {"distinct"}
    # a measure of only one of the runs is fine; one of none is an error listing what exists
    frame = exports.to_frame(store_path, [hand, mlp], measures=["score", "loss"])
    assert set(zip(frame["run"], frame["measure"], strict=True)) == {(hand, "score"),
                                                                      (mlp, "loss")}
    with pytest.raises(ValueError, match="Unknown measure 'bogus'.*Available measures: .*score"):
        exports.to_frame(store_path, [hand, mlp], measures=["bogus"])
    with pytest.raises(ValueError, match="Unknown layer 'nope'"):
        exports.to_frame(store_path, mlp, layers=["nope"])
    frame = exports.to_frame(store_path, None, probe="other")  # every run
    assert set(frame["run"]) == {hand}
    with open_store(store_path) as store:  # an open Store works too, and stays open
        assert len(exports.to_frame(store, hand, layers="relu")) == 12
        assert len(store.runs()) == 2
    with pytest.raises(StoreError, match="No run matches"):
        exports.to_frame(store_path, "missing")
    with pytest.raises(FileNotFoundError, match="no learnscope store"):
        exports.to_frame(store_path.parent / "absent.db", hand)
    assert not (store_path.parent / "absent.db").exists()  # not created by asking


def test_api_writers(store_path, run_ids, tmp_path):
    hand = run_ids["handmade"]
    path = exports.to_csv(store_path, hand, tmp_path / "sub" / "h.csv.gz")  # compressed
    assert path == tmp_path / "sub" / "h.csv.gz"
    pd.testing.assert_frame_equal(_normalised(pd.read_csv(path)), _reference(store_path, hand))
    frame = pd.read_csv(path)
    assert np.isposinf(frame["value"]).sum() == 1 and np.isneginf(frame["value"]).sum() == 1
    with pytest.raises(FileExistsError, match="already exists"):
        exports.to_parquet(store_path, hand, path)
    exports.to_parquet(store_path, hand, path, overwrite=True)  # any name: content is Parquet
    pd.testing.assert_frame_equal(_normalised(pd.read_parquet(path)), _reference(store_path, hand))
    with pytest.raises(IsADirectoryError):
        exports.to_csv(store_path, hand, tmp_path)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["h.csv.gz"]


# --------------------------------------------------------------------------- TensorBoard


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def _expected_series(path, run_id: str, tag) -> dict[str, list[tuple[int, float]]]:
    """Non-NaN values from SQLite, one series per (probe, layer, measure), named by `tag`."""
    reference = _reference(path, run_id)
    reference = reference[reference["value"].notna()]
    series: dict[str, list[tuple[int, float]]] = {}
    keys = set()
    for row in reference.sort_values("step", kind="stable").itertuples():
        keys.add((row.probe, row.layer, row.measure))
        series.setdefault(tag(row), []).append((int(row.step), float(row.value)))
    assert len(series) == len(keys)  # the naming rule gives one tag per series
    return series


def _assert_same_series(found, expected) -> None:
    assert sorted(found) == sorted(expected)
    for tag, points in expected.items():
        steps = [step for step, _ in found[tag]]
        assert steps == [step for step, _ in points], tag
        values = np.array([value for _, value in found[tag]], dtype=np.float32)
        np.testing.assert_array_equal(values, np.array([v for _, v in points], np.float32), tag)


def test_tensorboard_export_has_one_series_per_layer_and_measure(store_path, run_ids, tmp_path):
    run_id = run_ids["quickstart-mlp"]
    output = _ok("quickstart-mlp", "-s", store_path, "-f", "tensorboard", "-o", tmp_path / "tb")
    assert "tensorboard --logdir" in output
    found = _scalars(tmp_path / "tb")

    def tag(row):  # documented: measure/layer for layers, probe/measure for model scalars
        return f"{row.probe}/{row.measure}" if row.layer_index < 0 else f"{row.measure}/{row.layer}"

    expected = _expected_series(store_path, run_id, tag)
    _assert_same_series(found, expected)
    # 3 ReLU layers x 20 measures, plus the logged loss and test accuracy
    assert len(found) == 3 * 20 + 2
    assert [step for step, _ in found["entropy/features.1"]] == [0, 5, 10, 15, 20, 23]
    # NaN (the first since-last comparison) is skipped, not written
    assert [step for step, _ in found["jaccard_since_last/features.1"]] == [5, 10, 15, 20, 23]
    assert [step for step, _ in found["train/loss"]] == list(range(1, 24))


def test_tensorboard_run_text_and_probe_names(store_path, run_ids, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    hand = run_ids["handmade"]
    exports.to_tensorboard(store_path, hand, tmp_path / "hand")
    found = _scalars(tmp_path / "hand")
    # two probes with layer values: the probe joins the tag
    expected = _expected_series(store_path, hand,
                                lambda row: f"{row.measure}/{row.probe}/{row.layer}")
    _assert_same_series(found, expected)
    assert found["score/other/relu"][1][1] == math.inf
    accumulator = EventAccumulator(str(tmp_path / "hand"), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert accumulator.Tags()["tensors"] == ["run"]
    text = accumulator.Tensors("run")[0].tensor_proto.string_val[0].decode()
    assert hand in text and '"lr": 0.5' in text


def test_tensorboard_several_runs_and_overwrite(store_path, run_ids, tmp_path):
    logdir = tmp_path / "all"
    assert exports.to_tensorboard(store_path, None, logdir, measures="distinct") == logdir
    assert sorted(p.name for p in logdir.iterdir()) == sorted(run_ids.values())
    assert sorted(_scalars(logdir / run_ids["handmade"])) == ["distinct/other/relu",
                                                              "distinct/patterns/relu"]
    with pytest.raises(FileExistsError, match="not empty"):
        exports.to_tensorboard(store_path, None, logdir)
    exports.to_tensorboard(store_path, None, logdir, measures="score", overwrite=True)
    hand = logdir / run_ids["handmade"]
    assert sorted(_scalars(hand)) == ["score/relu"]  # replaced, not added to
    assert len(list(hand.iterdir())) == 1
    # a folder with anything but event files is never overwritten
    (hand / "notes.txt").write_text("mine")
    output = _error("handmade", "-s", store_path, "-f", "tensorboard", "-o", hand, "--force")
    assert "other than TensorBoard event files" in output
    assert (hand / "notes.txt").read_text() == "mine"
    assert not [p for p in logdir.iterdir() if p.name.startswith(".")]  # no leftovers


# --------------------------------------------------------------------------- CLI behaviour


def test_default_destinations(store_path, run_ids, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_id = run_ids["quickstart-mlp"]
    _ok("quickstart-mlp", "-s", store_path)
    _ok("quickstart-mlp", "-s", store_path, "-f", "Parquet", "-m", "loss")
    _ok(run_id[:-3], "-s", store_path, "-f", "tensorboard", "-m", "loss")  # unique id prefix
    assert (tmp_path / f"{run_id}.csv").is_file()
    assert set(pd.read_parquet(tmp_path / f"{run_id}.parquet")["measure"]) == {"loss"}
    assert sorted(_scalars(tmp_path / "tb" / run_id)) == ["train/loss"]


def test_existing_destination_needs_force(store_path, tmp_path):
    out = tmp_path / "x.csv"
    out.write_text("precious\n")
    output = _error("handmade", "-s", store_path, "-o", out)
    assert "already exists" in output and "--force" in output
    assert out.read_text() == "precious\n"
    _ok("handmade", "-s", store_path, "-o", out, "--force")
    assert len(pd.read_csv(out)) == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope",), "No run matches 'nope'"),
        (("handmade", "-f", "xml"), "unknown format 'xml'; use one of: csv, parquet, tensorboard"),
        (("handmade", "-m", "bogus"), "Unknown measure 'bogus'"),
        (("handmade", "-m", "[red]x"), "Unknown measure '[red]x'"),  # markup is escaped
        (("handmade", "-f", "tensorboard", "-m", "bogus"), "Unknown measure 'bogus'"),
    ],
)
def test_cli_errors(store_path, tmp_path, args, message):
    out = tmp_path / "out"
    output = _error(*args, "-s", store_path, "-o", out)
    assert message in output
    assert not out.exists()


def test_missing_store(tmp_path):
    output = _error("handmade", "-s", tmp_path / "none.db", "-o", tmp_path / "x.csv")
    assert "no store at" in output
    assert not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    ("fmt", "module"), [("parquet", "pyarrow"), ("tensorboard", "tensorboard")]
)
def test_missing_extra(store_path, tmp_path, monkeypatch, fmt, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    output = _error("handmade", "-s", store_path, "-f", fmt, "-o", tmp_path / "out")
    assert f"pip install 'learnscope[{fmt}]'" in output
    assert not (tmp_path / "out").exists()
    writer = exports.to_parquet if fmt == "parquet" else exports.to_tensorboard
    with pytest.raises(exports.MissingExtraError, match=rf"learnscope\[{fmt}\]"):
        writer(store_path, "handmade", tmp_path / "out")


def test_a_failed_write_leaves_nothing(store_path, tmp_path, monkeypatch):
    out = tmp_path / "x.csv"

    def broken(self, path, *args, **kwargs):
        with open(path, "w") as handle:
            handle.write("run,step\nhalf")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    assert "disk full" in _error("handmade", "-s", store_path, "-o", out)
    assert list(tmp_path.iterdir()) == []
    out.write_text("old\n")
    assert "disk full" in _error("handmade", "-s", store_path, "-o", out, "--force")
    assert out.read_text() == "old\n" and list(tmp_path.iterdir()) == [out]
