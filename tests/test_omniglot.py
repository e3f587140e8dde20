"""learnscope.data's Omniglot reader against a small tree of PNG drawings written here in the
real layout (`images_background/<Alphabet>/<character>/<drawing>.png`, 105x105, 1-bit or 8-bit
greyscale, black strokes on white), with Pillow's own reading of each file as the reference.
"""

from __future__ import annotations

import hashlib
import random
import zipfile

import numpy as np
import pytest
from PIL import Image

from learnscope import data
from learnscope.data import omniglot as omniglot_module
from learnscope.data.files import extract_zip

# (alphabet, character) -> number of drawings; listed out of order on purpose
TREE = {
    ("Latin", "character02"): 6,
    ("Greek", "character01"): 4,
    ("Latin", "character01"): 5,
    ("Greek", "character02"): 6,
    ("Latin", "character03"): 4,
}
NAMES = ["Greek/character01", "Greek/character02",
         "Latin/character01", "Latin/character02", "Latin/character03"]


@pytest.fixture
def rng():
    """Fresh random drawings each run; the seed is printed so a failure can be replayed."""
    seed = random.randrange(2**32)
    print(f"omniglot seed: {seed}")
    return np.random.default_rng(seed)


def write_omniglot(images, rng, tree=TREE):
    """Drawings under `images` (an images_background folder); returns their paths by class name.

    Drawings are numbered like the real files (<character id>_<drawer>.png, drawers 01, 02, ...,
    10 sorting after 09) and written in shuffled order; even drawers are 1-bit images, odd ones
    8-bit greyscale with arbitrary grey levels.
    """
    paths = {}
    for (alphabet, character), count in tree.items():
        folder = images / alphabet / character
        folder.mkdir(parents=True)
        drawers = [1, 2, 10, 3, 9, 4, 11, 5][:count]
        files = []
        for drawer in rng.permutation(drawers):
            path = folder / f"0{len(paths)}07_{drawer:02d}.png"
            if drawer % 2 == 0:
                Image.fromarray(rng.random((105, 105)) < 0.8).save(path)  # mode "1"
            else:
                Image.fromarray(rng.integers(0, 256, (105, 105), dtype=np.uint8)).save(path)
            files.append(path)
        paths[f"{alphabet}/{character}"] = sorted(files, key=lambda p: p.name)
    return paths


def reference(path) -> np.ndarray:
    """Pillow's reading of one drawing, inverted to strokes = 1.0, as float (105, 105)."""
    with Image.open(path) as image:
        if image.mode == "1":
            page = np.asarray(image, dtype=bool).astype(np.float64)  # white page = True
        else:
            assert image.mode == "L"
            page = np.asarray(image, dtype=np.float64) / 255.0
    return 1.0 - page


@pytest.fixture
def tree(tmp_path, rng):
    root = tmp_path / "data"
    return root, write_omniglot(root / "omniglot-py" / "images_background", rng)


def test_registered_with_its_options():
    assert "omniglot" in data.list()
    assert data.options("omniglot") == {
        "root": None, "download": False, "background": True, "test_per_class": 5,
    }


def test_classes_labels_pixels_and_the_split_of_every_character(tree):
    root, paths = tree
    splits = data.load("omniglot", root=root, val_fraction=0, normalize=False, test_per_class=2)
    assert splits.num_classes == 5 and splits.class_names == tuple(NAMES)
    assert splits.input_shape == (1, 105, 105) and splits.val is None
    train_x, train_y = splits.train.tensors
    test_x, test_y = splits.test.tensors
    expected_train = [(c, p) for c, n in enumerate(NAMES) for p in paths[n][:-2]]
    expected_test = [(c, p) for c, n in enumerate(NAMES) for p in paths[n][-2:]]
    assert len(train_y) == sum(TREE.values()) - 2 * 5 and len(test_y) == 2 * 5
    for (x, y), expected in ((splits.train.tensors, expected_train),
                             (splits.test.tensors, expected_test)):
        assert y.tolist() == [c for c, _ in expected]
        assert x.min() >= 0 and x.max() <= 1
        for i, (_, path) in enumerate(expected):
            np.testing.assert_allclose(x[i, 0].numpy(), reference(path), atol=1e-6)
    # the split goes by sorted file name: drawer 10 sorts after 09, before 11
    assert [p.name[-6:-4] for p in paths["Latin/character02"]] == ["01", "02", "03", "04",
                                                                   "09", "10"]
    assert train_x.shape == (len(train_y), 1, 105, 105) and test_x.shape[1:] == (1, 105, 105)


