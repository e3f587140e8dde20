"""Integrations with training frameworks; each imports its framework only when used.

- `learnscope.integrations.lightning.LearnscopeCallback`: measure a PyTorch Lightning
  `LightningModule` while `Trainer.fit` trains it (needs `pip install 'learnscope[lightning]'`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LearnscopeCallback"]


def __getattr__(name: str) -> Any:
    if name == "LearnscopeCallback":
        from learnscope.integrations.lightning import LearnscopeCallback

        return LearnscopeCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
