"""Omniglot from its PNG drawings: 1,623 handwritten characters of 50 alphabets, 20 drawings each.

Expected layout (torchvision's, as unpacked from the official zip archives):
`<root>/omniglot-py/images_background/<Alphabet>/<characterNN>/<drawing>.png` — the background
set, 30 alphabets, 964 characters — and `<root>/omniglot-py/images_evaluation/...` — the
evaluation set, 20 alphabets, 659 characters; `<root>/images_background` (the folders directly
under the root) is accepted too. Every drawing is a 105x105 PNG, 1-bit ("1") in the official
archives, 8-bit greyscale ("L") accepted, with black strokes (0) on a white page (1).

Choices made here, the same on every run:
  - classes are the characters, ordered by (alphabet, character) folder name; class names are
    "<Alphabet>/<character>", e.g. "Latin/character01";
  - values are inverted so that strokes are 1.0 and the page 0.0 (white on black, like MNIST);
    inputs are uint8 (N, 1, 105, 105) images in {0, 255} (scale 255), the native size — the
    common `resize` option of `learnscope.data.load` scales them (e.g. resize=28);
  - Omniglot has no train/test split of the drawings of a character: the last `test_per_class`
    drawings of every character in sorted file-name order (the file names number the drawers,
    e.g. 0709_01.png .. 0709_20.png) are its test samples, the others its training samples.

Files and folders whose names start with "." (e.g. .DS_Store) are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from learnscope.data.files import (
    DOWNLOAD_ADVICE,
    ROOT_ADVICE,
    DatasetFormatError,
    DatasetNotFoundError,
    download_file,
    extract_zip,
    missing_report,
    resolve_root,
)
from learnscope.data.splits import Source

FOLDER = "omniglot-py"  # torchvision's folder under the root
SIZE = 105  # every drawing is SIZE x SIZE pixels
# The archives of the dataset's repository, github.com/brendenlake/omniglot (python/ folder);
# MD5s as published in torchvision's Omniglot dataset definition.
URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
SUBSETS = {
    True: ("images_background", "68d2efa1b9178cc56df9314c21c6e718"),
    False: ("images_evaluation", "6b91aef0f799c5bb55b94e3f2daec811"),
}


def _entries(folder: Path, *, folders: bool) -> list[Path]:
    """The sub-folders (or the .png files) of `folder` in sorted name order, hidden ones skipped."""
    found = []
    for entry in folder.iterdir():
        if entry.name.startswith("."):
            continue
        if folders and entry.is_dir():
            found.append(entry)
        elif not folders and entry.is_file() and entry.suffix.lower() == ".png":
            found.append(entry)
    return sorted(found, key=lambda path: path.name)


def read_drawing(path: str | os.PathLike) -> np.ndarray:
    """One Omniglot PNG as a uint8 (105, 105) array, inverted: strokes 255, page 0.

    Raises:
        DatasetFormatError: the file is not a readable PNG, not 1-bit or 8-bit greyscale, or
            not 105x105 (what was found is named).
    """
    from PIL import Image  # Pillow comes with matplotlib, a dependency of learnscope

    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode, size = image.mode, image.size
            grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad files
        raise DatasetFormatError(
            f"{path} is not a readable PNG image ({type(error).__name__}: {error}); replace it "
            "with the file from the official archive"
        ) from error
    if mode not in ("1", "L"):
        raise DatasetFormatError(
            f"{path} is a {mode!r} image, expected a 1-bit ('1') or 8-bit greyscale ('L') "
            "Omniglot drawing; replace it with the file from the official archive"
        )
    if size != (SIZE, SIZE):
        raise DatasetFormatError(
            f"{path} is {size[0]}x{size[1]} pixels, expected {SIZE}x{SIZE} like every Omniglot "
            "drawing; replace it with the file from the official archive"
        )
    return 255 - grey


def _candidates(root: Path) -> list[Path]:
    return [root / FOLDER, root]


def _find(root: Path, subset: str) -> Path | None:
    for folder in _candidates(root):
        if (folder / subset).is_dir():
            return folder / subset
    return None


def fetch(background: bool = True, root: str | os.PathLike | None = None) -> Path:
    """Download one subset's zip archive (MD5-checked) and unpack it in `<root>/omniglot-py`.

    Returns:
        The unpacked folder, `<root>/omniglot-py/images_background` (or images_evaluation).
    """
    subset, md5 = SUBSETS[background]
    folder = resolve_root(root) / FOLDER
    archive = download_file([URL + subset + ".zip"], folder / (subset + ".zip"), md5)
    extract_zip(archive, folder)
    return folder / subset


def read_omniglot(
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    background: bool = True,
    test_per_class: int = 5,
) -> Source:
    """Omniglot characters as uint8 (N, 1, 105, 105) images, strokes 255 on 0 (inverted).

    Classes are the characters of the chosen subset in (alphabet, character) order, named
    "<Alphabet>/<character>". Of every character's drawings in sorted file order, the last
    `test_per_class` are test samples and the others training samples (15 + 5 of 20 by default).

    Args:
        root: data folder (default $LEARNSCOPE_DATA, else ./data); the subset's folder is looked
            for in `<root>/omniglot-py/`, then in `<root>` itself.
        download: fetch the subset's zip archive (MD5-checked) when its folder is missing.
        background: True reads images_background (964 characters of 30 alphabets), False
            images_evaluation (659 characters of 20 alphabets).
        test_per_class: drawings of every character held out as the test split, the last ones
            in file order; 0 gives no test split. Every character needs more drawings than this.

    Raises:
        ValueError: a bad background or test_per_class value.
        DatasetNotFoundError: no folder holds the subset (every path looked in is listed).
        DatasetFormatError: a drawing is not a 105x105 greyscale PNG, a character folder has too
            few drawings, or the subset folder holds no characters.
    """
    if not isinstance(background, bool):
        raise ValueError(
            f"background must be True (images_background) or False (images_evaluation), got "
            f"{background!r}"
        )
    if not isinstance(test_per_class, int) or isinstance(test_per_class, bool) or (
        test_per_class < 0
    ):
        raise ValueError(
            f"test_per_class must be an int >= 0 (drawings of every character held out for "
            f"testing; 0 gives no test split), got {test_per_class!r}"
        )
    subset, md5 = SUBSETS[background]
    root = resolve_root(root)
    images = _find(root, subset)
    if images is None and download:
        fetch(background, root)
        images = _find(root, subset)
    if images is None:
        folders = _candidates(root)
        url = URL + subset + ".zip"
        raise DatasetNotFoundError(
            f"Omniglot ({subset}) not found. Looked in:\n"
            + missing_report(folders, {f: [subset + "/"] for f in folders})
            + f"\nExpected the folder {subset}/<Alphabet>/<character>/<drawing>.png as unpacked "
            f"from {subset}.zip. To get it: {DOWNLOAD_ADVICE} where a network is reachable "
            f"(fetches {url}, MD5 {md5}), or download that archive yourself and unzip it in "
            f"{folders[0]} so that {folders[0] / subset} holds the alphabet folders. "
            + ROOT_ADVICE
        )

    names: list[str] = []
    train_x, train_y, test_x, test_y = [], [], [], []
    for alphabet in _entries(images, folders=True):
        for character in _entries(alphabet, folders=True):
            drawings = _entries(character, folders=False)
            if len(drawings) <= test_per_class:
                raise DatasetFormatError(
                    f"{character} holds {len(drawings)} PNG drawing(s); test_per_class="
                    f"{test_per_class} needs at least {test_per_class + 1} (every Omniglot "
                    "character has 20). Restore the folder from the official archive or lower "
                    "test_per_class"
                )
            label = len(names)
            names.append(f"{alphabet.name}/{character.name}")
            pixels = [read_drawing(path) for path in drawings]
            cut = len(pixels) - test_per_class
            train_x += pixels[:cut]
            train_y += [label] * cut
            test_x += pixels[cut:]
            test_y += [label] * test_per_class
    if not names:
        raise DatasetFormatError(
            f"{images} holds no character folders; expected {subset}/<Alphabet>/<character>/"
            f"<drawing>.png as unpacked from {subset}.zip. Delete the folder and unpack the "
            "archive again"
        )

    def tensors(pixels: list[np.ndarray], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.stack(pixels)[:, None]), torch.tensor(labels, dtype=torch.int64)

    train_inputs, train_labels = tensors(train_x, train_y)
    test_inputs, test_labels = tensors(test_x, test_y) if test_per_class else (None, None)
    return Source(
        train_inputs=train_inputs,
        train_labels=train_labels,
        test_inputs=test_inputs,
        test_labels=test_labels,
        num_classes=len(names),
        scale=255.0,
        class_names=tuple(names),
    )
