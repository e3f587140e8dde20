"""Where and by what a run is written: times, the learnscope version and git revision, and the
process (host, pid and its start time) that owns a run.

Nothing here touches the database; :mod:`learnscope.store.db` records these values with each run.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from learnscope._version import __version__

#: A running run last written from another host (whose process cannot be checked from here)
#: counts as owned by a live process until it has not been written for this many seconds.
OTHER_HOST_STALE_S = 3600.0

#: The learnscope package's folder (its git revision is recorded with each run).
_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _now() -> str:
    """Current time as ISO-8601 text in UTC, microsecond precision."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _time_text(seconds: float) -> str:
    """``seconds`` since the epoch as :func:`_now` writes times."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds")


@lru_cache(maxsize=1)
def _git_revision() -> str | None:
    """``git rev-parse HEAD`` of the tree holding the learnscope package, or None."""
    try:
        result = subprocess.run(
            ["git", "-C", str(_PACKAGE_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError, TypeError, ImportError):
        return None
    rev = result.stdout.strip()
    if result.returncode != 0 or not re.fullmatch(r"[0-9a-f]{7,64}", rev):
        return None
    return rev


def _learnscope_version() -> str | None:
    """The installed learnscope's version (package metadata), or None if unknown."""
    return None if __version__ == "0+unknown" else __version__


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (zombies count as dead)."""
    if pid <= 0:
        return False
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:  # a killed but not yet reaped child is still in the process table
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    fields = stat.rsplit(")", 1)[-1].split()
    return not (fields and fields[0] in ("Z", "X"))


def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` (clock ticks since boot, from /proc), or None if unknown.

    Together with the pid it names one process: a pid reused by a later process has another
    start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of stat; fields[0] is field 3


@lru_cache(maxsize=4)
def _own_start(pid: int) -> str | None:
    """:func:`_process_start` of this process (cached per pid: a forked child has its own)."""
    return _process_start(pid)


def _owner_alive(host: Any, pid: Any, pid_start: Any, updated_at: Any) -> bool:
    """Whether the process recorded as a run's owner still runs (see "Run ownership").

    On this host: the pid exists and, when its start time was recorded, is the same process.
    On another host (cannot be checked): alive until the run has not been written for
    :data:`OTHER_HOST_STALE_S` seconds. No recorded pid: no owner.
    """
    import pandas as pd

    if pid is None or pd.isna(pid):
        return False
    if host != socket.gethostname():
        written = parse_time(updated_at)
        return written is not None and time.time() - written < OTHER_HOST_STALE_S
    pid = int(pid)
    if not _pid_alive(pid):
        return False
    if pid_start is None or (not isinstance(pid_start, str) and pd.isna(pid_start)):
        return True
    now = _process_start(pid)
    return now is None or now == str(pid_start)


def parse_time(text: Any) -> float | None:
    """Seconds since the epoch of an ISO-8601 time (naive means UTC), or None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
