"""Every cross-process reduction of a measurement: one place, one order, on every rank.

The rule (what keeps collectives from deadlocking or mixing): every rank calls the same
collectives, in the same order, with tensors of agreed shapes. A reduction therefore goes:

1. One ``all_gather_objects`` of each rank's *report*: the pass state's ``agreement()`` (e.g. the
   layer order) and, for each accumulator in the state's order, its key, class, ``kind()`` and
   its plan (``Reduction.SUM``: ``sum_plan``; ``Reduction.PARTITION``: ``partition_plan``).
   Ranks whose share of the data was empty report nothing and take the rest from the others;
   the ranks that ran must report the same layout, else every rank raises the same error.
2. For each accumulator, in the order of the first full report (the same on every rank),
   the collective of its declared ``Reduction``: ``SUM``, one ``all_reduce_sum`` of
   ``to_sum(plans)``; ``GATHER``, one ``all_gather_arrays`` of ``to_rows()``; ``PARTITION``, one
   ``all_to_all_arrays`` sending each row of ``to_rows()`` to its owner (``owners(world)``), after
   which each rank holds its own partition only (``from_partition``). A rank lacking an
   accumulator contributes ``empty(kind)``.
3. For partitioned states, what is derived from the whole (pattern measures: distinct, entropy
   terms, maxima, intersections and unions with references, label-joint terms) is computed per
   partition by the probe and combined by ``reduce_partial_terms``: one ``all_gather_objects``
   of every layer's and measure's terms together, per measurement.

Nothing else in learnscope's measurement code calls a collective on pass state; a new kind of
reduction is a new entry of ``_REDUCERS``. Collective calls are
logged at DEBUG on the ``learnscope.engine.reduction`` logger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from learnscope import distributed
from learnscope.diagnostics import describe_error
from learnscope.engine.accumulators import Accumulator, Reduction
from learnscope.engine.batches import Shard

log = logging.getLogger("learnscope.engine.reduction")


def _reduce_sum(accumulator: Accumulator, plans: Sequence[Any], shard: Shard) -> Accumulator:
    summed = distributed.all_reduce_sum(accumulator.to_sum(plans))
    return accumulator.from_sum(summed, plans)


def _reduce_gather(accumulator: Accumulator, plans: Sequence[Any], shard: Shard) -> Accumulator:
    tables = distributed.all_gather_arrays(accumulator.to_rows())
    return type(accumulator).from_tables(accumulator.kind(), tables)


def _reduce_partition(accumulator: Accumulator, plans: Sequence[Any],
                      shard: Shard) -> Accumulator:
    tables = distributed.all_to_all_arrays(accumulator.to_rows(), accumulator.owners(shard.world))
    return type(accumulator).from_partition(accumulator.kind(), tables,
                                            (shard.rank, shard.world), plans)


_REDUCERS: dict[Reduction, Callable[[Accumulator, Sequence[Any], Shard], Accumulator]] = {
    Reduction.SUM: _reduce_sum,
    Reduction.GATHER: _reduce_gather,
    Reduction.PARTITION: _reduce_partition,
}


def _plan(accumulator: Accumulator, shard: Shard) -> Any:
    if accumulator.reduction is Reduction.SUM:
        return accumulator.sum_plan(shard)
    if accumulator.reduction is Reduction.PARTITION:
        return accumulator.partition_plan(shard)
    return None


def reduce_across_ranks(
    accumulators: dict[str, Accumulator], agreement: Any, shard: Shard
) -> tuple[Any, dict[str, Accumulator]]:
    """Every rank's accumulators reduced, on every rank: (agreement, {key: whole's state}).

    Collective: every rank must call it after the same pass (see the module docstring).
    """
    started = time.perf_counter()
    layout = [(key, type(acc), acc.kind()) for key, acc in accumulators.items()]
    plans = {key: _plan(acc, shard) for key, acc in accumulators.items()}
    log.debug("rank %d/%d: all_gather_objects (layout of %d accumulators)", shard.rank,
              shard.world, len(layout))
    reports = distributed.all_gather_objects((agreement, layout, plans))
    ran = [(agreed, shape) for agreed, shape, _ in reports if agreed or shape]
    if any(report != ran[0] for report in ran):
        raise RuntimeError(
            f"the ranks measured different layers, or measured them differently "
            f"({[shape for _, shape in ran]}); a sharded measurement needs the same model and "
            "settings on every rank"
        )
    if not ran:
        return agreement, {}
    agreement, layout = ran[0]
    reduced: dict[str, Accumulator] = {}
    for key, cls, kind in layout:
        local = accumulators.get(key)
        if local is None:
            local = cls.empty(kind)
        key_plans = [rank_plans.get(key) for _, _, rank_plans in reports]
        log.debug("rank %d/%d: %s reduction of %r", shard.rank, shard.world,
                  local.reduction.value, key)
        reduced[key] = _REDUCERS[local.reduction](local, key_plans, shard)
    log.debug("rank %d/%d: reduced %d accumulators in %.3f s", shard.rank, shard.world,
              len(reduced), time.perf_counter() - started)
    return agreement, reduced


def reduce_one(accumulator: Accumulator, shard: Shard) -> Accumulator:
    """One accumulator reduced across ranks (collective), e.g. outside a pass."""
    _, reduced = reduce_across_ranks({"state": accumulator}, None, shard)
    return reduced["state"]


def reduce_partial_terms(compute: Callable[[], Any], combine: Callable[[list[Any]], Any],
                         partition: tuple[int, int] | None) -> Any:
    """The whole's terms from every partition's: `combine(every rank's compute(), rank order)`.

    `compute()` gives this rank's terms (any picklable value, e.g. every layer's measure terms
    of one measurement). `partition` is (rank, world) of the partitioned state they come from;
    None (a whole, unpartitioned state) or a world of 1 combines the local terms alone, without
    a collective. Otherwise collective: one ``all_gather_objects`` of each rank's terms, or of
    its error if `compute` raised, so that a failure on one rank fails every rank (the rank
    that failed raises its own error, the others RankFailedError naming it) instead of leaving
    the others waiting in the collective.
    """
    if partition is None or partition[1] == 1:
        return combine([compute()])
    context = distributed.context()
    mismatch = RuntimeError(
        f"these counts are partition {partition[0]} of {partition[1]} but this process is "
        f"rank {context.rank} of {context.world_size}; measure partitioned counts in the "
        "process group that counted them (or load them whole: PatternCounts.load)"
    )
    if context.world_size != partition[1]:  # no group of that size to share the error with
        raise mismatch
    error: Exception | None = None
    try:
        if context.rank != partition[0]:
            raise mismatch
        shared = (compute(), None)
    except Exception as failure:  # noqa: BLE001 - shared with every rank, then re-raised
        error, shared = failure, (None, describe_error(failure))
    log.debug("rank %d/%d: all_gather_objects (partial terms)", context.rank, context.world_size)
    gathered = distributed.all_gather_objects(shared)
    if error is not None:
        raise error
    failed = [(rank, message) for rank, (_, message) in enumerate(gathered) if message]
    if failed:
        rank, message = failed[0]
        raise distributed.RankFailedError(f"rank {rank} failed: {message}")
    return combine([terms for terms, _ in gathered])
