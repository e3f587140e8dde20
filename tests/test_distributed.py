"""One measurement over several processes: sharding, exact merges, torchrun jobs on CPU (gloo).

The multi-process tests launch 2 processes with `python -m torch.distributed.run` and compare
what every rank measured with a single-process measurement done here, in the test process: the
pattern counts must be identical, separation and scores equal to float64 rounding. The NCCL
variant runs only with 2 GPUs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import learnscope as ls
import learnscope.patterns as P
from learnscope import distributed, separation
from learnscope.measurement import EmptyDatasetError, Shard, evaluate, iter_batches
from learnscope.patterns import measures as M
from learnscope.patterns.counts import PatternCounts
from learnscope.separation.moments import ClassMoments, WithinAlong

WORKERS = Path(__file__).parent / "distributed_workers"
BATCH = 16  # as in distributed_workers/measure.py


# ---------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script: Path, *args: str, env: dict | None = None, timeout: int = 150):
    """Run `script` on 2 local processes; returns the CompletedProcess (output captured)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(free_port()), str(script), *args]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "LEARNSCOPE_PROGRESS": "off",
                   **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=environment)


def check_ran(job: subprocess.CompletedProcess) -> None:
    assert job.returncode == 0, f"torchrun failed:\n{job.stdout[-4000:]}\n{job.stderr[-8000:]}"


def assert_same_counts(got: PatternCounts, want: PatternCounts) -> None:
    assert (got.width, got.breakpoints, got.mode, got.table_size) == (
        want.width, want.breakpoints, want.mode, want.table_size)
    np.testing.assert_array_equal(got.keys, want.keys)
    np.testing.assert_array_equal(got.counts, want.counts)
    assert got.has_labels == want.has_labels
    if want.has_labels:
        np.testing.assert_array_equal(got.joint_index, want.joint_index)
        np.testing.assert_array_equal(got.joint_labels, want.joint_labels)
        np.testing.assert_array_equal(got.joint_counts, want.joint_counts)


