"""Artifacts of one measurement: files in a folder of the store's artifact tree.

Each object (anything with `.save(path)`, e.g. PatternCounts) goes to `<safe name><suffix>`, and a
`manifest.json` mapping names to files is written last, atomically: a folder without a manifest is
an incomplete measurement and is treated as missing. The Scope writes the files
(`write_artifact_files`), commits the measurement's row, then writes the manifest
(`write_manifest`): a manifest never exists without its row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .layout import artifact_file_name, safe_component

MANIFEST = "manifest.json"


def safe_filename(name: str) -> str:
    """A file-name-safe version of a layer name (:func:`learnscope.store.layout.safe_component`,
    keeping ``#``)."""
    return safe_component(name, keep="#")


def write_artifact_files(folder: str | Path, objects: dict[str, Any],
                         suffix: str = ".npz") -> dict[str, str]:
    """Save each object to `folder`, without a manifest; returns {name: file name}.

    A manifest already in `folder` (an earlier write of the same measurement) is removed first:
    until `write_manifest` is called, the folder is an incomplete measurement, treated as missing.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    files: dict[str, str] = {}
    for name, obj in objects.items():
        filename = artifact_file_name(name, suffix)
        if filename in files.values():
            filename = f"{safe_filename(name)}-{len(files)}{suffix}"
        obj.save(folder / filename)
        files[name] = filename
    return files


def write_manifest(folder: str | Path, files: dict[str, str]) -> Path:
    """Write `folder`'s manifest (the map returned by `write_artifact_files`), atomically."""
    manifest = Path(folder) / MANIFEST
    tmp = manifest.with_name(f"{MANIFEST}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(files, indent=1))
        os.replace(tmp, manifest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def load_artifacts(folder: str | Path, loader: Callable[[Path], Any]) -> dict[str, Any]:
    """Load the objects listed in `folder`'s manifest (in saved order) with `loader(path)`."""
    manifest = Path(folder) / MANIFEST
    if not manifest.exists():
        raise FileNotFoundError(
            f"no complete artifacts in {folder} (no {MANIFEST}); the measurement was not saved "
            "(save_counts=False) or was interrupted"
        )
    files = json.loads(manifest.read_text())
    return {name: loader(Path(folder) / filename) for name, filename in files.items()}
