"""What the exporters share: opening a store, selecting runs, optional extras, safe writes."""

from __future__ import annotations

import importlib
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from learnscope.store import Store
from learnscope.store import open as open_store

StoreLike = Store | str | os.PathLike
RunsLike = str | Sequence[str] | None


class MissingExtraError(ImportError):
    """An optional dependency of an export format is not installed."""

    def __init__(self, what: str, package: str, extra: str) -> None:
        super().__init__(
            f"{what} needs the optional package {package!r}, which is not installed: "
            f"pip install 'learnscope[{extra}]'"
        )
        self.package = package
        self.extra = extra


def require(module: str, what: str, extra: str) -> Any:
    """Import `module` or raise MissingExtraError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(what, module.split(".")[0], extra) from error


@contextmanager
def opened(store: StoreLike) -> Iterator[Store]:
    """The store itself, or the store at a path (which must exist) opened for the block."""
    if isinstance(store, Store):
        yield store
        return
    path = Path(store).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no learnscope store at {path}; pass the path of a .db file")
    with open_store(path, read_only=True) as opened_store:
        yield opened_store


def resolve_runs(store: Store, run: RunsLike) -> list[dict[str, Any]]:
    """Run records (as `Store.run` gives them) for a ref, a list of refs, or None (all runs)."""
    if run is None:
        refs = [str(ref) for ref in store.runs()["id"]]
    elif isinstance(run, str):
        refs = [run]
    else:
        refs = list(run)
        if not refs:
            raise ValueError("no runs given; pass a run id, id prefix or name")
    records: dict[str, dict[str, Any]] = {}
    for ref in refs:
        record = store.run(ref)  # StoreError for an unknown or ambiguous ref
        records.setdefault(record["id"], record)
    return list(records.values())


def check_file_destination(path: Path, overwrite: bool) -> None:
    """Refuse a folder, or an existing file unless `overwrite`."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the path of the file to write")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; replace it with --force (overwrite=True in Python) or "
            "choose another destination"
        )


@contextmanager
def atomic_file(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed to `path` in one step.

    The destination therefore never holds a half-written file: it is either absent, its old
    version, or the complete new one. The temporary name keeps the destination's suffixes, so
    writers that infer compression from them (`x.csv.gz`) behave as for the destination.
    """
    path = Path(path).expanduser()
    check_file_destination(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{secrets.token_hex(4)}.partial.{path.name}")
    try:
        yield tmp
        if not overwrite and path.exists():  # appeared while we were writing
            check_file_destination(path, overwrite)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