def make_net() -> nn.Module:
    """A small CNN with BatchNorm everywhere; its 24-channel layer counts in sorted mode
    (2**24 possible patterns), the others in dense tables."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(24, 40), nn.BatchNorm1d(40), nn.ReLU(),
        nn.Linear(40, 5),
    )


# ---------------------------------------------------------------------------- unit tests


@pytest.mark.parametrize("n, batch, world", [(203, 16, 2), (10, 16, 2), (64, 16, 4), (7, 2, 3)])
def test_shards_deal_whole_batches_round_robin(n, batch, world):
    x = torch.randn(n, 3)
    y = torch.randint(0, 4, (n,))
    whole = list(iter_batches((x, y), batch))
    shares = [list(iter_batches((x, y), batch, shard=Shard(r, world))) for r in range(world)]
    for rank, share in enumerate(shares):
        mine = [b for i, b in enumerate(whole) if i % world == rank]
        assert len(share) == len(mine)
        for (xs, ys), (xw, yw) in zip(share, mine, strict=True):
            assert torch.equal(xs, xw) and torch.equal(ys, yw)
        assert Shard(rank, world).samples(n, batch) == sum(b[0].shape[0] for b in share)
    assert sum(len(s) for s in shares) == len(whole)


class Stream(IterableDataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __iter__(self):
        return iter(zip(self.x, self.y, strict=True))


@pytest.mark.parametrize("kind", ["tensor", "dataset", "loader", "iterable"])
def test_every_kind_of_data_shards_like_its_unsharded_batches(kind):
    x, y = torch.randn(45, 2), torch.arange(45)
    data = {"tensor": x, "dataset": TensorDataset(x, y),
            "loader": DataLoader(TensorDataset(x, y), batch_size=8),
            "iterable": Stream(x, y)}[kind]
    whole = [b[0] for b in iter_batches(data, 8)]
    for rank in range(2):
        share = [b[0] for b in iter_batches(data, 8, shard=Shard(rank, 2))]
        assert [t.tolist() for t in share] == [t.tolist() for t in whole[rank::2]]


def test_an_empty_share_is_no_error_but_an_empty_set_is():
    x = torch.randn(5, 2)
    assert list(iter_batches(x, 8, shard=Shard(1, 2))) == []
    assert list(iter_batches(DataLoader(TensorDataset(x), batch_size=8), 8,
                             shard=Shard(1, 2))) == []
    for data in (torch.zeros(0, 2), TensorDataset(torch.zeros(0, 2))):
        with pytest.raises(EmptyDatasetError, match="empty"):
            list(iter_batches(data, 8, shard=Shard(1, 2)))


@pytest.mark.parametrize("n, world", [(10, 3), (2, 4), (128, 2), (0, 2)])
def test_batch_slices_are_contiguous_and_cover_the_batch(n, world):
    parts = [distributed.batch_slice(n, r, world) for r in range(world)]
    assert parts[0].start == 0 and parts[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:], strict=False))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == [len(t) for t in torch.tensor_split(torch.arange(n), world)]


def test_a_batch_too_small_for_batchnorm_on_every_rank_fails_with_the_fix():
    from learnscope.train.trainer import batch_objective

    net = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4))
    two_ranks = distributed.Context(rank=1, world_size=2)
    with pytest.raises(ValueError, match="at least 2 per process.*at least 4 samples"):
        batch_objective(net, torch.randn(3, 2), torch.zeros(3, dtype=torch.long), two_ranks)


@pytest.mark.parametrize("mode", ["exact", "hashlist"])
def test_merging_shard_counts_in_any_order_gives_the_whole_count(mode):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 30), nn.ReLU(), nn.Linear(30, 4), nn.ReLU())
    x = torch.randn(300, 6).round()
    y = torch.randint(0, 3, (300,))
    whole = P.count(model, (x, y), labels=True, batchnorm="eval", mode=mode, table_size=512)
    parts = [P.count(model, (x[i:i + 70], y[i:i + 70]), labels=True, mode=mode, table_size=512)
             for i in range(0, 300, 70)]
    for layer in whole:
        shards = [p[layer] for p in parts]
        for order in (shards, shards[::-1]):
            assert_same_counts(PatternCounts.merge_all(order), whole[layer])


def test_merge_all_refuses_counts_of_different_kinds():
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU())
    x = torch.randn(20, 3)
    a = P.count(model, (x, torch.zeros(20, dtype=torch.long)), labels=True)["1"]
    b = P.count(model, x)["1"]
    with pytest.raises(ValueError, match="labels"):
        PatternCounts.merge_all([a, b])
    with pytest.raises(ValueError, match="at least one"):
        PatternCounts.merge_all([])


def within_reference(x: np.ndarray, y: np.ndarray) -> float:
    """D = Tr(Σ_W Σ_B⁺), balanced, straight from the definition in float64."""
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    centred = means - x.mean(axis=0)
    sigma_b = centred.T @ centred / len(classes)
    sigma_w = sum(np.cov(x[y == c].T, bias=True) for c in classes) / len(classes)
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10, hermitian=True)))


def test_merged_class_moments_equal_the_moments_of_the_whole():
    rng = np.random.default_rng()
    x = rng.normal(size=(500, 6)) * 0.1 + 1e3  # far from the origin: exact re-centring matters
    y = rng.integers(0, 4, 500)
    whole = ClassMoments(6).update(x, y)
    first = ClassMoments(6).update(x[:130], y[:130])
    second = ClassMoments(6).update(x[130:300], y[130:300]).update(x[300:], y[300:])
    for merged in (first.merge(second), second.merge(first)):
        assert merged.classes == whole.classes
        np.testing.assert_allclose(merged.within(), whole.within(), rtol=1e-9)
        np.testing.assert_allclose(merged.counts_and_means()[1], whole.counts_and_means()[1],
                                   rtol=1e-13)
        assert merged.fuzziness() == pytest.approx(whole.fuzziness(), rel=1e-9)
    assert whole.fuzziness() == pytest.approx(within_reference(x, y), rel=1e-7)
    only = ClassMoments(6).update(x[y == 0], y[y == 0])  # a class missing from one shard
    rest = ClassMoments(6).update(x[y != 0], y[y != 0])
    assert only.merge(rest).fuzziness() == pytest.approx(whole.fuzziness(), rel=1e-9)
    with pytest.raises(ValueError, match="different kinds"):
        whole.merge(ClassMoments(5))


def test_single_process_reductions_are_identities():
    rng = np.random.default_rng()
    x, y = rng.normal(size=(80, 3)), rng.integers(0, 3, 80)
    moments = ClassMoments(3).update(x[:40], y[:40]).update(x[40:], y[40:])
    reduced = moments.all_reduce(Shard(0, 1))
    np.testing.assert_array_equal(reduced.within(), moments.within())
    assert reduced.fuzziness() == moments.fuzziness()
    along = WithinAlong(ClassMoments(3, second_moments=False).update(x, y)).update(x, y)
    assert along.all_reduce().fuzziness() == pytest.approx(moments.fuzziness(), rel=1e-10)
    values = np.array([1.5, 2.0])
    assert np.array_equal(distributed.all_reduce_sum(values), values)
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    table = np.arange(6).reshape(3, 2)
    assert [t.tolist() for t in distributed.all_gather_arrays(table)] == [table.tolist()]
    assert distributed.broadcast_object("x") == "x"


def test_without_torchrun_everything_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = distributed.init_from_env()
    assert (context.rank, context.world_size, context.distributed) == (0, 1, False)
    assert not torch.distributed.is_initialized()
    with distributed.sharded() as shard:
        assert shard is None and distributed.current_shard() is None
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    with ls.Scope(model, [ls.ActivationPatterns((x, y), labels=True)], ls.every(1), None,
                  distributed=True) as scope:
        result = scope.measure(0)["patterns"]
    assert not scope.distributed
    assert result.value("1", "evaluations") == 50.0


def test_fail_together_in_one_process_is_a_plain_block():
    with pytest.raises(KeyError), distributed.fail_together(True):
        raise KeyError("mine")
    with distributed.fail_together(True):
        pass


def test_sigterm_becomes_an_error_once_and_not_while_deferred():
    previous = signal.getsignal(signal.SIGTERM)
    assert distributed.install_termination_handler()
    try:
        with distributed.deferred_termination():
            os.kill(os.getpid(), signal.SIGTERM)  # held back: no exception here
        with pytest.raises(distributed.RankFailedError, match="another rank failed"):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(100):  # the handler runs at the next bytecode boundary
                pass
        os.kill(os.getpid(), signal.SIGTERM)  # raised once already: ignored
    finally:
        distributed.remove_termination_handler()
    assert signal.getsignal(signal.SIGTERM) == previous


# ---------------------------------------------------------------------------- torchrun: counts


def measurement_inputs(tmp: Path) -> tuple[Path, dict]:
    torch.manual_seed(0)
    model = make_net()
    x = torch.randn(203, 1, 8, 8)  # 13 batches of 16, the last of 11: not a multiple of 2 x 16
    y = torch.randint(0, 5, (203,))
    nan_x = torch.randn(64, 1, 8, 8)
    nan_x[20, 0, 3, 3] = float("nan")  # in batch 1: rank 1's
    saved = {"model": model, "x": x, "y": y, "tiny_x": torch.randn(10, 1, 8, 8),
             "tiny_y": torch.arange(10) % 5, "nan_x": nan_x}
    path = tmp / "inputs.pt"
    torch.save(saved, path)
    return path, saved


def check_measurements(out: Path, saved: dict, device: str = "cpu") -> None:
    """Every rank's results equal a single-process measurement on the same kind of device."""
    model, data = saved["model"].to(device), (saved["x"], saved["y"])
    reference = {mode: P.count(model, data, batch_size=BATCH, labels=True, mode=mode,
                               table_size=4096) for mode in ("exact", "hashlist")}
    assert any(c.keys.shape[1] == 1 and c.width == 24 for c in reference["exact"].values())
    tiny = P.count(model, (saved["tiny_x"], saved["tiny_y"]), batch_size=BATCH, labels=True)
    fuzziness = {m: separation.measure(model, data, batch_size=BATCH, method=m)
                 for m in ("moments", "subspace")}
    scores = evaluate(model, data, batch_size=BATCH)
    for rank in (0, 1):
        folder = out / f"rank{rank}"
        results = json.loads((folder / "results.json").read_text())
        assert results["shard"] == [rank, 2]
        for mode, counts in reference.items():
            assert results[f"{mode}_layers"] == list(counts)
            for layer, want in counts.items():
                assert_same_counts(PatternCounts.load(folder / mode / f"{layer}.npz"), want)
        for layer, want in tiny.items():  # one batch: rank 1 counted nothing itself
            assert_same_counts(PatternCounts.load(folder / "tiny" / f"{layer}.npz"), want)
    for kind, counts in (("partitioned", reference["exact"]), ("tiny-partitioned", tiny)):
        for layer, want in counts.items():  # merge="partition": each rank holds its part
            parts = [PatternCounts.load(out / f"rank{rank}" / kind / f"{layer}.npz")
                     for rank in (0, 1)]
            assert [part.partition for part in parts] == [(0, 2), (1, 2)]
            assert all(part.evaluations == want.evaluations for part in parts)
            assert_same_counts(PatternCounts.merge_all(parts), want)
        for method, want in fuzziness.items():
            got = results[f"separation_{method}"]
            assert list(got) == list(want)
            np.testing.assert_allclose(list(got.values()), list(want.values()), rtol=1e-10)
        assert results["scores"]["accuracy"] == scores["accuracy"]
        assert results["scores"]["loss"] == pytest.approx(scores["loss"], rel=1e-12)
    error_0 = json.loads((out / "rank0" / "results.json").read_text())["nan_error"]
    error_1 = json.loads((out / "rank1" / "results.json").read_text())["nan_error"]
    assert error_1[0] == "NonFiniteActivationError"
    assert error_0[0] == "RankFailedError" and "rank 1 failed" in error_0[1]
    assert "NaN" in error_0[1]


