"""The quickstart end to end through the command line (`learnscope run / runs / show`).

One quickstart run (1 epoch, measuring every 5 steps) is shared by the tests of this module. The
expected layers, steps and evaluation counts are worked out here from the architecture and the
dataset size, not read back from learnscope.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import learnscope as ls
from learnscope import cli
from learnscope.experiments.quickstart import NETS

EPOCHS, EVERY, BATCH = 1, 5, 64  # BATCH: the quickstart's training batch size
N_DIGITS, TEST_FRACTION = 1797, 0.2  # scikit-learn's digits, the quickstart's split
N_TRAIN = N_DIGITS - math.ceil(TEST_FRACTION * N_DIGITS)  # 1437
TOTAL_STEPS = EPOCHS * math.ceil(N_TRAIN / BATCH)  # 23
# steps count optimizer updates: 0 is the initial network, TOTAL_STEPS the trained one
MEASURED_STEPS = sorted(set(range(0, TOTAL_STEPS + 1, EVERY)) | {TOTAL_STEPS})
# positions per evaluation: MLP 1; CNN 8x8 after the stride-1 conv, 4x4 after the stride-2 conv
POSITIONS = {"mlp": [1, 1, 1], "cnn": [8 * 8, 4 * 4]}
WIDTHS = {"mlp": [64, 48, 32], "cnn": [16, 32]}


def _relu_layers(net: str) -> list[str]:
    """Names of the ReLU modules of a quickstart net, in definition (= forward) order."""
    return [name for name, m in NETS[net]().named_modules() if isinstance(m, nn.ReLU)]


def _flat(text: str) -> str:
    """Whitespace collapsed (rich wraps long lines)."""
    return " ".join(text.split())


def _invoke(*args: str):
    result = CliRunner().invoke(cli.app, list(args))
    assert "Traceback" not in result.output
    return result


def _assert_clean_failure(result) -> str:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception  # no crash
    assert "error:" in result.output
    return _flat(result.output)


@pytest.fixture(scope="module", autouse=True)
def _fixed_console_width():
    """The width the CLI uses when not on a terminal, even under `pytest -s` in one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli.console, "width", 160)
        yield


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, _fixed_console_width):
    """Run `learnscope run quickstart` once; yields (store path, CLI result)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small nets: extra threads only add overhead
    rng_state = torch.get_rng_state()
    db = tmp_path_factory.mktemp("cli") / "sub" / "x.db"  # the folder does not exist yet
    try:
        result = CliRunner().invoke(
            cli.app,
            ["run", "quickstart", "--store", str(db), "--epochs", str(EPOCHS),
             "--every", str(EVERY)],
        )
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng_state)  # the quickstart seeds torch's global RNG
    return db, result


@pytest.fixture(scope="module")
def run_ids(quickstart) -> dict[str, str]:
    db, _ = quickstart
    with ls.store.open(db) as store:
        runs = store.runs()
    return {row["name"].removeprefix("quickstart-"): row["id"] for _, row in runs.iterrows()}


def test_layer_names_of_the_quickstart_nets():
    assert _relu_layers("mlp") == ["features.1", "features.3", "features.5"]
    assert _relu_layers("cnn") == ["features.2", "features.5"]


def test_run_quickstart_exits_cleanly_and_prints_the_layer_tables(quickstart):
    db, result = quickstart
    assert result.exit_code == 0, result.output
    assert result.exception is None
    output = result.output
    assert db.exists()
    for net in ("mlp", "cnn"):
        assert re.search(rf"{net}: run quickstart-{net}-\S+, test accuracy 0\.\d{{3}}",
                         _flat(output))
    for layer in {*_relu_layers("mlp"), *_relu_layers("cnn")}:
        assert re.search(rf"\b{re.escape(layer)}\b", output), layer
    assert "H bits" in output  # the measure table's entropy column


def test_store_has_two_finished_runs(quickstart):
    db, _ = quickstart
    with ls.store.open(db) as store:
        runs = store.runs()
    assert len(runs) == 2
    assert sorted(runs["name"]) == ["quickstart-cnn", "quickstart-mlp"]
    for _, row in runs.iterrows():
        assert row["id"].startswith(row["name"] + "-")
        assert row["status"] == "finished"
        assert row["experiment"] == "quickstart"
        assert row["total_steps"] == TOTAL_STEPS
        assert row["last_step"] == TOTAL_STEPS


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_every_layer_measured_at_the_scheduled_steps(quickstart, run_ids, net):
    db, _ = quickstart
    layers = _relu_layers(net)
    with ls.store.open(db) as store:
        frame = store.metrics(run=run_ids[net], probe="patterns")
    assert set(frame["layer"]) == set(layers)
    assert sorted(set(frame["step"])) == MEASURED_STEPS
    for i, layer in enumerate(layers):
        rows = frame[frame["layer"] == layer]
        assert set(rows["layer_index"]) == {i}
        wide = rows.pivot(index="step", columns="measure", values="value")
        assert list(wide.index) == MEASURED_STEPS
        evaluations = N_TRAIN * POSITIONS[net][i]
        assert (wide["evaluations"] == evaluations).all()
        entropy = wide["entropy"]
        assert entropy.notna().all()
        assert ((entropy >= 0) & (entropy <= math.log2(evaluations) + 1e-9)).all()
        # a layer of d two-state units has at most 2**d patterns: H <= d bits
        assert (entropy <= WIDTHS[net][i] + 1e-9).all()
        h_max = min(WIDTHS[net][i], math.log2(evaluations))
        assert ((wide["rel_entropy"] - entropy / h_max).abs() < 1e-9).all()
        assert (wide["distinct"] >= 1).all() and (wide["distinct"] <= evaluations).all()
        # H <= log2 |A| (equality for uniform counts)
        assert (entropy <= wide["distinct"].map(math.log2) + 1e-9).all()


def test_runs_lists_both_runs_as_finished(quickstart, run_ids):
    db, _ = quickstart
    result = _invoke("runs", "--store", str(db))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for run_id in run_ids.values():
        matching = [line for line in lines if run_id in line]
        assert len(matching) == 1, result.output
        assert "finished" in matching[0]
        assert "100%" in matching[0]


@pytest.mark.parametrize("ref", ["name", "id-prefix"])
@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_show_by_name_prefix_prints_the_layers(quickstart, run_ids, net, ref):
    db, _ = quickstart
    # the name, or the id cut inside its date stamp (unique: the two runs have different names)
    given = f"quickstart-{net}" if ref == "name" else run_ids[net][: len(f"quickstart-{net}-20")]
    result = _invoke("show", given, "--store", str(db))
    assert result.exit_code == 0, result.output
    output = result.output
    assert run_ids[net] in output
    assert "status finished" in _flat(output)
    assert f"last step {TOTAL_STEPS}" in _flat(output)
    other = "cnn" if net == "mlp" else "mlp"
    for layer in _relu_layers(net):
        assert re.search(rf"\b{re.escape(layer)}\b", output), layer
    for layer in set(_relu_layers(other)) - set(_relu_layers(net)):
        assert not re.search(rf"\b{re.escape(layer)}\b", output), layer


def test_show_unknown_run_fails_listing_known_runs(quickstart, run_ids):
    db, _ = quickstart
    output = _assert_clean_failure(_invoke("show", "nosuchrun", "--store", str(db)))
    assert "nosuchrun" in output
    for run_id in run_ids.values():
        assert run_id in output


def test_show_ambiguous_prefix_fails_listing_the_candidates(quickstart, run_ids):
    db, _ = quickstart
    output = _assert_clean_failure(_invoke("show", "quickstart-", "--store", str(db)))
    assert "ambiguous" in output
    for run_id in run_ids.values():
        assert run_id in output


def test_show_unknown_measure_fails_listing_the_measures(quickstart):
    db, _ = quickstart
    result = _invoke("show", "quickstart-mlp", "--store", str(db), "--measure", "nope")
    output = _assert_clean_failure(result)
    assert "nope" in output and "entropy" in output


def test_run_unknown_preset_fails_listing_presets(tmp_path):
    db = tmp_path / "x.db"
    output = _assert_clean_failure(_invoke("run", "nosuchpreset", "--store", str(db)))
    assert "nosuchpreset" in output and "quickstart" in output
    assert not db.exists()


def test_dry_run_runs_nothing(tmp_path):
    db = tmp_path / "x.db"
    result = _invoke("run", "quickstart", "--dry-run", "--store", str(db))
    assert result.exit_code == 0, result.output
    assert "quickstart" in result.output
    assert not db.exists()


@pytest.mark.parametrize("command", ["runs", "show"])
def test_missing_store_fails_with_a_helpful_message(tmp_path, command):
    db = tmp_path / "missing" / "x.db"
    args = ["runs"] if command == "runs" else ["show", "quickstart-mlp"]
    output = _assert_clean_failure(_invoke(*args, "--store", str(db)))
    assert "no store" in output and str(db) in output
    assert "--store" in output  # says what to do
    assert not db.exists() and not db.parent.exists()  # looking did not create it


def test_error_message_prints_a_store_path_with_brackets_verbatim(tmp_path):
    db = tmp_path / "[exp]" / "x.db"
    output = _assert_clean_failure(_invoke("runs", "--store", str(db)))
    assert str(db) in output


def test_a_store_path_with_a_closing_tag_does_not_crash_the_cli(tmp_path):
    db = tmp_path / "[/]" / "x.db"
    output = _assert_clean_failure(_invoke("runs", "--store", str(db)))
    assert str(db) in output


def test_dry_run_prints_a_store_path_with_brackets_verbatim(tmp_path):
    db = tmp_path / "[exp]" / "x.db"
    result = _invoke("run", "quickstart", "--dry-run", "--store", str(db))
    assert result.exit_code == 0
    assert str(db) in _flat(result.output)
