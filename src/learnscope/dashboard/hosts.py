"""The ``Host`` header check: the dashboard answers only requests addressed to the loopback
interface or to a host it was started with, so a DNS-rebinding web page cannot read it."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["LOCAL_HOSTS", "AllowedHosts", "checked_allowed_hosts", "host_name"]

#: Host names the dashboard always answers to: the loopback interface.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def host_name(value: str) -> str:
    """The host part of a ``Host`` header or ``--host`` value: lower-case, without the port
    and without the brackets of an IPv6 address (``[::1]:8765`` -> ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return value.split(":")[0]
    return value


class AllowedHosts:
    """ASGI middleware: answers only HTTP requests whose ``Host`` header names an allowed host
    (any port); others get 400 with a one-line message naming the refused host. ``*`` among
    the hosts turns the check off.

    Not Starlette's ``TrustedHostMiddleware``: its fixed "Invalid host header" says neither
    which host was refused nor how to allow it, and the Starlette versions FastAPI 0.110
    allows cut ``[::1]:8765`` at its first colon.
    """

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = tuple(dict.fromkeys(host_name(h) for h in (*LOCAL_HOSTS, *hosts)))
        self.any = "*" in self.hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host")
        if header is not None and host_name(header) in self.hosts:
            await self.app(scope, receive, send)
            return
        await PlainTextResponse(self.refusal(header), status_code=400)(scope, receive, send)

    def refusal(self, header: str | None) -> str:
        allowed = ", ".join(self.hosts)
        if header is None:
            return f"Refused: the request has no Host header; this dashboard answers {allowed}.\n"
        name = host_name(header)
        shown = name if len(name) <= 100 else name[:100] + "..."
        return (f"Refused: host {shown!r} is not one this dashboard answers ({allowed}); to "
                f"allow it, start the dashboard with --allowed-host {shown}.\n")  # fmt: skip


def checked_allowed_hosts(allowed_hosts: Iterable[str] | str) -> list[str]:
    """``allowed_hosts`` as given to :func:`~learnscope.dashboard.app.create_app`, as a list,
    or a ValueError naming the first value that is not a host name, address or ``*``."""
    if isinstance(allowed_hosts, str):
        allowed_hosts = [allowed_hosts]
    allowed_hosts = list(allowed_hosts)
    for host in allowed_hosts:
        if not isinstance(host, str) or not host.strip() or ("*" in host and host != "*"):
            raise ValueError(
                f"allowed hosts must be host names or addresses (or '*' for any), got {host!r}"
            )
    return allowed_hosts
