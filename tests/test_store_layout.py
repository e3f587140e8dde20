"""The run-folder layout (learnscope.store.layout): pure paths, written out literally here as the
reference, and the one file-name sanitiser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from learnscope.experiments.status import planned_experiments, record_plan
from learnscope.store import Store, StoreError, layout
from learnscope.store.artifacts import safe_filename


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_layout_paths_are_the_documented_ones_and_create_nothing(tmp_path: Path) -> None:
    root = layout.artifacts_root(tmp_path / "runs.db")
    assert root == tmp_path / "runs.artifacts"
    run = layout.run_folder(root, "r-1")
    assert run == tmp_path / "runs.artifacts" / "r-1"
    assert layout.measurement_folder(root, "r-1", "patterns", 42) == \
        run / "patterns" / "step_000000042"
    assert layout.snapshot_folder(root, "r-1", "w", "all") == run / "w" / "snapshots" / "all"
    assert layout.chunk_file(run, 3) == run / "chunk_00003.bin"
    assert layout.weights_file(run, 7) == run / "weights" / "step_000000007.pt"
    assert layout.weights_folder(run) == run / "weights"
    assert run / layout.CHECKPOINT_FILE == run / "checkpoint.pt"
    assert layout.plan_file(root, "fig 2") == root / "plans" / "fig_2.json"
    assert layout.artifact_file_name("block1.relu#0", ".npz") == "block1.relu#0.npz"
    assert _tree(tmp_path) == []  # nothing was created


@pytest.mark.parametrize(("text", "expected"), [
    ("fc1", "fc1"), ("a-b.c_d", "a-b.c_d"), ("x/y z", "x_y_z"), ("../../escape", ".._.._escape"),
    ("..", "_"), (".", "_"), ("", "_"), ("é", "_"), ("relu#0", "relu_0"),
])
def test_safe_component(text: str, expected: str) -> None:
    assert layout.safe_component(text) == expected
    assert "/" not in layout.safe_component(text, keep="#")


def test_layer_files_keep_the_hash() -> None:
    assert safe_filename("relu#0") == layout.safe_component("relu#0", keep="#") == "relu#0"
    assert safe_filename("a/b") == "a_b"


def test_the_store_uses_the_layout(tmp_path: Path) -> None:
    with Store(tmp_path / "runs.db") as store:
        run_id = store.create_run("r", {})
        folder = store.artifact_path(run_id, 5, "p/q")
        assert folder == tmp_path / "runs.artifacts" / run_id / "p_q" / "step_000000005"
        assert not folder.exists()  # asking for the path creates nothing
        assert store.artifact_dir(run_id, 5, "p/q") == folder and folder.is_dir()
        with pytest.raises(StoreError, match="Unknown run id 'ghost'"):
            store.artifact_path("ghost", 0, "p")
        for name in ("all", "..", "a/b"):
            store.write_measurement(run_id, 0, 0, "w", [], snapshots={name: np.ones(2)})
            series = store.snapshots(run_id, name)
            assert series.folder == layout.snapshot_folder(store.artifacts_root, run_id, "w", name)
            assert series.folder.parent == tmp_path / "runs.artifacts" / run_id / "w" / "snapshots"
            np.testing.assert_array_equal(series.array(), [[1.0, 1.0]])


def test_plans_are_kept_where_the_layout_says(tmp_path: Path) -> None:
    record_plan(tmp_path / "runs.db", "fig/2", ["a", "b"])
    assert _tree(tmp_path) == ["runs.artifacts", "runs.artifacts/plans",
                               "runs.artifacts/plans/fig_2.json"]
    assert planned_experiments(tmp_path / "runs.db") == ["fig/2"]