def test_default_split_holds_out_the_last_five_drawings(tmp_path, rng):
    tree = {("Latin", "character01"): 7, ("Latin", "character02"): 6}
    paths = write_omniglot(tmp_path / "omniglot-py" / "images_background", rng, tree)
    splits = data.load("omniglot", root=tmp_path, val_fraction=0, normalize=False)
    assert splits.train.tensors[1].tolist() == [0, 0, 1]
    assert splits.test.tensors[1].tolist() == [0] * 5 + [1] * 5
    np.testing.assert_allclose(splits.train.tensors[0][2, 0].numpy(),
                               reference(paths["Latin/character02"][0]), atol=1e-6)
    np.testing.assert_allclose(splits.test.tensors[0][0, 0].numpy(),
                               reference(paths["Latin/character01"][2]), atol=1e-6)


def test_too_few_drawings_for_the_split_names_the_character(tree):
    root, _ = tree  # Greek/character01 has 4 drawings, the default holds out 5
    with pytest.raises(data.DatasetFormatError) as info:
        data.load("omniglot", root=root)
    message = str(info.value)
    assert "character01" in message and "4 PNG" in message and "test_per_class=5" in message


def test_no_test_split_when_nothing_is_held_out(tree):
    root, _ = tree
    splits = data.load("omniglot", root=root, val_fraction=0, test_per_class=0)
    assert splits.test is None and len(splits.train) == sum(TREE.values())


def test_resize_flatten_and_normalize_apply(tree):
    root, _ = tree
    small = data.load("omniglot", root=root, val_fraction=0, normalize=False,
                      test_per_class=2, resize=28)
    assert small.input_shape == (1, 28, 28) and small.train.tensors[0].shape[1:] == (1, 28, 28)
    assert small.test.tensors[0].shape[1:] == (1, 28, 28)
    assert small.train.tensors[0].min() >= 0 and small.train.tensors[0].max() <= 1
    flat = data.load("omniglot", root=root, val_fraction=0, normalize=False,
                     test_per_class=2, flatten=True)
    full = data.load("omniglot", root=root, val_fraction=0, normalize=False, test_per_class=2)
    assert flat.input_shape == (105 * 105,)
    np.testing.assert_array_equal(flat.train.tensors[0].numpy(),
                                  full.train.tensors[0].reshape(-1, 105 * 105).numpy())
    normed = data.load("omniglot", root=root, test_per_class=2, val_fraction=0)
    x = normed.train.tensors[0]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(unbiased=False)) - 1) < 1e-4


def test_classes_option_selects_characters_by_label(tree):
    root, _ = tree
    splits = data.load("omniglot", root=root, val_fraction=0, test_per_class=2, classes=[3, 0])
    assert splits.class_names == ("Latin/character02", "Greek/character01")
    assert splits.train.tensors[1].tolist() == [1] * 2 + [0] * 4  # samples keep their order


def test_evaluation_set_and_folders_directly_under_the_root(tmp_path, rng):
    write_omniglot(tmp_path / "images_background", rng, {("Latin", "character01"): 3})
    paths = write_omniglot(tmp_path / "images_evaluation", rng,
                           {("Mongolian", "character01"): 4, ("Atlantean", "character05"): 3})
    background = data.load("omniglot", root=tmp_path, val_fraction=0, test_per_class=1)
    assert background.class_names == ("Latin/character01",)
    evaluation = data.load("omniglot", root=tmp_path, background=False, val_fraction=0,
                           normalize=False, test_per_class=1)
    assert evaluation.class_names == ("Atlantean/character05", "Mongolian/character01")
    assert evaluation.train.tensors[1].tolist() == [0, 0, 1, 1, 1]
    np.testing.assert_allclose(evaluation.test.tensors[0][1, 0].numpy(),
                               reference(paths["Mongolian/character01"][-1]), atol=1e-6)


def test_hidden_files_and_other_files_are_ignored(tree):
    root, _ = tree
    images = root / "omniglot-py" / "images_background"
    (images / ".DS_Store").write_bytes(b"\0")
    (images / "Latin" / ".DS_Store").write_bytes(b"\0")
    (images / "Greek" / "character01" / "._0107_01.png").write_bytes(b"not a png")
    (images / "Greek" / "character01" / "notes.txt").write_text("x")
    (images / ".hidden" / "character01").mkdir(parents=True)
    splits = data.load("omniglot", root=root, val_fraction=0, test_per_class=2)
    assert splits.class_names == tuple(NAMES)


def test_root_from_environment(tree, monkeypatch):
    root, _ = tree
    monkeypatch.setenv(data.ROOT_ENV, str(root))
    splits = data.load("omniglot", val_fraction=0, test_per_class=2)
    assert splits.num_classes == 5 and splits.config["root"] == str(root)


