"""CIFAR-10 from the official python-pickle batches: 50,000 + 10,000 colour 32x32 images.

Expected layout: `<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`, as
unpacked from cifar-10-python.tar.gz. Each batch is a pickled dict whose b"data" is a uint8 array
of shape (n, 3072) — per row the 1024 red values, then green, then blue, each 32x32 row-major —
and whose b"labels" is a list of n ints in 0..9.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from learnscope.data.files import (
    DOWNLOAD_ADVICE,
    ROOT_ADVICE,
    DatasetFormatError,
    DatasetNotFoundError,
    download_file,
    extract_tar,
    missing_report,
    resolve_root,
)
from learnscope.data.splits import Source

# Published on the dataset's page, https://www.cs.toronto.edu/~kriz/cifar.html
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

# The only globals a CIFAR batch refers to: numpy array reconstruction (old and new module
# names) and the bytes codec of protocol-2 pickles written by Python 3. Anything else is refused,
# so a tampered file cannot run code when it is unpickled.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DatasetFormatError(
                f"the pickle refers to {module}.{name}, which a CIFAR-10 batch never holds "
                "(only numpy arrays and lists); refusing to load it. Replace the file with one "
                "from the official archive"
            )
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            content = _BatchUnpickler(handle, encoding="bytes").load()
    except DatasetFormatError:
        raise
    except Exception as error:  # any unpickling failure means the file is not a batch
        raise DatasetFormatError(
            f"{path} is not a readable CIFAR-10 python batch ({type(error).__name__}: {error}); "
            f"expected a pickled dict from {ARCHIVE}. Delete it and unpack the archive again"
        ) from error
    if not isinstance(content, dict):
        raise DatasetFormatError(
            f"{path} holds a pickled {type(content).__name__}, expected a dict with b'data' and "
            f"b'labels'; replace it with the file from {ARCHIVE}"
        )
    return content


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch file.

    Returns:
        (images of shape (n, 3, 32, 32), uint8, channels RGB; labels of shape (n,), int64).

    Raises:
        DatasetFormatError: the file is not a CIFAR-10 batch (what was found is named).
    """
    path = Path(path)
    content = _unpickle(path)
    if b"data" not in content or b"labels" not in content:
        raise DatasetFormatError(
            f"{path} has keys {sorted(content)}, expected b'data' and b'labels'; replace it "
            f"with the file from {ARCHIVE}"
        )
    data = np.asarray(content[b"data"])
    labels = np.asarray(content[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFormatError(
            f"{path}: b'data' is {data.dtype} of shape {data.shape}, expected uint8 of shape "
            "(n, 3072); replace the file with the one from the official archive"
        )
    if labels.shape != (data.shape[0],):
        raise DatasetFormatError(
            f"{path}: {data.shape[0]} images but {labels.size} labels; replace the file with the "
            "one from the official archive"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise DatasetFormatError(
            f"{path}: labels range over {labels.min()}..{labels.max()}, expected 0..9"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _find(root: Path) -> Path | None:
    """The folder holding the batches, or None; every folder looked in is in `_candidates`."""
    for folder in _candidates(root):
        if all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
            return folder
    return None


def _candidates(root: Path) -> list[Path]:
    return [root / FOLDER, root]


def fetch(root: str | os.PathLike | None = None) -> Path:
    """Download the official archive (MD5-checked), unpack it under `root`; return the folder."""
    root = resolve_root(root)
    archive = download_file([URL], root / ARCHIVE, MD5)
    extract_tar(archive, root)
    return root / FOLDER


CHANNEL_NAMES = ("red", "green", "blue")


def check_channels(channels: Sequence[int] | None) -> tuple[int, ...] | None:
    """The channel indices to keep as a tuple (None: all); a bad value fails with the fix."""
    if channels is None:
        return None
    values = [channels] if isinstance(channels, int) else channels
    if isinstance(values, (str, bytes)) or not all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in values):
        raise ValueError(f"channels must be a sequence of channel indices 0 (red), 1 (green), "
                         f"2 (blue), got {channels!r}; e.g. channels=[1] for the green channel")
    values = tuple(int(c) for c in values)
    if not values or any(not 0 <= c < 3 for c in values) or len(set(values)) != len(values):
        raise ValueError(f"channels must list distinct indices from 0 (red), 1 (green), 2 (blue),"
                         f" got {list(values)}; e.g. channels=[1] for the green channel")
    return values


def read_cifar10(*, root: str | os.PathLike | None = None, download: bool = False,
                 channels: Sequence[int] | None = None) -> Source:
    """CIFAR-10 train (50,000) and test (10,000) images as uint8 (N, C, 32, 32), RGB.

    Args:
        root: data folder (default $LEARNSCOPE_DATA, else ./data); the batches are looked for
            in `<root>/cifar-10-batches-py/`, then in `<root>` itself.
        download: fetch the official archive (163 MB, MD5-checked) when the files are missing.
        channels: keep only these channels, in this order (0 red, 1 green, 2 blue; default all
            three). `channels=[1]` is the green channel alone, the input of the equi-separation
            reference's feed-forward nets on CIFAR-10.

    Raises:
        DatasetNotFoundError: no folder holds the batches (every path looked in is listed).
        DatasetFormatError: a batch is not in the CIFAR-10 format.
    """
    keep = check_channels(channels)
    root = resolve_root(root)
    folder = _find(root)
    if folder is None and download:
        fetch(root)
        folder = _find(root)
    if folder is None:
        folders = _candidates(root)
        missing = {
            f: [n for n in (*TRAIN_FILES, TEST_FILE) if not (f / n).is_file()] for f in folders
        }
        raise DatasetNotFoundError(
            "CIFAR-10 not found. Looked in:\n"
            + missing_report(folders, missing)
            + f"\nExpected the python-pickle batches {', '.join(TRAIN_FILES)}, {TEST_FILE} "
            f"(and {META_FILE}) as unpacked from {ARCHIVE}. To get them: {DOWNLOAD_ADVICE} "
            f"where a network is reachable (fetches {URL}, MD5 {MD5}), or download that archive "
            f"yourself and unpack it in {root} so that {root / FOLDER / TRAIN_FILES[0]} exists. "
            + ROOT_ADVICE
        )
    train = [read_batch(folder / name) for name in TRAIN_FILES]
    test_images, test_labels = read_batch(folder / TEST_FILE)
    names = CLASS_NAMES
    if (folder / META_FILE).is_file():
        meta = _unpickle(folder / META_FILE)
        found = meta.get(b"label_names")
        if isinstance(found, list) and len(found) == len(CLASS_NAMES):
            names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in found)
    train_images = np.concatenate([images for images, _ in train])
    if keep is not None:
        train_images, test_images = train_images[:, keep], test_images[:, keep]
    return Source(
        train_inputs=torch.from_numpy(np.ascontiguousarray(train_images)),
        train_labels=torch.from_numpy(np.concatenate([labels for _, labels in train])),
        test_inputs=torch.from_numpy(np.ascontiguousarray(test_images)),
        test_labels=torch.from_numpy(test_labels),
        num_classes=len(CLASS_NAMES),
        scale=255.0,
        class_names=names,
    )
