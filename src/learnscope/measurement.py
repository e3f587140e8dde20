"""Old home of the measurement pass, kept for users' imports: see `learnscope.engine`."""

from learnscope.engine.batches import (  # noqa: F401 - re-exported
    BATCHNORM_MODES,
    RANDOM_SAMPLERS,
    EmptyDatasetError,
    MeasurementData,
    Shard,
    check_batch_statistics,
    check_labels,
    iter_batches,
    measurement_copy,
    model_device,
    preserved_rng,
)
from learnscope.engine.evaluation import evaluate  # noqa: F401 - re-exported