def test_missing_names_every_path_and_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load("omniglot", root=tmp_path / "store")
    assert isinstance(info.value, data.DatasetNotFoundError)
    message = str(info.value)
    assert str(tmp_path / "store" / "omniglot-py") + " " in message
    assert str(tmp_path / "store") + " " in message  # the root itself is looked in too
    assert "missing images_background/" in message
    assert "download=True" in message and "LEARNSCOPE_DATA" in message
    assert "images_background.zip" in message and "68d2efa1b9178cc56df9314c21c6e718" in message
    with pytest.raises(data.DatasetNotFoundError, match="images_evaluation.zip"):
        data.load("omniglot", root=tmp_path, background=False)


def test_corrupt_png_is_named(tree):
    root, paths = tree
    bad = paths["Latin/character02"][3]
    bad.write_bytes(bad.read_bytes()[:60])  # truncated inside the image data
    with pytest.raises(data.DatasetFormatError) as info:
        data.load("omniglot", root=root, test_per_class=2)
    assert str(bad) in str(info.value)
    bad.write_bytes(b"GIF89a not a png at all")
    with pytest.raises(data.DatasetFormatError, match="not a readable PNG"):
        data.load("omniglot", root=root, test_per_class=2)


def test_wrong_size_or_colour_mode_is_named(tree):
    root, paths = tree
    bad = paths["Greek/character02"][0]
    Image.new("L", (28, 28), 255).save(bad)
    with pytest.raises(data.DatasetFormatError, match=r"28x28 pixels, expected 105x105"):
        data.load("omniglot", root=root, test_per_class=2)
    Image.new("RGB", (105, 105), (255, 255, 255)).save(bad)
    with pytest.raises(data.DatasetFormatError, match=r"'RGB' image"):
        data.load("omniglot", root=root, test_per_class=2)


def test_empty_subset_folder_is_a_format_error(tmp_path):
    (tmp_path / "omniglot-py" / "images_background").mkdir(parents=True)
    with pytest.raises(data.DatasetFormatError, match="no character folders"):
        data.load("omniglot", root=tmp_path)


@pytest.mark.parametrize("options", [{"background": "yes"}, {"test_per_class": -1},
                                     {"test_per_class": 2.0}, {"test_per_class": True}])
def test_bad_option_values_are_refused(tree, options):
    root, _ = tree
    with pytest.raises(ValueError, match=next(iter(options))):
        data.load("omniglot", root=root, **options)


# --------------------------------------------------------------------------- zip archives

def test_download_unpacks_the_checked_zip(tmp_path, rng, monkeypatch):
    staging = tmp_path / "staging"
    paths = write_omniglot(staging / "images_evaluation", rng, {("Tengwar", "character01"): 3})
    archive = tmp_path / "mirror" / "images_evaluation.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted((staging / "images_evaluation").rglob("*")):
            zipped.write(path, path.relative_to(staging).as_posix())
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(omniglot_module, "URL", archive.parent.as_uri() + "/")
    monkeypatch.setitem(omniglot_module.SUBSETS, False, ("images_evaluation", md5))
    root = tmp_path / "root"
    splits = data.load("omniglot", root=root, download=True, background=False,
                       val_fraction=0, normalize=False, test_per_class=1)
    assert splits.class_names == ("Tengwar/character01",)
    np.testing.assert_allclose(splits.test.tensors[0][0, 0].numpy(),
                               reference(paths["Tengwar/character01"][-1]), atol=1e-6)
    assert (root / "omniglot-py" / "images_evaluation.zip").is_file()
    assert (root / "omniglot-py" / "images_evaluation" / "Tengwar" / "character01").is_dir()


@pytest.mark.parametrize("name", ["../escaped.txt", "inner/../../escaped.txt", "/tmp/escaped.txt",
                                  "..\\escaped.txt"])
def test_zip_member_outside_the_folder_is_refused(tmp_path, name):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("images_background/ok.txt", b"fine")
        zipped.writestr(zipfile.ZipInfo(name), b"x")  # ZipInfo keeps the name as given
    with pytest.raises(data.DatasetFormatError, match="escaped.*refusing"):
        extract_zip(archive, tmp_path / "into")
    assert not (tmp_path / "escaped.txt").exists()
    assert not (tmp_path / "into" / "images_background").exists()  # nothing half-extracted


def test_zip_symbolic_link_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        info = zipfile.ZipInfo("images_background/link")
        info.external_attr = (0o120777 << 16)  # a symbolic link, as Info-ZIP stores one
        zipped.writestr(info, "/etc/passwd")
    with pytest.raises(data.DatasetFormatError, match="link.*refusing"):
        extract_zip(archive, tmp_path / "into")


def test_zip_that_is_not_a_zip_is_a_format_error(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK not really")
    with pytest.raises(data.DatasetFormatError, match="not a readable zip"):
        extract_zip(archive, tmp_path / "into")