def test_two_gloo_ranks_count_exactly_what_one_process_counts(tmp_path, one_thread):
    # one thread here as in each worker: float32 matmuls sum in another order with more threads
    inputs, saved = measurement_inputs(tmp_path)
    check_ran(torchrun(WORKERS / "measure.py", str(inputs), str(tmp_path / "out"), "gloo"))
    check_measurements(tmp_path / "out", saved)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs 2 GPUs")
def test_two_nccl_ranks_count_exactly_what_one_process_counts(tmp_path, one_thread):
    inputs, saved = measurement_inputs(tmp_path)
    check_ran(torchrun(WORKERS / "measure.py", str(inputs), str(tmp_path / "out"), "nccl"))
    check_measurements(tmp_path / "out", saved, device="cuda")


# ---------------------------------------------------------------------------- torchrun: training

SPEC = {
    "preset": "early", "name": "dist-resnet8", "model": "resnet8",
    "model_options": {"in_channels": 1, "image_size": 8}, "dataset": "digits",
    "data_options": {"normalize": True, "val_fraction": 0.0}, "recipe": "multistep",
    "recipe_options": {}, "seed": 0, "max_steps": 6, "schedule": "every 2",
    "probe_options": {"batch_size": 256, "batchnorm": "train", "labels": True},
}
STEPS = [0, 2, 4, 6]


