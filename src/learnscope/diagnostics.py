"""Diagnostics: learnscope's log messages, off unless asked for.

learnscope logs through the standard :mod:`logging` module, under the ``learnscope`` logger
(each module under its own name: ``learnscope.experiments.sweep``, ``learnscope.distributed``,
``learnscope.store.db``, ``learnscope.train.trainer``, ...). As the logging HOWTO recommends for
libraries, the ``learnscope`` logger has only a :class:`logging.NullHandler`: nothing is printed
until logging is asked for, and the root logger is never configured here.

Ask for it with the environment variable ``LEARNSCOPE_LOG`` (``debug``, ``info`` or ``warning``,
any case), read when learnscope is imported, or with the command line's ``--log-level LEVEL``
(which sets ``LEARNSCOPE_LOG`` for the processes the command starts: sweep workers, Ray tasks),
or in Python with :func:`enable_logging`. Either way one handler writes to standard error, one
line per message::

    2026-11-29 20:31:07,412 pid 48211 rank 1 learnscope.distributed DEBUG: all_reduce_sum ...

with the time, the process id, the torchrun rank (only when ``WORLD_SIZE`` > 1: ``RANK``), the
logger's name and the level. An application that configures logging itself (handlers on the
root logger) receives learnscope's records there as well: they propagate as usual.

This module is a leaf: it imports nothing from learnscope, and no torch.
"""

from __future__ import annotations

import logging
import os
import sys

#: The environment variable that switches logging on.
LOG_ENV = "LEARNSCOPE_LOG"
#: The levels LEARNSCOPE_LOG and --log-level accept (any case).
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
#: Each line: time, process id, torchrun rank (when several), logger, level, message.
LOG_FORMAT = "%(asctime)s pid %(process)d%(rank_tag)s %(name)s %(levelname)s: %(message)s"

logger = logging.getLogger("learnscope")
if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
    logger.addHandler(logging.NullHandler())


class LogLevelError(ValueError):
    """A log level that is not one of :data:`LEVELS`."""


def parse_level(text: str, source: str = "the log level") -> int:
    """The logging level named by ``text`` (debug, info or warning, any case).

    Raises LogLevelError with a one-line message naming ``source`` (where the text came from)
    and the levels allowed.
    """
    level = LEVELS.get(str(text).strip().lower())
    if level is None:
        raise LogLevelError(f"{source} {text!r} is not a log level; use one of "
                            f"{', '.join(LEVELS)} (any case)")
    return level


def rank_from_env() -> int | None:
    """This process's torchrun rank (``RANK``) when ``WORLD_SIZE`` > 1, else None."""
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return None
        return int(os.environ.get("RANK", "0"))
    except ValueError:  # a malformed launcher variable: distributed.init_from_env reports it
        return None


class _RankFormatter(logging.Formatter):
    """LOG_FORMAT, with `rank_tag` (" rank R" under torchrun, else empty) filled in."""

    def format(self, record: logging.LogRecord) -> str:
        rank = rank_from_env()
        record.rank_tag = "" if rank is None else f" rank {rank}"
        return super().format(record)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (looked up at each message, not kept)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D102 - logging.StreamHandler's attribute
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass  # always the current sys.stderr


def _our_handlers() -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h, _StderrHandler)]


def enable_logging(level: str | int = "debug") -> logging.Handler:
    """Print learnscope's messages of ``level`` and above to standard error; returns the handler.

    ``level``: ``"debug"``, ``"info"`` or ``"warning"`` (any case), or a logging level number.
    Idempotent: called again, it changes the level of the handler it attached the first time
    instead of adding another. The root logger is left alone.
    """
    number = level if isinstance(level, int) else parse_level(level)
    handlers = _our_handlers()
    if handlers:
        handler = handlers[0]
    else:
        handler = _StderrHandler()
        handler.setFormatter(_RankFormatter(LOG_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(number)
    return handler


def disable_logging() -> None:
    """Undo :func:`enable_logging`: remove its handler and the level (quiet again)."""
    for handler in _our_handlers():
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def level_from_env() -> int | None:
    """The level ``$LEARNSCOPE_LOG`` names, None when it is unset or empty.

    Raises LogLevelError (one line) for any other value.
    """
    text = os.environ.get(LOG_ENV, "").strip()
    if not text:
        return None
    return parse_level(text, LOG_ENV)


#: The message of an invalid LEARNSCOPE_LOG already printed at import (printed once).
reported_env_error: str | None = None


def enable_from_env() -> None:
    """Switch logging on when ``$LEARNSCOPE_LOG`` asks for it (done when learnscope is imported).

    An invalid value prints one line to standard error and leaves logging off (a program that
    imports learnscope goes on; the command line exits with status 2).
    """
    global reported_env_error
    try:
        level = level_from_env()
    except LogLevelError as error:
        if reported_env_error != str(error):
            reported_env_error = str(error)
            print(f"learnscope: error: {error}", file=sys.stderr, flush=True)
        return
    if level is not None:
        enable_logging(level)


def describe_error(error: BaseException) -> str:
    """One line for a stored or reported error: its type and message, at most 2000 characters
    (the type's bare name: stable when a class moves between modules)."""
    message = str(error)
    return (f"{type(error).__name__}: {message}" if message else type(error).__name__)[:2000]


def interruption_in(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one) behind `error`, if any.

    A Ctrl-C that lands inside some C extensions comes out as another error raised while the
    extension cleans up, with the KeyboardInterrupt as its context: torch.save interrupted while
    writing raises "RuntimeError: [enforce fail at inline_container.cc:...] unexpected pos".
    Such a run was stopped, not broken: it must be left interrupted (resumable), not failed.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
