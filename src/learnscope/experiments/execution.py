"""Running one RunSpec: reuse, resume or start its run, train it under a Scope, mark the outcome.

`execute(spec, store)` runs one; `plan(specs, store)` says what `execute` would do, writing
nothing; `run_identity(spec)` is what a run's fingerprint hashes (see the presets module).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from learnscope.diagnostics import describe_error, interruption_in
from learnscope.experiments.specs import RunSpec, make_probe


def run_identity(spec: RunSpec) -> dict[str, Any]:
    """The settings of `spec` that decide what it measures, resolved; its fingerprint hashes them.

    Everything but the run's name, its preset label and the device, with the training recipe
    resolved to all of its hyperparameters (so a changed recipe default changes the
    fingerprint) and the schedule normalised, plus the measurement version.
    """
    from learnscope.experiments.identity import with_version
    from learnscope.train import parse, recipes

    recipe = recipes.get(spec.recipe, **spec.recipe_options)
    return with_version({
        "model": spec.model, "model_options": spec.model_options,
        "dataset": spec.dataset, "data_options": spec.data_options,
        "recipe": asdict(recipe), "steps": spec.max_steps, "seed": spec.seed,
        "schedule": repr(parse(spec.schedule)), "probe": spec.probe,
        "probe_options": spec.probe_options, "since_final": spec.since_final,
    })


def plan(specs: list[RunSpec], store: str | Path, *, rerun: bool = False
         ) -> list[tuple[RunSpec, Any]]:
    """What `execute` would do with each spec now: (spec, RunClaim) pairs; writes nothing.

    A RunClaim's action is "reuse", "resume", "new" or "busy", with a one-line reason
    (learnscope.experiments.identity.describe words it). A store that does not exist yet plans
    every run new.
    """
    import learnscope as ls
    from learnscope.experiments.identity import fingerprint
    from learnscope.store.db import NO_RUN_REASON, RunClaim

    path = Path(store).expanduser()
    if not path.exists():
        return [(spec, RunClaim("new", spec.name, reason=NO_RUN_REASON))
                for spec in specs]
    planned = []
    with ls.store.open(path, read_only=True) as s:
        for spec in specs:
            identity = run_identity(spec)
            planned.append((spec, s.plan_run(spec.name, fingerprint(identity), identity,
                                             rerun=rerun)))
    return planned


def execute(
    spec: RunSpec,
    store: str | Path,
    *,
    rerun: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> tuple[str, str]:
    """Run `spec`: reuse, resume or start its run (see the module docstring); (run id, status).

    status: "finished" or "diverged" (trained now), "skipped" (a finished run with the same
    name and fingerprint is reused) or "busy" (another live process is training it: left to
    that process). `rerun=True` starts a fresh run even when a finished one exists. `notify`
    receives one line about a busy run or a new run's reason (e.g. settings that differ).

    Launched with torchrun, every rank calls it: it joins the process group
    (`learnscope.distributed.init_from_env`: gloo for a CPU run, NCCL for `device="cuda"` with a
    GPU per rank), rank 0 alone claims the run in the store (`Store.claim_run`) and tells the
    others, and training and measurement are shared among the ranks (see
    `learnscope.train.trainer`); only rank 0 writes. An exception (on any rank) marks the run
    failed and Ctrl-C leaves it interrupted; running the same command again resumes it from
    its last checkpoint.
    """
    import learnscope as ls
    from learnscope import distributed
    from learnscope.experiments.identity import busy_message, claim, fingerprint
    from learnscope.store.db import NO_RUN_REASON
    from learnscope.train.trainer import measure_since_final

    context = distributed.init_from_env(
        backend=None if str(spec.device).startswith("cuda") else "gloo")
    identity = run_identity(spec)

    def decide(prepared: _Prepared | None) -> Any:
        """Rank 0 plans (prepared None: writes nothing) or claims the run; every rank's copy."""
        decision = None
        with distributed.fail_together(context.distributed):
            if context.is_main:
                with ls.store.open(store) as s:
                    if prepared is None:
                        decision = s.plan_run(spec.name, fingerprint(identity), identity,
                                              rerun=rerun)
                    else:
                        decision = claim(s, spec.name, identity, {"user": spec.config()},
                                         experiment=spec.preset, total_steps=prepared.total,
                                         rerun=rerun)
        return distributed.broadcast_object(decision)

    decision = decide(None)  # a reused or busy run needs no data
    prepared = None
    if decision.action in ("new", "resume"):
        prepared = _prepare(spec)  # before the claim: a bad setting leaves no run behind
        decision = decide(prepared)
    if decision.action == "reuse":
        return decision.run_id, "skipped"
    if decision.action == "busy":
        if notify is not None:
            notify(busy_message(decision))
        return decision.run_id, "busy"
    if notify is not None and decision.action == "new" and decision.reason != NO_RUN_REASON:
        notify(f"{decision.name}: new run ({decision.reason})")
    scope = None
    try:
        scope = ls.Scope(prepared.model, [prepared.probe], prepared.schedule, store,
                         name=decision.name, experiment=spec.preset, config=spec.config(),
                         total_steps=prepared.total, steps_per_epoch=prepared.steps_per_epoch,
                         resume=decision.run_id, distributed=context.distributed)
        result = _train(spec, prepared, scope, decision.action == "resume", on_step)
        if result.status == "finished" and spec.since_final:
            measure_since_final(scope, prepared.build, prepared.model)
    except BaseException as error:
        # Ctrl-C leaves the run interrupted, also when it came out as another error
        interrupt = interruption_in(error)
        with distributed.deferred_termination():
            _abandon(scope, store, decision.run_id, context,
                     None if interrupt is not None else describe_error(error))
        if interrupt is not None and interrupt is not error:
            raise interrupt from error
        raise
    scope.finish(result.status)
    return scope.run_id, result.status


