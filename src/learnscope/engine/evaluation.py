"""Loss and accuracy of a model on labelled data: a measurement pass with three sums."""

from __future__ import annotations

from torch import nn

from learnscope.engine.accumulators import Sum
from learnscope.engine.batches import EmptyDatasetError, MeasurementData
from learnscope.engine.passes import Batch, PassState, Taps, run_pass


def _score(state: PassState, batch: Batch) -> None:
    if batch.labels is None:
        raise ValueError(
            "evaluating accuracy and loss needs labels: pass (inputs, labels) or a "
            "Dataset of (input, label) items"
        )
    logits = batch.outputs
    labels = batch.labels.to(logits.device).long()
    state["loss"].add(nn.functional.cross_entropy(logits, labels, reduction="sum").item())
    state["correct"].add(int((logits.argmax(1) == labels).sum()))
    state["count"].add(labels.shape[0])


def evaluate(model: nn.Module, data: MeasurementData | None, batch_size: int = 512,
             ) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy of `model` on labelled `data` (eval mode).

    The pass runs on a copy of the model in eval mode (running BatchNorm statistics, no
    dropout); the model and the RNG states are left as they were, so a training run is
    unaffected. Returns {} for None or an empty dataset. Inside
    `learnscope.distributed.sharded()` with several ranks, each rank scores its share of the
    batches and the sums of loss, correct answers and samples are added up across ranks
    (collective: every rank must call it), so every rank returns the whole set's scores.
    """
    if data is None:
        return {}
    taps = Taps(data, batch_size=batch_size, batchnorm="eval", outputs=True)
    state = PassState(loss=Sum(), correct=Sum(), count=Sum())
    try:
        state = run_pass(model, taps, state, _score, description=None)  # as before: silent
    except EmptyDatasetError:
        return {}
    count = int(state["count"].value)
    if count == 0:
        return {}
    return {"loss": state["loss"].value / count, "accuracy": int(state["correct"].value) / count}
