"""Scope: binds a model, its probes, a schedule and a store, for use inside any training loop.

    with ls.Scope(model, probes=[ls.ActivationPatterns(train_x)], schedule=ls.every(100),
                  store="runs/learnscope.db", name="mlp") as scope:
        for step, (x, y) in enumerate(batches):
            ...                                   # the user's own training step
            scope.step(step, epoch=epoch)         # measures only when the schedule fires

Leaving the `with` block normally marks the run finished; an exception marks it failed, Ctrl-C
(KeyboardInterrupt) leaves it interrupted. A run interrupted by Ctrl-C or a kill stays "running"
in the database (reported as "interrupted") and can be continued with
`Scope(..., resume=run_id)`: steps already measured are skipped, so nothing is measured twice.

Steps only go forward: `step(s)` refuses a negative s and an s lower than the last step this
Scope measured (a loop that restarts, or a step counter reset by mistake, would otherwise mix
two trainings in one run).

Launched with torchrun, `Scope(..., distributed=True)` created on every rank shares each
measurement among the ranks (learnscope.distributed: each rank measures its share of the batches,
the results are merged, every rank gets the single-process values). Only rank 0 writes the store;
it decides the run (new or resumed, steps already measured) and tells the others. Measuring is
then collective: every rank must call `step` / `measure` with the same steps.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learnscope import distributed as dist
from learnscope.defaults import DEFAULT_STORE
from learnscope.diagnostics import describe_error, interruption_in
from learnscope.engine.batches import unwrap_model
from learnscope.probe import Probe, ProbeResult
from learnscope.schedules import Schedule, every
from learnscope.store import Store, layout
from learnscope.store import open as open_store
from learnscope.store.artifacts import load_artifacts, write_artifact_files, write_manifest

WEIGHTS = layout.WEIGHTS_FOLDER  # the folder of kept states in a run's folder (save_weights)
#: Statuses a run ends in for good: a finished or diverged run is reused, never resumed.
FINAL_STATUSES = ("finished", "diverged")


class Scope:
    """Measures `model` with `probes` whenever `schedule` fires, writing to `store`.

    Args:
        model: the model being trained (never modified by measuring); one wrapped by
            torch.compile, DistributedDataParallel or DataParallel is measured through the
            module it wraps (same weights, the inner module's layer names).
        probes: probe instances (ActivationPatterns, ...); names must be unique.
        schedule: when to measure (default: every step).
        store: path of the SQLite store, an open Store, or None to keep results in memory only.
        name: run name.
        config: anything describing the run (hyperparameters...), stored as JSON.
        experiment: experiment / preset name, for grouping runs.
        total_steps: planned number of optimizer updates (the last step), for progress, ETA and
            schedules relative to the end.
        steps_per_epoch: updates per epoch, for epoch-based schedules.
        resume: id of an unfinished run to continue instead of starting a new one (or of a run
            claimed with `Store.claim_run`). While the run has no measurement yet, its stored
            config is replaced by this Scope's.
        distributed: share every measurement among the ranks of the default process group
            (launched with torchrun, `learnscope.distributed.init_from_env()` called); the Scope
            must then be created, stepped and finished on every rank alike. Only rank 0 opens
            and writes the store (the others keep `store` None and write no files); before each
            measurement the model's parameters and buffers are broadcast from rank 0, so every
            rank measures rank 0's network. While it runs, rank 0 turns SIGTERM (sent by
            torchrun when another rank dies) into an exception, so the run is marked failed and
            stays resumable. Without a process group (one process) it changes nothing.
    """

    def __init__(
        self,
        model: nn.Module,
        probes: Sequence[Probe],
        schedule: Schedule | None = None,
        store: str | Path | Store | None = DEFAULT_STORE,
        *,
        name: str = "run",
        config: dict[str, Any] | None = None,
        experiment: str | None = None,
        total_steps: int | None = None,
        steps_per_epoch: int | None = None,
        resume: str | None = None,
        distributed: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Scope needs an nn.Module, got {type(model).__name__}")
        probes = list(probes)
        if not probes:
            raise ValueError("Scope needs at least one probe, e.g. ls.ActivationPatterns(data)")
        names = [p.name for p in probes]
        if len(set(names)) != len(names):
            raise ValueError(f"probe names must be unique, got {names}; pass name=... to probes")
        self.model = model
        self.name = name
        self.probes = probes
        schedule = schedule if schedule is not None else every(1)
        self.schedule = schedule.bind(steps_per_epoch, total_steps)
        self.results: dict[int, dict[str, ProbeResult]] = {}
        self.status = "running"
        context = dist.context()
        self.distributed = distributed and context.distributed
        self._writes = context.is_main or not self.distributed  # rank 0 alone writes
        if not self._writes:
            store = None
        self._owns_store = not isinstance(store, Store) and store is not None
        self.store = open_store(store) if self._owns_store else store
        self.run_id: str | None = None
        self._done: dict[str, set[int]] = {p.name: set() for p in probes}
        self._last_step: int | None = None  # greatest step measured (or found measured) here
        self._deferred: list[tuple] = []  # (step, epoch, source, rows, time) until flushed
        self._handles_termination = False
        self._when_finished: list[Callable[[], None]] = []
        full_config = {
            "user": config or {},
            "model": type(unwrap_model(model)).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "schedule": repr(self.schedule),
            "probes": [p.config() for p in probes],
            "threads": torch.get_num_threads(),  # torch's intra-op threads (learnscope.threads)
        }
        if self.distributed:
            full_config["world_size"] = context.world_size
        with dist.fail_together(self.distributed):  # rank 0's failure here stops every rank
            if self.store is not None:
                self._open_run(resume, full_config, experiment, total_steps)
        if self.distributed:
            self._share_run_state(resume is not None)
            if context.is_main:
                self._handles_termination = dist.install_termination_handler()

    def _open_run(self, resume: str | None, full_config: dict[str, Any], experiment: str | None,
                  total_steps: int | None) -> None:
        """Create the run in the store, or reopen `resume` and restore the probes' references."""
        if resume is None:
            self.run_id = self.store.create_run(
                self.name, full_config, experiment=experiment, total_steps=total_steps
            )
            return
        record = self.store.run(resume)
        self.run_id = record["id"]
        self.store.set_status(self.run_id, "running")
        if not record["measurements"]:  # e.g. claimed by a preset before its model was built
            self.store.update_run(self.run_id, config=full_config, total_steps=total_steps)
        elif total_steps is not None:
            self.store.update_run(self.run_id, total_steps=total_steps)
        for probe in self.probes:
            done = self.store.measured_steps(self.run_id, probe.name)
            self._done[probe.name] = set(done)
            if done:
                self._restore_references(probe, done[0], done[-1])

    def _restore_references(self, probe: Probe, first: int, last: int) -> None:
        """Give `probe` the state it had after the stored measurements `first`..`last`, from
        what the store kept of those two (the probe itself never reads the store)."""
        state = probe.state_from_results(self._stored_result(probe, first),
                                         self._stored_result(probe, last))
        if state is not None:
            probe.load_state_dict(state)

    def _stored_result(self, probe: Probe, step: int) -> ProbeResult:
        """What the store kept of `probe`'s measurement at `step`: its artifacts (loaded with
        `probe.load_artifact`; none when they were not saved), its weight snapshots and the
        model's weights at that step (kept by the trainer's `save_weights=True`; else None)."""
        try:
            artifacts = load_artifacts(self.store.artifact_dir(self.run_id, step, probe.name),
                                       probe.load_artifact)
        except FileNotFoundError:
            artifacts = {}
        snapshots = {}
        table = self.store.trajectories(self.run_id)
        for trajectory in table.loc[table["probe"] == probe.name, "trajectory"]:
            series = self.store.snapshots(self.run_id, trajectory, probe=probe.name)
            if step in {int(s) for s in series.steps}:
                snapshots[trajectory] = series.array([step], dtype="float64")[0]
        kept = self.weights_file(step)
        weights = (torch.load(kept, map_location="cpu", weights_only=True)
                   if kept is not None and kept.exists() else None)
        return ProbeResult(artifacts=artifacts, snapshots=snapshots, weights=weights)

    def _share_run_state(self, resumed: bool) -> None:
        """Rank 0's run id, steps already measured and (resumed) probe references, everywhere."""
        states = self.probe_states() if resumed else None
        shared = dist.broadcast_object((self.run_id, self._done, states))
        self.run_id, self._done, states = shared
        if resumed and not dist.is_main():
            self.load_probe_states(states)

    def probe_states(self) -> dict[str, dict[str, Any]]:
        """Every probe's `state_dict()`, by probe name (what a checkpoint keeps)."""
        return {probe.name: probe.state_dict() for probe in self.probes}

    def load_probe_states(self, states: dict[str, dict[str, Any]]) -> None:
        """Restore `probe_states()`; a probe missing from `states` keeps its current state."""
        for probe in self.probes:
            if probe.name in states:
                probe.load_state_dict(states[probe.name])

    def restart(self) -> None:
        """The training restarts from step 0: measure every step again, forget references."""
        self.forget_measurements_after(-1)
        for probe in self.probes:
            probe.reset()

    def rewind(self, step: int) -> None:
        """Training continues from `step` (a checkpoint without probe states, e.g.
        Lightning's): steps after it are measured again and every probe's references are
        those after the stored measurements up to `step` (none: reset). Collective with a
        distributed Scope: every rank compares with the references rank 0 chose."""
        self.forget_measurements_after(step)
        if self.store is not None:  # the writing process (rank 0)
            for probe in self.probes:
                done = [s for s in self.store.measured_steps(self.run_id, probe.name)
                        if s <= step]
                if done:
                    self._restore_references(probe, done[0], done[-1])
                else:
                    probe.reset()
        if self.distributed:
            self._share_run_state(resumed=True)

    # ---------------------------------------------------------------- the run's folder

    def run_folder(self) -> Path | None:
        """The run's artifact folder in the store (None where this process does not write)."""
        if self.store is None or self.run_id is None:
            return None
        return layout.run_folder(self.store.artifacts_root, self.run_id)

    def weights_file(self, step: int) -> Path | None:
        """Where the model's weights at `step` are kept (for comparisons with the final
        network): a file in the run's folder; None where this process does not write."""
        folder = self.run_folder()
        return None if folder is None else layout.weights_file(folder, step)

    def saved_weights(self) -> list[tuple[int, Path]]:
        """(step, file) of every kept state, by step; FileNotFoundError when there is none."""
        folder = self.run_folder()
        if folder is None:
            raise FileNotFoundError("this Scope keeps no store (store=None), hence no saved "
                                    "weights; give it a store and train with save_weights=True")
        folder = layout.weights_folder(folder)
        files = sorted(folder.glob(layout.WEIGHTS_GLOB))
        if not files:
            raise FileNotFoundError(
                f"no saved weights in {folder}; train with save_weights=True to compare with "
                "the final state")
        return [(int(file.stem.split("_")[1]), file) for file in files]

    def write_rows(self, step: int, probe: str, rows: list, epoch: float | None = None) -> None:
        """Write metric rows of `probe` at `step` now, even after the run was finished (the
        store is then opened again for the write)."""
        if self.store is None:
            return
        if self.status != "running" and self._owns_store:  # closed when the run ended
            with open_store(self.store.path) as store:
                store.write_measurement(self.run_id, step, epoch, probe, rows)
            return
        self.store.write_measurement(self.run_id, step, epoch, probe, rows)

    def step(self, global_step: int, epoch: int | float | None = None) -> dict | None:
        """Measure if the schedule fires at `global_step`; returns {probe: ProbeResult} or None.

        `global_step` counts optimizer updates done: call `scope.step(0)` before training to
        measure the initial network and `scope.step(s)` after the s-th update. A negative step,
        or one lower than the last step this Scope measured, raises ValueError.
        """
        self._check_step(global_step)
        if not self.schedule(global_step):
            return None
        return self.measure(global_step, epoch)

    def _check_step(self, global_step: int) -> None:
        if isinstance(global_step, bool) or not isinstance(global_step, numbers.Integral):
            raise TypeError(f"Scope.step needs an integer step (optimizer updates done), got "
                            f"{global_step!r}")
        if global_step < 0:
            raise ValueError(
                f"Scope.step got step {global_step}: steps count the optimizer updates done, "
                "from 0 (the initial network); call scope.step(0) before training and "
                "scope.step(s) after the s-th update")
        if self._last_step is not None and global_step < self._last_step:
            raise ValueError(
                f"Scope.step got step {global_step} after step {self._last_step} was measured: "
                "steps must not go back; pass the number of updates done so far (it only "
                "grows), or start a new run (a new Scope) to measure another training")

    def measure(self, global_step: int, epoch: int | float | None = None) -> dict:
        """Measure now with every probe (whatever the schedule) and write the results."""
        if self.status != "running":
            raise RuntimeError(f"this Scope's run is already {self.status}; start a new Scope")
        self._check_step(global_step)
        results: dict[str, ProbeResult] = {}
        try:
            todo = [p for p in self.probes if global_step not in self._done[p.name]]
            if self.distributed and todo:
                dist.broadcast_module_state(self.model)
            for probe in todo:
                with dist.sharded() if self.distributed else nullcontext():
                    # through torch.compile / DDP / DataParallel: the module they run
                    result = probe.measure(unwrap_model(self.model), global_step)
                results[probe.name] = result
                if self.store is not None:
                    self._write(global_step, epoch, probe.name, result)
                self._done[probe.name].add(global_step)
        except BaseException as error:
            interrupt = interruption_in(error)  # Ctrl-C, also when it came out as another error
            if interrupt is not None:
                self.interrupt()
                if interrupt is not error:
                    raise interrupt from error
                raise
            with dist.deferred_termination():
                self.finish("failed", error=describe_error(error))
            raise
        self._last_step = global_step
        # snapshots are on disk once stored (or, on ranks other than 0, not kept at all):
        # keeping them would grow memory with every step
        drop = self.store is not None or not self._writes
        self.results[global_step] = {
            name: replace(result, snapshots={}) if drop else result
            for name, result in results.items()
        }
        return results

    def _write(self, step: int, epoch: int | float | None, probe: str,
               result: ProbeResult) -> None:
        """Store one probe's result: artifact files, then the row (committed), then the manifest.

        A failure (a full disk) before the commit leaves files without a manifest, which readers
        treat as missing; a manifest never exists without its measurement's row.
        """
        folder = files = None
        if result.artifacts:
            folder = self.store.artifact_dir(self.run_id, step, probe)
            files = write_artifact_files(folder, result.artifacts)
        self.store.write_measurement(self.run_id, step, epoch, probe, result.rows,
                                     snapshots=result.snapshots,
                                     snapshot_dtype=result.snapshot_dtype)
        if folder is not None:
            write_manifest(folder, files)

    def forget_measurements_after(self, step: int) -> None:
        """Measure steps after `step` again when they come (used when resuming a checkpoint)."""
        for done in self._done.values():
            done.difference_update({s for s in done if s > step})
        if self._last_step is not None and self._last_step > step:
            self._last_step = None if step < 0 else step

    def log(
        self, global_step: int, values: dict[str, float], epoch: int | float | None = None,
        *, source: str = "train", defer: bool = False,
    ) -> None:
        """Record model-level scalars (loss, accuracy, learning rate...) at a step.

        They are stored like probe measures, under probe `source` and layer "model". With
        `defer=True` they are kept in memory and written, with every other deferred row, in one
        transaction by the next `flush()` (or `finish()`); a training loop calls `flush()`
        before each checkpoint, so rows up to the checkpoint are stored and the ones after it
        are logged again when the run resumes from it.
        """
        if self.store is None:
            return
        rows = [("model", -1, name, float(value)) for name, value in values.items()]
        if defer:
            self._deferred.append((global_step, epoch, source, rows, time.time()))
            return
        self.flush()  # rows stay in the order they were logged
        self.store.write_measurement(self.run_id, global_step, epoch, source, rows)

    def flush(self) -> None:
        """Write the rows kept by `log(..., defer=True)`, in one transaction."""
        if self._deferred and self.store is not None:
            deferred, self._deferred = self._deferred, []
            self.store.write_measurements(self.run_id, deferred)

    def finish(self, status: str = "finished", *, error: str | None = None) -> None:
        """Mark the run finished (or failed / diverged) and close the store if we opened it."""
        self._stop(status, lambda: self.store.set_status(self.run_id, status, error=error))

    def when_finished(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once the run is recorded finished or diverged (its final states).

        Callbacks run in the process that writes the store (rank 0), after the status is
        committed, in the order given; not when the run fails or is interrupted (it may be
        resumed then). The trainer uses it to slim the run's checkpoint.
        """
        self._when_finished.append(callback)

    def interrupt(self) -> None:
        """Stop without ending the run (Ctrl-C): it stays resumable, reported "interrupted".

        The run is released (no process owns it), so the next claim or
        `Scope(..., resume=run_id)` continues it; the store is closed if we opened it.
        """
        self._stop("interrupted", lambda: self.store.release_run(self.run_id))

    def _stop(self, status: str, record: Callable[[], None]) -> None:
        """Once: set `status`, `record()` it in the store, close the store if we opened it."""
        if self.status != "running":
            return
        self.status = status
        try:
            if self.store is not None:
                try:
                    self.flush()
                except Exception:
                    if status == "finished":
                        raise
                    # failing anyway: rows after the last checkpoint are logged again on resume
                record()
                if self._owns_store:
                    self.store.close()
                if status in FINAL_STATUSES:
                    for callback in self._when_finished:
                        callback()
        finally:
            if self._handles_termination:
                self._handles_termination = False
                dist.remove_termination_handler()

    def __enter__(self) -> Scope:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None:
            self.finish("finished")
        elif interruption_in(exc) is not None:
            self.interrupt()
        else:
            with dist.deferred_termination():
                self.finish("failed", error=describe_error(exc))

