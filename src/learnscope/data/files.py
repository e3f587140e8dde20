"""Where dataset files live, how a missing one is reported, and how an official copy is fetched.

Downloads use only the standard library (urllib, hashlib, tarfile, zipfile) and check the
published MD5 of every file before it is put in place; a file that fails the check is deleted,
never used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

ROOT_ENV = "LEARNSCOPE_DATA"
DEFAULT_ROOT = "./data"
_CHUNK = 1 << 20


# How the not-found messages tell users to get a dataset and where its root comes from; the
# command line says the same with its own flag (DatasetNotFoundError.for_command_line).
DOWNLOAD_ADVICE = "pass download=True"
ROOT_ADVICE = "The root is the `root` option, else $LEARNSCOPE_DATA, else ./data."


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for (the message lists every path)."""

    def for_command_line(self) -> str:
        """The message as `learnscope run` / `sweep` users act on it: --download, no root."""
        return str(self).replace(DOWNLOAD_ADVICE, "pass --download").replace(
            ROOT_ADVICE, "The root is $LEARNSCOPE_DATA, else ./data.")


class DatasetFormatError(ValueError):
    """A dataset file exists but is not in the expected format (corrupt, truncated, or wrong)."""


class DownloadError(OSError):
    """A download failed on every mirror, or the file did not match its published checksum."""


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The data root: `root` if given, else $LEARNSCOPE_DATA, else ./data (made absolute)."""
    if root is None:
        root = os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    return Path(root).expanduser().absolute()


def md5_of(path: str | os.PathLike) -> str:
    """Hex MD5 digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(urls: Sequence[str], destination: str | os.PathLike, md5: str, *,
             timeout: float = 60.0) -> Path:
    """Fetch a file from the first mirror that serves it with the expected MD5.

    The file is streamed to a temporary name beside `destination` and renamed only once its
    MD5 matches, so an interrupted or corrupt download never looks like a valid file. An
    existing `destination` with the right MD5 is kept as it is.

    Args:
        urls: mirrors, tried in order.
        destination: final path of the file.
        md5: published hex MD5 of the file.
        timeout: seconds to wait on a stalled connection.

    Returns:
        The destination path.

    Raises:
        DownloadError: no mirror delivered a file with that MD5 (every attempt is listed).
    """
    destination = Path(destination)
    if destination.is_file() and md5_of(destination) == md5:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        partial = destination.with_name(destination.name + ".part")
        try:
            digest = hashlib.md5(usedforsecurity=False)
            with urllib.request.urlopen(url, timeout=timeout) as response, open(
                partial, "wb"
            ) as out:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != md5:
                failures.append(f"{url}: MD5 {digest.hexdigest()}, expected {md5}")
                partial.unlink()
                continue
            partial.replace(destination)
            return destination
        except (urllib.error.URLError, OSError, ValueError) as error:
            partial.unlink(missing_ok=True)
            failures.append(f"{url}: {error}")
    raise DownloadError(
        f"could not download {destination.name}: "
        + "; ".join(failures)
        + f". Download it by other means, check that its MD5 is {md5}, and put it at "
        f"{destination}"
    )


def extract_tar(archive: str | os.PathLike, into: str | os.PathLike) -> None:
    """Unpack a tar archive into a folder, refusing members that would land outside it."""
    into = Path(into).absolute()
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        for member in members:
            target = (into / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not target.is_relative_to(
                into.resolve()
            ):
                raise DatasetFormatError(
                    f"archive {archive} holds {member.name!r}, which is not a plain file or "
                    f"folder inside {into}; refusing to extract it. Delete the archive and "
                    "download it again"
                )
        # Extract into a scratch folder first so a failed extraction leaves no half-written set.
        with tempfile.TemporaryDirectory(dir=into) as scratch:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(scratch, members=members, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: members were checked above
                tar.extractall(scratch, members=members)
            for entry in Path(scratch).iterdir():
                final = into / entry.name
                if final.exists():
                    shutil.rmtree(final) if final.is_dir() else final.unlink()
                entry.replace(final)


def extract_zip(archive: str | os.PathLike, into: str | os.PathLike) -> None:
    """Unpack a zip archive into a folder, refusing members that would land outside it.

    The same checks as `extract_tar`: every member must be a plain file or folder (no symbolic
    link) whose name is relative, has no `..` part and resolves inside `into`.
    """
    into = Path(into).absolute()
    into.mkdir(parents=True, exist_ok=True)
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise DatasetFormatError(
            f"archive {archive} is not a readable zip file ({error}); delete it and download "
            "it again"
        ) from error
    with handle as zipped:
        members = zipped.infolist()
        for member in members:
            name = member.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            kind = stat.S_IFMT(member.external_attr >> 16)  # 0 where no Unix mode is stored
            target = (into / name).resolve()
            if (
                name.startswith("/")
                or (parts and ":" in parts[0])  # a Windows drive, C:/...
                or ".." in parts
                or kind not in (0, stat.S_IFREG, stat.S_IFDIR)  # e.g. a symbolic link
                or not target.is_relative_to(into.resolve())
            ):
                raise DatasetFormatError(
                    f"archive {archive} holds {member.filename!r}, which is not a plain file or "
                    f"folder inside {into}; refusing to extract it. Delete the archive and "
                    "download it again"
                )
        # Extract into a scratch folder first so a failed extraction leaves no half-written set.
        with tempfile.TemporaryDirectory(dir=into) as scratch:
            try:
                zipped.extractall(scratch, members=members)
            except (zipfile.BadZipFile, OSError) as error:  # CRC mismatch, truncated member
                raise DatasetFormatError(
                    f"archive {archive} could not be unpacked ({error}); delete it and download "
                    "it again"
                ) from error
            for entry in Path(scratch).iterdir():
                final = into / entry.name
                if final.exists():
                    shutil.rmtree(final) if final.is_dir() else final.unlink()
                entry.replace(final)


def missing_report(folders: Iterable[Path], missing: dict[Path, list[str]]) -> str:
    """One line per folder looked in, with the files that were missing there."""
    lines = []
    for folder in folders:
        state = "" if folder.is_dir() else " (folder does not exist)"
        lines.append(f"  {folder}{state}: missing {', '.join(missing[folder])}")
    return "\n".join(lines)
