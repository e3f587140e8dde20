"""``learnscope dashboard``: serve the live, read-only web dashboard of a run store.

FastAPI, uvicorn and Plotly (the ``dashboard`` extra) are imported only when the command
runs, so the rest of the command line works without them.
"""

from __future__ import annotations

import socket
from pathlib import Path

import typer

from learnscope.defaults import DEFAULT_STORE

EXTRA = "pip install 'learnscope[dashboard]'"
_ALL_ADDRESSES = ("0.0.0.0", "::", "")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn listens on it), or a clear error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        _fail(f"cannot resolve the host {host!r} ({exc}); pass e.g. --host 127.0.0.1")
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        _fail(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); another program may use "
            "that port: pass another --port (--port 0 picks a free one)"
        )
    return sock


def dashboard_command(
    store: Path = typer.Option(
        DEFAULT_STORE, "--store", "-s", help="Path of the SQLite run store (opened read-only)."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Address to listen on; the default keeps it on this machine."
    ),
    port: int = typer.Option(8765, help="Port to listen on (0: any free port)."),
    poll: float = typer.Option(2.0, help="Seconds between the pages' refreshes."),
    allowed_host: list[str] = typer.Option(
        None, "--allowed-host", help="Another host name or address the dashboard answers to "
        "(repeatable; '*': any). Requests addressed to other hosts than 127.0.0.1, localhost, "
        "::1 and --host get 400, so that other web pages cannot read it (DNS rebinding).",
    ),
) -> None:
    """Serve a live web dashboard of the runs in the store (read-only; Ctrl+C stops it)."""
    try:
        import fastapi  # noqa: F401
        import plotly  # noqa: F401
        import uvicorn
    except ImportError as exc:
        missing = exc.name or "fastapi, uvicorn or plotly"
        _fail(f"the dashboard needs {missing}, which is not installed: {EXTRA}")
    if not poll > 0:
        _fail(f"--poll must be a positive number of seconds, got {poll}")
    if not 0 <= port <= 65535:
        _fail(f"--port must be between 0 and 65535, got {port}")
    allowed = [name.strip() for name in allowed_host or []]
    for name in allowed:
        if not name or ("*" in name and name != "*") or any(c in name for c in "/ ,"):
            _fail(f"--allowed-host must be a host name or address such as myhost.lan or "
                  f"192.168.1.5 (or '*' for any host), got {name!r}")  # fmt: skip
    from learnscope.dashboard.app import create_app
    from learnscope.dashboard.hosts import LOCAL_HOSTS

    app = create_app(
        store, poll_seconds=poll, allowed_hosts=[*([host] if host.strip() else []), *allowed]
    )
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"learnscope dashboard of {store} at http://{shown}:{bound}/ (read-only; Ctrl+C "
               "stops it)")  # fmt: skip
    if not store.exists():
        typer.echo(f"note: there is no store at {store} yet; the dashboard shows its runs as "
                   "soon as a run creates it.")  # fmt: skip
    if host not in LOCAL_HOSTS:
        typer.echo(f"note: listening on {host}: other machines can reach the dashboard (there "
                   "is no authentication).")  # fmt: skip
    if host in _ALL_ADDRESSES and "*" not in allowed:
        names = ", ".join(dict.fromkeys([*LOCAL_HOSTS, host, *allowed]))
        typer.echo(f"note: it answers only requests addressed to {names}; add --allowed-host "
                   "NAME for each name or address other machines use to reach it.")  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