def patterns_of(store_path: Path) -> tuple[dict, object]:
    store = ls.store.open(store_path, read_only=True)
    runs = store.runs()
    metrics = store.metrics(run=runs["id"].iloc[0], probe="patterns")
    return runs, metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-rank run of SPEC through presets.execute (plus a 2-rank MLP training)."""
    folder = tmp_path_factory.mktemp("trained")
    job = torchrun(WORKERS / "train.py", str(folder / "s.db"), str(folder / "out"),
                   json.dumps(SPEC), env={"LEARNSCOPE_TEST_TRAIN_MLP": "1"})
    check_ran(job)
    return folder


def test_a_two_rank_run_is_written_once_by_rank_0(trained):
    out = trained / "out"
    runs, metrics = patterns_of(trained / "s.db")
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
    assert (out / "writes-rank1.txt").read_text() == ""
    assert "claim_run" in (out / "writes-rank0.txt").read_text()  # rank 0 claims the run
    info = ls.store.open(trained / "s.db", read_only=True).run(runs["id"].iloc[0])
    assert str(info["pid"]) == (out / "pid-rank0.txt").read_text()
    assert info["config"]["world_size"] == 2
    assert (out / "status-rank1.txt").read_text() == (out / "status-rank0.txt").read_text()
    assert sorted(metrics["step"].unique()) == STEPS
    assert not metrics.duplicated(["step", "layer", "measure"]).any()


def test_a_two_rank_run_measures_what_one_process_measures(trained):
    runs, metrics = patterns_of(trained / "s.db")
    run_id = runs["id"].iloc[0]
    checkpoint = torch.load(trained / "s.artifacts" / run_id / "checkpoint.pt",
                            weights_only=False)
    assert checkpoint["step"] == 6
    splits = ls.data.load("digits", normalize=True, val_fraction=0.0)
    model = ls.models.create("resnet8", in_channels=1, image_size=8, num_classes=10)
    model.load_state_dict(checkpoint["model"])
    counts = P.count(model, splits.measure, batch_size=256, labels=True)
    final = metrics[metrics["step"] == 6].set_index(["layer", "measure"])["value"]
    assert set(final.index.get_level_values("layer")) == set(counts)
    for layer, c in counts.items():
        for name in ("evaluations", "distinct", "max_count", "entropy", "mutual_information"):
            fn = M.SINGLE.get(name) or M.LABELLED[name]
            assert final[(layer, name)] == float(fn(c)), (layer, name)


def test_two_rank_training_takes_the_steps_of_one_process(trained):
    from learnscope.train import recipes
    from learnscope.train.trainer import train

    splits = ls.data.load("digits", normalize=True, val_fraction=0.0, flatten=True)
    torch.manual_seed(3)
    model = ls.models.create("mlp", in_features=64, num_classes=10)
    train(model, splits.train, recipes.get("multistep", batch_size=100), max_steps=6, seed=3)
    shared = torch.load(trained / "out" / "mlp.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(shared[name], value, rtol=1e-5, atol=1e-6)


def test_a_failing_rank_fails_the_run_and_the_same_command_resumes_it(tmp_path, trained):
    arguments = (str(tmp_path / "s.db"), str(tmp_path / "out"), json.dumps(SPEC))
    failed = torchrun(WORKERS / "train.py", *arguments, env={"LEARNSCOPE_TEST_FAIL_AT": "3"})
    assert failed.returncode != 0
    assert "injected failure on rank 1" in failed.stderr + failed.stdout
    store = ls.store.open(tmp_path / "s.db", read_only=True)
    runs = store.runs()
    assert len(runs) == 1 and runs["status"].iloc[0] == "failed", runs.to_dict("records")
    assert runs["error"].iloc[0]
    check_ran(torchrun(WORKERS / "train.py", *arguments))
    runs, metrics = patterns_of(tmp_path / "s.db")
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
    assert sorted(metrics["step"].unique()) == STEPS
    assert not metrics.duplicated(["step", "layer", "measure"]).any()
    _, uninterrupted = patterns_of(trained / "s.db")
    merged = metrics.merge(uninterrupted, on=["step", "layer", "measure"],
                           suffixes=("_got", "_want"))
    assert len(merged) == len(uninterrupted) == len(metrics)
    same = merged["value_got"] == merged["value_want"]
    assert (same | (merged["value_got"].isna() & merged["value_want"].isna())).all()


# ---------------------------------------------------------------------------- clean exit

ENDING_PROGRAM = """
import atexit, os, sys
from pathlib import Path
import torch.distributed as dist
from learnscope import distributed

