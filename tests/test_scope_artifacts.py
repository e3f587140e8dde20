"""A measurement's artifacts: files, then the database row, then the manifest (docs/store.md).

A failure between them (a full disk) must never leave a manifest without its row; a folder
with files but no manifest is read as missing.
"""

from __future__ import annotations

import errno
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import learnscope as ls
from learnscope.store.artifacts import MANIFEST
from learnscope.store.db import Store

PAGE = 4096  # tmpfs allocates whole pages

DATA = torch.randn(400, 6, generator=torch.Generator().manual_seed(3))


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU())


def manifests_without_rows(store: Store) -> list[Path]:
    """Every manifest in the store's artifact tree whose (run, probe, step) has no row."""
    orphans = []
    for manifest in sorted(store.artifacts_root.glob(f"*/*/step_*/{MANIFEST}")):
        folder = manifest.parent
        run_id, probe, step = folder.parent.parent.name, folder.parent.name, folder.name
        if int(step.removeprefix("step_")) not in store.measured_steps(run_id, probe):
            orphans.append(manifest)
    return orphans


def fail_measurement_at(monkeypatch: pytest.MonkeyPatch, failing_step: int) -> None:
    """Make the store's measurement write at `failing_step` fail as on a full disk."""
    write = Store.write_measurement

    def write_or_fail(self, run_id, step, *args, **kwargs):
        if step == failing_step:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return write(self, run_id, step, *args, **kwargs)

    monkeypatch.setattr(Store, "write_measurement", write_or_fail)


def test_a_measurement_whose_row_fails_leaves_no_manifest_and_a_failed_run(tmp_path,
                                                                            monkeypatch):
    fail_measurement_at(monkeypatch, 2)
    store_path = tmp_path / "s.db"
    scope = ls.Scope(make_model(), [ls.ActivationPatterns(DATA, save_counts=True)], ls.every(1),
                     store_path, name="full-disk")
    scope.step(0)
    scope.step(1)
    with pytest.raises(OSError, match="No space left"):
        scope.step(2)
    monkeypatch.undo()
    with ls.store.open(store_path, read_only=True) as store:
        run = store.run(scope.run_id)
        assert run["status"] == "failed" and "No space left" in run["error"]
        assert store.measured_steps(scope.run_id, "patterns") == [0, 1]
        unstored = store.artifact_dir(scope.run_id, 2, "patterns")
        assert sorted(unstored.glob("*.npz")), "the files are written before the row"
        assert not (unstored / MANIFEST).exists()
        assert manifests_without_rows(store) == []
        for step in (0, 1):
            assert (store.artifact_dir(scope.run_id, step, "patterns") / MANIFEST).exists()
        with pytest.raises(FileNotFoundError, match="no complete artifacts"):
            ls.ActivationPatterns.load_counts(unstored)


def test_a_resumed_run_measures_the_failed_step_again_and_completes_its_artifacts(tmp_path,
                                                                                   monkeypatch):
    fail_measurement_at(monkeypatch, 1)
    store_path = tmp_path / "s.db"
    model = make_model()
    scope = ls.Scope(model, [ls.ActivationPatterns(DATA, save_counts=True)], ls.every(1),
                     store_path, name="resumed")
    scope.step(0)
    with pytest.raises(OSError):
        scope.step(1)
    monkeypatch.undo()
    with ls.Scope(model, [ls.ActivationPatterns(DATA, save_counts=True)], ls.every(1),
                  store_path, resume=scope.run_id) as resumed:
        resumed.step(1)
    with ls.store.open(store_path, read_only=True) as store:
        assert store.run(scope.run_id)["status"] == "finished"
        saved = ls.ActivationPatterns.load_counts(store.artifact_dir(scope.run_id, 1, "patterns"))
    fresh = ls.patterns.count(model, DATA)
    assert set(saved) == set(fresh)
    for layer, counts in fresh.items():
        assert saved[layer].keys.tolist() == counts.keys.tolist()
        assert saved[layer].counts.tolist() == counts.counts.tolist()


def test_a_row_whose_manifest_is_missing_is_resumed_as_missing_counts(tmp_path, monkeypatch):
    """A manifest can fail after its row committed: a resume then treats the counts as lost."""
    store_path = tmp_path / "s.db"
    model = make_model()
    scope = ls.Scope(model, [ls.ActivationPatterns(DATA, save_counts=True)], ls.every(1),
                     store_path, name="no-manifest")
    scope.step(0)
    scope.step(1)
    scope.interrupt()
    with ls.store.open(store_path) as store:
        last = store.artifact_dir(scope.run_id, 1, "patterns")
    (last / MANIFEST).unlink()  # the files stay: an incomplete measurement
    assert sorted(last.glob("*.npz"))
    resumed_probe = ls.ActivationPatterns(DATA, save_counts=True)
    with ls.Scope(model, [resumed_probe], ls.every(1), store_path,
                  resume=scope.run_id) as resumed:
        assert resumed_probe.last_counts is None  # not read from the folder without manifest
        values = resumed.step(2)["patterns"].rows
    since_last = [value for _, _, measure, value in values if measure == "jaccard_since_last"]
    assert since_last and all(math.isnan(v) for v in since_last)


# ---------------------------------------------------------------- a real full disk (tmpfs)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs mounted for the test (needs root and mount permission, else skipped)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the injected-failure tests cover the order")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                              str(mount_point)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the injected-failure "
                    "tests cover the order")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def allocated(folder: Path) -> int:
    """Bytes the files of `folder` take on a tmpfs (whole pages)."""
    return sum(math.ceil(f.stat().st_size / PAGE) * PAGE for f in folder.iterdir())


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_disk_full_at_the_database_commit_leaves_no_manifest_without_its_row(tiny_disk,
                                                                                journal):
    """Free space for the counts files and one page more (a manifest), none for the commit."""
    model = make_model()  # never trained: every measurement writes the same files
    store = ls.store.open(tiny_disk / "s.db", journal=journal)
    scope = ls.Scope(model, [ls.ActivationPatterns(DATA, save_counts=True)], ls.every(1), store,
                     name="tmpfs")
    scope.step(0)
    needed = allocated(store.artifact_dir(scope.run_id, 0, "patterns"))
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * (free_bytes(tiny_disk) - needed - PAGE))
    assert free_bytes(tiny_disk) == needed + PAGE
    with pytest.raises(Exception, match="full|space"):
        scope.step(1)
    filler.unlink()
    store.close()
    with ls.store.open(tiny_disk / "s.db", read_only=True) as reader:
        assert reader.measured_steps(scope.run_id, "patterns") == [0]
        assert manifests_without_rows(reader) == []
        assert sorted(reader.artifact_dir(scope.run_id, 1, "patterns").glob("*.npz"))


def test_a_disk_that_fills_while_a_run_measures_leaves_no_manifest_without_its_row(tiny_disk):
    """Measure a changing network with saved counts until the disk is full, wherever it fills."""
    model = make_model()
    store = ls.store.open(tiny_disk / "s.db")
    scope = ls.Scope(model, [ls.ActivationPatterns(DATA, save_counts=True)], ls.every(1), store,
                     name="tmpfs-fill")
    with pytest.raises(Exception, match="full|space"):
        for step in range(10_000):
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(torch.randn_like(parameter) * 0.1)
            scope.step(step)
    store.close()
    with ls.store.open(tiny_disk / "s.db", read_only=True) as reader:
        assert len(reader.measured_steps(scope.run_id, "patterns")) >= 2
        assert manifests_without_rows(reader) == []
