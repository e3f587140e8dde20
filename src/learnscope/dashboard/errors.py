"""The dashboard's one exception: a request that cannot be answered, with what to do."""

from __future__ import annotations

from typing import Any

__all__ = ["DashboardError"]


class DashboardError(Exception):
    """A request that cannot be answered, with what the user can do about it.

    Rendered as an HTML page for page requests and as JSON for ``/api/`` requests (see
    :mod:`learnscope.dashboard.error_handlers`).
    """

    def __init__(self, status: int, title: str, detail: str, hint: str = "") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.hint = status, title, detail, hint

    def as_json(self) -> dict[str, Any]:
        return {"error": self.title, "detail": self.detail, "hint": self.hint,
                "status": self.status}  # fmt: skip
