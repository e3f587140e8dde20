"""How failures are answered: a :class:`DashboardError`, a 404, a query parameter outside its
bounds or an unexpected exception becomes JSON ``{"error", "detail", "hint", "status"}`` for
``/api/`` requests and an HTML page (which retries by itself after a 503) for the others."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import DashboardError
from .params import invalid_request
from .payloads import SafeJSONResponse
from .settings import dashboard_settings
from .templates import error_page_body, notice_box, render_page

__all__ = ["error_response", "install_error_handlers"]


def wants_json(request: Request) -> bool:
    """Whether ``request`` is for a JSON endpoint (``/api/...``) rather than a page."""
    return request.url.path.startswith("/api/")


def error_response(request: Request, error: DashboardError) -> Response:
    """``error`` as JSON (``/api/`` requests) or as an HTML page."""
    if wants_json(request):
        return SafeJSONResponse(error.as_json(), status_code=error.status,
                                headers={"Cache-Control": "no-store"})  # fmt: skip
    settings = dashboard_settings(request)
    retry = error.status == 503
    body = error_page_body(notice_box(error.title, error.detail, error.hint, "error", "ls-error"))
    return render_page(error.title, "error", body, {"poll_ms": settings.poll_ms, "retry": retry},
                       store=settings.store_path, status_code=error.status)  # fmt: skip


async def on_dashboard_error(request: Request, error: DashboardError) -> Response:
    return error_response(request, error)


async def on_http_error(request: Request, error: StarletteHTTPException) -> Response:
    if error.status_code == 404:
        what = DashboardError(
            404, "Not found", f"There is no page or endpoint at {request.url.path}.",
            "Pages: /, /runs/RUN, /compare. Endpoints: /api/runs, /api/runs/RUN, "
            "/api/runs/RUN/metrics?measure=M&since_step=S, "
            "/api/runs/RUN/separation?since_step=S, /api/runs/RUN/trajectories, "
            "/api/runs/RUN/training?since_step=S, /api/run-table, "
            "/api/compare?runs=A&runs=B&measure=M.",
        )  # fmt: skip
    else:
        what = DashboardError(error.status_code, "Request failed", str(error.detail))
    return error_response(request, what)


async def on_invalid(request: Request, error: RequestValidationError) -> Response:
    return error_response(request, invalid_request(error))


async def on_unexpected(request: Request, error: Exception) -> Response:
    return error_response(
        request,
        DashboardError(
            500,
            "Unexpected error",
            f"{type(error).__name__}: {error}",
            "Reload the page; if it happens again, please report it with the dashboard's "
            "console output.",
        ),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Make ``app`` answer every failure as described above."""
    app.add_exception_handler(DashboardError, on_dashboard_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(Exception, on_unexpected)