def _abandon(scope: Any, store: str | Path, run_id: str, context: Any, error: str | None
             ) -> None:
    """Mark the claimed run failed (`error`), or interrupted (None: Ctrl-C), once it stops."""
    import learnscope as ls

    if scope is not None:
        if error is None:
            scope.interrupt()
        else:
            scope.finish("failed", error=error)
    elif context.is_main:  # stopped before its Scope existed
        with ls.store.open(store) as s:
            if error is None:
                s.release_run(run_id)
            else:
                s.set_status(run_id, "failed", error=error)


@dataclass
class _Prepared:
    """What a run trains and measures, built from its spec before it is claimed."""

    splits: Any
    recipe: Any
    build: Callable[[], torch.nn.Module]
    model: torch.nn.Module
    probe: Any
    schedule: Any
    steps_per_epoch: int
    total: int


def _prepare(spec: RunSpec) -> _Prepared:
    """Load the data and build the model, recipe, probe and schedule of `spec`."""
    import learnscope as ls
    from learnscope.train import parse, recipes

    splits = ls.data.load(spec.dataset, seed=spec.seed, **spec.data_options)
    recipe = recipes.get(spec.recipe, **spec.recipe_options)
    in_shape = splits.input_shape

    def build() -> torch.nn.Module:
        options = {"num_classes": splits.num_classes, **spec.model_options}
        if ls.models.flattens_input(spec.model):
            options.setdefault("in_features", math.prod(in_shape))
        elif len(in_shape) == 3:
            options.setdefault("in_channels", in_shape[0])
        return ls.models.create(spec.model, **options)

    torch.manual_seed(spec.seed)
    model = build()
    steps_per_epoch = -(-len(splits.train) // recipe.batch_size)
    total = spec.max_steps or recipe.epochs * steps_per_epoch
    return _Prepared(splits, recipe, build, model, make_probe(spec, splits.measure),
                     parse(spec.schedule), steps_per_epoch, total)


def _train(spec: RunSpec, prepared: _Prepared, scope: Any, resumed: bool,
           on_step: Callable[[int, int], None] | None) -> Any:
    """Train the claimed run of `spec` under `scope` (from its checkpoint when `resumed`)."""
    from learnscope.train.trainer import train

    splits = prepared.splits
    return train(prepared.model, splits.train, prepared.recipe, scope=scope,
                 val_set=splits.val, test_set=splits.test, max_steps=spec.max_steps,
                 seed=spec.seed, device=spec.device, resume=resumed,
                 save_weights=spec.since_final, on_step=on_step)

