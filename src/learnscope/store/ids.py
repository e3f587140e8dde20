"""Run ids: ``<name prefix>-<UTC yyyymmdd-HHMMSS>-<4 hex digits>`` (see "Run ids" in
:mod:`learnscope.store.db`)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from .layout import safe_name

#: At most this many characters of a run's name go into its id (and so into the artifact
#: folder's name); a longer name is cut and tagged with a hash of the whole name.
RUN_ID_NAME_CHARS = 80


def _id_prefix(name: str) -> str:
    """The part of a run id made from the run's ``name``: sanitised, at most
    :data:`RUN_ID_NAME_CHARS` characters (ASCII, so as many bytes).

    A longer name keeps its first characters and ends with ``_`` and 8 hex digits of the
    sha256 of the whole name, so long names that differ only after the cut get different ids.
    """
    prefix = safe_name(name) or "run"
    if len(prefix) <= RUN_ID_NAME_CHARS:
        return prefix
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{prefix[:RUN_ID_NAME_CHARS - 9]}_{digest}"


def new_run_id(prefix: str, now: datetime) -> str:
    """A candidate id for a run whose :func:`_id_prefix` is ``prefix``, created at ``now``."""
    return f"{prefix}-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
