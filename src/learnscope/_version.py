"""learnscope's version, from the installed package's metadata (no other learnscope import)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path


def package_version() -> str:
    """The version of the installed ``learnscope`` distribution.

    A source tree used without installing it (``PYTHONPATH=src``) has no metadata: the version
    is then read from the ``pyproject.toml`` beside ``src/``, else ``"0+unknown"``.
    """
    try:
        return metadata.version("learnscope")
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        text = pyproject.read_text()
    except OSError:
        return "0+unknown"
    project = text.split("[project]", 1)[-1].split("\n[", 1)[0]
    found = re.search(r'^version\s*=\s*"([^"]+)"', project, re.MULTILINE)
    return found.group(1) if found else "0+unknown"


__version__ = package_version()
