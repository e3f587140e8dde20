"""MNIST and Fashion-MNIST from their IDX files: 60,000 + 10,000 grey images, 28x28, 10 classes.

Expected files, plain or gzip-compressed (.gz): train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; looked for in `<root>/MNIST/raw/` (or
`<root>/FashionMNIST/raw/`, torchvision's layout), then directly in `<root>`.

IDX format: a 4-byte magic number — two zero bytes, a type code (0x08 = unsigned byte) and the
number of dimensions — then one big-endian uint32 per dimension, then the values, row-major.
Label files have magic 2049 (0x00000801, one dimension), image files 2051 (0x00000803, three).
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from learnscope.data.files import (
    DOWNLOAD_ADVICE,
    ROOT_ADVICE,
    DatasetFormatError,
    DatasetNotFoundError,
    download_file,
    missing_report,
    resolve_root,
)
from learnscope.data.splits import Source

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
# IDX type code -> big-endian NumPy dtype
_IDX_TYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class IdxDataset:
    """Where one IDX dataset is published and how it is laid out under the data root."""

    title: str
    folder: str  # <root>/<folder>/raw, torchvision's layout
    mirrors: tuple[str, ...]
    md5: dict[str, str]  # of the .gz files
    class_names: tuple[str, ...]


# MD5s of the .gz files as published: MNIST by torchvision's dataset definition (the files of
# yann.lecun.com/exdb/mnist, mirrored by PyTorch on ossci-datasets), Fashion-MNIST in the
# "Get the Data" table of github.com/zalandoresearch/fashion-mnist.
MNIST = IdxDataset(
    title="MNIST",
    folder="MNIST",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    md5={
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    class_names=tuple(str(d) for d in range(10)),
)
FASHION_MNIST = IdxDataset(
    title="Fashion-MNIST",
    folder="FashionMNIST",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    md5={
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
)


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Parse an IDX file (plain, or gzip if the name ends in .gz) into a NumPy array.

    Args:
        path: the file.
        expected_magic: 2051 for image files, 2049 for label files (None: accept any IDX).

    Returns:
        The values with the shape of the header, in native byte order.

    Raises:
        DatasetFormatError: bad magic number, unknown type code, or a size that does not match
            the header (what was found and what was expected are both named).
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            content = handle.read()
    except (OSError, EOFError) as error:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise DatasetFormatError(
            f"{path} could not be read ({error}); replace it with an intact copy"
        ) from error
    if len(content) < 4:
        raise DatasetFormatError(
            f"{path} has {len(content)} bytes, too short for an IDX header; replace it"
        )
    zero, type_code, ndim = struct.unpack(">HBB", content[:4])
    magic = struct.unpack(">I", content[:4])[0]
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise DatasetFormatError(
            f"{path} is not an IDX file: magic number {magic} (0x{magic:08x}), expected "
            f"{expected_magic or '0x0000TTDD'} (two zero bytes, a type code, a dimension "
            "count). The file is corrupt or of another format: replace it with the original"
        )
    if expected_magic is not None and magic != expected_magic:
        raise DatasetFormatError(
            f"{path} has magic number {magic} (0x{magic:08x}), expected {expected_magic} "
            f"(0x{expected_magic:08x}, {_magic_meaning(expected_magic)}); the file is corrupt "
            "or the images and labels files are swapped"
        )
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DatasetFormatError(f"{path} is truncated inside its IDX header; replace it")
    shape = struct.unpack(f">{ndim}I", content[4:header])
    dtype = _IDX_TYPES[type_code]
    expected_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) - header != expected_bytes:
        raise DatasetFormatError(
            f"{path} holds {len(content) - header} bytes of values, but its header announces "
            f"shape {shape} = {expected_bytes} bytes; the file is truncated or corrupt, replace it"
        )
    values = np.frombuffer(content, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def _magic_meaning(magic: int) -> str:
    return {IMAGES_MAGIC: "unsigned-byte images, 3 dimensions",
            LABELS_MAGIC: "unsigned-byte labels, 1 dimension"}.get(magic, "IDX")


def _locate(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _candidates(spec: IdxDataset, root: Path) -> list[Path]:
    return [root / spec.folder / "raw", root]


def _find(spec: IdxDataset, root: Path) -> dict[str, Path] | None:
    for folder in _candidates(spec, root):
        found = {key: _locate(folder, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found
    return None


def fetch(spec: IdxDataset, root: str | os.PathLike | None = None) -> Path:
    """Download the four .gz files (MD5-checked) to `<root>/<folder>/raw`; returns that folder."""
    folder = resolve_root(root) / spec.folder / "raw"
    for stem, md5 in spec.md5.items():
        download_file([m + stem + ".gz" for m in spec.mirrors], folder / (stem + ".gz"), md5)
    return folder


def _pair(images_path: Path, labels_path: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DatasetFormatError(
            f"{images_path} holds {images.dtype} of shape {images.shape}, expected unsigned "
            "bytes of shape (n, rows, columns)"
        )
    if labels.shape != images.shape[:1]:
        raise DatasetFormatError(
            f"{images_path} has {images.shape[0]} images but {labels_path} has "
            f"{labels.shape[0] if labels.ndim else 0} labels; the two files must come from "
            "the same split of the same dataset"
        )
    if labels.size and labels.max() >= classes:
        raise DatasetFormatError(
            f"{labels_path} has label {labels.max()}, expected labels 0..{classes - 1}"
        )
    return images[:, None], labels.astype(np.int64)


def read_idx_dataset(
    spec: IdxDataset, *, root: str | os.PathLike | None = None, download: bool = False
) -> Source:
    """Read an IDX dataset's train and test splits as uint8 (N, 1, H, W) images."""
    root = resolve_root(root)
    found = _find(spec, root)
    if found is None and download:
        fetch(spec, root)
        found = _find(spec, root)
    if found is None:
        folders = _candidates(spec, root)
        missing = {
            f: [s + "[.gz]" for s in FILES.values() if _locate(f, s) is None] for f in folders
        }
        raise DatasetNotFoundError(
            f"{spec.title} not found. Looked in:\n"
            + missing_report(folders, missing)
            + f"\nExpected the IDX files {', '.join(FILES.values())}, each plain or .gz. To get "
            f"them: {DOWNLOAD_ADVICE} where a network is reachable (fetches the .gz files "
            f"from {spec.mirrors[0]} and checks their MD5), or download them yourself into "
            f"{folders[0]}. {ROOT_ADVICE}"
        )
    classes = len(spec.class_names)
    train_x, train_y = _pair(found["train_images"], found["train_labels"], classes)
    test_x, test_y = _pair(found["test_images"], found["test_labels"], classes)
    return Source(
        train_inputs=torch.from_numpy(train_x),
        train_labels=torch.from_numpy(train_y),
        test_inputs=torch.from_numpy(test_x),
        test_labels=torch.from_numpy(test_y),
        num_classes=classes,
        scale=255.0,
        class_names=spec.class_names,
    )


def read_mnist(*, root: str | os.PathLike | None = None, download: bool = False) -> Source:
    """MNIST handwritten digits as uint8 (N, 1, 28, 28) images.

    Args:
        root: data folder (default $LEARNSCOPE_DATA, else ./data); files are looked for in
            `<root>/MNIST/raw/`, then in `<root>`.
        download: fetch the four .gz files (MD5-checked) when they are missing.
    """
    return read_idx_dataset(MNIST, root=root, download=download)


def read_fashion_mnist(*, root: str | os.PathLike | None = None, download: bool = False) -> Source:
    """Fashion-MNIST (Zalando article images) as uint8 (N, 1, 28, 28) images.

    Args:
        root: data folder (default $LEARNSCOPE_DATA, else ./data); files are looked for in
            `<root>/FashionMNIST/raw/`, then in `<root>`.
        download: fetch the four .gz files (MD5-checked) when they are missing.
    """
    return read_idx_dataset(FASHION_MNIST, root=root, download=download)