marker = Path(sys.argv[2])
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{sys.argv[3]}", rank=0,
                        world_size=1)
atexit.register(lambda: marker.write_text("finalised"))

def main():
    print("work done", end="")  # unflushed: end_process must flush it
    outcome = sys.argv[1]
    if outcome == "exit":
        sys.exit(3)
    if outcome == "raise":
        raise ValueError("broken rank")
    if outcome == "interrupt":
        raise KeyboardInterrupt

distributed.run_and_end(main)
print("never reached")
"""


@pytest.mark.parametrize("outcome, status", [("return", 0), ("exit", 3), ("raise", 1),
                                             ("interrupt", 130)])
def test_a_rank_with_a_process_group_ends_without_python_finalisation(tmp_path, outcome, status):
    marker = tmp_path / "finalised.txt"
    job = subprocess.run([sys.executable, "-c", ENDING_PROGRAM, outcome, str(marker),
                          str(free_port())], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert job.returncode == status, job.stderr
    assert job.stdout == "work done"
    assert not marker.exists()  # os._exit: no atexit handler, no interpreter finalisation
    if outcome == "raise":
        assert "ValueError: broken rank" in job.stderr


def test_without_a_process_group_run_and_end_is_a_plain_call():
    assert not torch.distributed.is_initialized()
    calls = []
    distributed.run_and_end(lambda: calls.append(1))
    assert calls == [1]
    with pytest.raises(SystemExit) as stop:
        distributed.run_and_end(lambda: sys.exit(4))
    assert stop.value.code == 4
    with pytest.raises(KeyError):
        distributed.run_and_end(lambda: {}["missing"])


def test_the_lightning_callback_shares_measurements_under_ddp(tmp_path, one_thread):
    pytest.importorskip("lightning", reason="needs PyTorch Lightning (the [lightning] extra)")
    out, store = tmp_path / "out", tmp_path / "s.db"
    check_ran(torchrun(WORKERS / "lightning_ddp.py", str(store), str(out)))
    runs, metrics = patterns_of(store)
    assert len(runs) == 1 and runs["status"].iloc[0] == "finished"
    run_id = runs["id"].iloc[0]
    assert (out / "run-rank1.txt").read_text() == (out / "run-rank0.txt").read_text() == run_id
    assert (out / "writes-rank1.txt").read_text() == ""  # rank 0 alone writes
    assert "create_run" in (out / "writes-rank0.txt").read_text()
    assert ls.store.open(store, read_only=True).run(run_id)["config"]["world_size"] == 2
    patterns = metrics[metrics["probe"] == "patterns"]
    assert sorted(patterns["step"].unique()) == [0, 2, 4, 6]
    assert not patterns.duplicated(["step", "layer", "measure"]).any()
    # the shared pass counted exactly what one process counts on the final weights
    net = nn.Sequential(nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 10))
    net.load_state_dict(torch.load(out / "final.pt", weights_only=True))
    x, y = ls.data.load("digits", val_fraction=0, flatten=True).train.tensors
    counts = P.count(net, (x, y), batch_size=256, labels=True)
    final = patterns[patterns["step"] == 6].set_index(["layer", "measure"])["value"]
    assert len(counts) == 1
    for c in counts.values():
        layer = final.index.get_level_values("layer")[0]
        for name in ("evaluations", "distinct", "max_count", "entropy", "mutual_information"):
            fn = M.SINGLE.get(name) or M.LABELLED[name]
            assert final[(layer, name)] == float(fn(c)), name


def test_launch_rank_is_known_before_the_group_and_quiets_progress(monkeypatch):
    from learnscope.progress import resolve_mode

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "3")
    assert distributed.launch_rank() == 0  # RANK without a multi-process world means nothing
    assert resolve_mode("plain") == "plain"
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert distributed.launch_rank() == 3
    assert resolve_mode("plain") == resolve_mode("bar") == "off"
    monkeypatch.setenv("RANK", "0")
    assert resolve_mode("plain") == "plain"


def test_under_torchrun_only_rank_0_prints_and_records_the_plan(tmp_path):
    """The CLI's tables, progress lines and plan file come from rank 0 alone."""
    store = tmp_path / "s.db"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(free_port()), "-m", "learnscope.cli", "run", "quickstart",
               "--epochs", "1", "--every", "20", "--store", str(store)]
    job = subprocess.run(command, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1",
                              "LEARNSCOPE_PROGRESS": "plain"})
    check_ran(job)
    for net in ("mlp", "cnn"):
        assert job.stdout.count(f"{net}: run quickstart-{net}-") == 1, job.stdout
        done = [line for line in job.stderr.splitlines()
                if line.startswith(f"train + measure {net}") and line.endswith("done")]
        assert len(done) == 1, job.stderr
    assert job.stdout.count("Stored in ") == job.stdout.count("threads: ") == 1, job.stdout
    plans = list(tmp_path.rglob("*quickstart*.json"))
    assert len(plans) == 1 and json.loads(plans[0].read_text())["runs"] == [
        "quickstart-mlp", "quickstart-cnn"]
