"""Export runs from a learnscope store: long-form tables and TensorBoard event files.

    from learnscope import exports

    frame = exports.to_frame("runs/learnscope.db", "quickstart-mlp", measures=["entropy"])
    exports.to_csv("runs/learnscope.db", "quickstart-mlp", "mlp.csv")
    exports.to_parquet("runs/learnscope.db", ["quickstart-mlp", "quickstart-cnn"], "both.parquet")
    exports.to_tensorboard("runs/learnscope.db", "quickstart-mlp", "tb/quickstart-mlp")

The command line does the same: `learnscope export RUN --format csv|parquet|tensorboard`.
Parquet needs pyarrow (`learnscope[parquet]`), TensorBoard needs tensorboard
(`learnscope[tensorboard]`); both are imported only when used.
"""

from learnscope.exports._common import MissingExtraError
from learnscope.exports.tables import COLUMNS, to_csv, to_frame, to_parquet
from learnscope.exports.tensorboard import tensorboard_tags, to_tensorboard

#: Formats of `learnscope export --format`.
FORMATS = ("csv", "parquet", "tensorboard")

__all__ = [
    "COLUMNS",
    "FORMATS",
    "MissingExtraError",
    "tensorboard_tags",
    "to_csv",
    "to_frame",
    "to_parquet",
    "to_tensorboard",
]
