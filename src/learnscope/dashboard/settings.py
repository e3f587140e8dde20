"""What one dashboard app was started with, kept on ``app.state`` and handed to the routes as
a FastAPI dependency (:data:`Settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

__all__ = ["DashboardSettings", "Settings", "dashboard_settings"]


@dataclass(frozen=True)
class DashboardSettings:
    """The run store a dashboard reads (resolved path) and how often its pages refresh."""

    store_path: Path
    poll_seconds: float

    @property
    def poll_ms(self) -> int:
        """The refresh interval in milliseconds, as the page script takes it."""
        return int(round(self.poll_seconds * 1000))


def dashboard_settings(request: Request) -> DashboardSettings:
    """The settings of the app answering ``request`` (set by ``create_app``)."""
    return request.app.state.settings


#: A route parameter receiving the app's :class:`DashboardSettings`.
Settings = Annotated[DashboardSettings, Depends(dashboard_settings)]
