"""learnscope.data: the readers against small files written here in the real formats, and the
common options against independent references (NumPy indexing, closed forms, brute force).

CIFAR-10 batches are pickled dicts exactly as in the official archive; IDX files are written
byte by byte from the format's specification (magic numbers 2049 / 2051), plain and gzipped.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import pickle
import random
import struct
import tarfile

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from learnscope import data
from learnscope.data import cifar10 as cifar_module
from learnscope.data.files import download_file, extract_tar
from learnscope.data.transforms import AugmentedDataset, crop_flip

NAMES = ["cifar10", "digits", "fashion-mnist", "mnist", "mnist1d", "omniglot", "synthetic"]
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
               b"dog", b"frog", b"horse", b"ship", b"truck"]


# --------------------------------------------------------------------------- writers

def _labels(rng: np.random.Generator, n: int, classes: int = 10) -> np.ndarray:
    """n labels covering every class, in random order."""
    return rng.permutation(np.arange(n) % classes)


def write_cifar(root, rng, per_batch=(20, 20, 20, 20, 20), test=20, meta=True, protocol=2):
    """Batches in `<root>/cifar-10-batches-py`; returns (train planes, labels, test ...).

    Images are made as separate R, G, B planes (n, 32, 32) and stored as the documented rows:
    1024 red values, 1024 green, 1024 blue, each plane row-major.
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out = {}
    for name, n in [(f"data_batch_{i + 1}", k) for i, k in enumerate(per_batch)] + [
        ("test_batch", test)
    ]:
        # channel-specific ranges so a channel mix-up cannot pass
        planes = [rng.integers(lo, hi, (n, 32, 32), dtype=np.uint8)
                  for lo, hi in ((0, 256), (50, 150), (200, 256))]
        rows = np.concatenate([p.reshape(n, 1024) for p in planes], axis=1)
        labels = _labels(rng, n).tolist()
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                 b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        out[name] = (np.stack(planes, axis=1), np.array(labels))
    if meta:
        (folder / "batches.meta").write_bytes(pickle.dumps(
            {b"num_cases_per_batch": 10000, b"label_names": CIFAR_NAMES, b"num_vis": 3072},
            protocol=protocol))
    train_x = np.concatenate([out[f"data_batch_{i + 1}"][0] for i in range(len(per_batch))])
    train_y = np.concatenate([out[f"data_batch_{i + 1}"][1] for i in range(len(per_batch))])
    return train_x, train_y, out["test_batch"][0], out["test_batch"][1]


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """An unsigned-byte IDX file: 0x00 0x00 0x08 ndim, big-endian uint32 sizes, the values."""
    header = bytes([0, 0, 0x08, array.ndim]) if magic is None else struct.pack(">I", magic)
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_mnist(folder, rng, n_train=30, n_test=20, gz=False, size=28):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": _labels(rng, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": _labels(rng, n_test).astype(np.uint8),
    }
    for name, array in arrays.items():
        content = idx_bytes(array)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(content))
        else:
            (folder / name).write_bytes(content)
    return arrays


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """Un-normalised [0, 1] inputs back to the bytes they came from."""
    return torch.round(x * 255).to(torch.uint8).numpy()


@pytest.fixture
def rng():
    """Fresh random data each run; the seed is printed so a failure can be replayed."""
    seed = random.randrange(2**32)
    print(f"data seed: {seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def cifar(tmp_path, rng):
    return tmp_path, write_cifar(tmp_path, rng)


# --------------------------------------------------------------------------- registry

def test_list_names_every_dataset():
    assert data.list() == NAMES


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        data.load("imagenet")
    for name in NAMES:
        assert name in str(info.value)
    assert "imagenet" in str(info.value)


def test_unknown_option_lists_the_datasets_options():
    with pytest.raises(TypeError) as info:
        data.load("mnist", rooot="/nowhere")
    message = str(info.value)
    assert "rooot" in message and "root" in message and "download" in message
    assert "per_class" in message  # the common options are named too


# --------------------------------------------------------------------------- CIFAR-10

def test_cifar10_reads_back_pixels_labels_and_channel_order(cifar):
    root, (train_x, train_y, test_x, test_y) = cifar
    splits = data.load("cifar10", root=root, normalize=False, val_fraction=0)
    x, y = splits.train.tensors
    assert x.dtype == torch.float32 and x.shape == (100, 3, 32, 32)
    np.testing.assert_array_equal(as_uint8(x), train_x)  # red plane is channel 0, ...
    np.testing.assert_array_equal(y.numpy(), train_y)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    tx, ty = splits.test.tensors
    np.testing.assert_array_equal(as_uint8(tx), test_x)
    np.testing.assert_array_equal(ty.numpy(), test_y)
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10
    assert splits.class_names == tuple(n.decode() for n in CIFAR_NAMES)
    assert splits.val is None and splits.name == "cifar10"
    # channel ranges written by write_cifar: green within 50..149, blue within 200..255
    assert as_uint8(x[:, 1]).min() >= 50 and as_uint8(x[:, 1]).max() < 150
    assert as_uint8(x[:, 2]).min() >= 200


def test_cifar10_root_from_environment(tmp_path, rng, monkeypatch):
    train_x, _, _, _ = write_cifar(tmp_path, rng, per_batch=(10,) * 5, test=10, meta=False)
    monkeypatch.setenv("LEARNSCOPE_DATA", str(tmp_path))
    splits = data.load("cifar10", normalize=False, val_fraction=0)
    np.testing.assert_array_equal(as_uint8(splits.train.tensors[0]), train_x)
    assert splits.config["root"] == str(tmp_path)
    assert splits.class_names[0] == "airplane"  # built-in names without batches.meta


def test_cifar10_written_by_numpy_1_pickles(tmp_path, rng):
    """The official files name numpy.core.multiarray (NumPy 1); they must still load."""
    train_x, _, _, _ = write_cifar(tmp_path, rng, per_batch=(10,) * 5, test=10)
    for path in (tmp_path / "cifar-10-batches-py").iterdir():
        old = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        path.write_bytes(old)
    splits = data.load("cifar10", root=tmp_path, normalize=False, val_fraction=0)
    np.testing.assert_array_equal(as_uint8(splits.train.tensors[0]), train_x)


def test_cifar10_missing_names_every_path_and_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load("cifar10", root=tmp_path / "store")
    assert isinstance(info.value, data.DatasetNotFoundError)
    message = str(info.value)
    assert str(tmp_path / "store" / "cifar-10-batches-py") in message
    assert str(tmp_path / "store") + " " in message  # the root itself is looked in too
    for name in ["data_batch_1", "data_batch_5", "test_batch"]:
        assert name in message
    assert "download=True" in message and "LEARNSCOPE_DATA" in message


def test_cifar10_one_missing_batch_is_named(cifar):
    root, _ = cifar
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(data.DatasetNotFoundError, match="missing data_batch_3"):
        data.load("cifar10", root=root)


def test_cifar10_pickle_with_foreign_code_is_refused(tmp_path, rng):
    write_cifar(tmp_path, rng, per_batch=(10,) * 5, test=10)
    evil = pickle.dumps({b"data": print, b"labels": []}, protocol=2)  # refers to print
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(evil)
    with pytest.raises(data.DatasetFormatError, match=r"builtin__\.print.*refusing"):
        data.load("cifar10", root=tmp_path)


def test_cifar10_wrong_row_length_is_reported(tmp_path, rng):
    write_cifar(tmp_path, rng, per_batch=(10,) * 5, test=10)
    bad = {b"data": np.zeros((4, 1024), np.uint8), b"labels": [0, 1, 2, 3]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(data.DatasetFormatError, match=r"\(4, 1024\).*\(n, 3072\)"):
        data.load("cifar10", root=tmp_path)


# --------------------------------------------------------------------------- MNIST / IDX

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    "name,folder", [("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"),
                    ("mnist", ""), ("fashion-mnist", "")],
    ids=["mnist-raw", "fashion-raw", "mnist-root", "fashion-root"])
def test_idx_datasets_read_back_exactly(tmp_path, rng, name, folder, gz):
    arrays = write_mnist(tmp_path / folder, rng, gz=gz)
    splits = data.load(name, root=tmp_path, normalize=False, val_fraction=0)
    x, y = splits.train.tensors
    assert x.shape == (30, 1, 28, 28) and splits.input_shape == (1, 28, 28)
    np.testing.assert_array_equal(as_uint8(x[:, 0]), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y.numpy(), arrays["train-labels-idx1-ubyte"])
    assert y.dtype == torch.int64
    tx, ty = splits.test.tensors
    np.testing.assert_array_equal(as_uint8(tx[:, 0]), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ty.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_read_idx_parses_the_header_itself(tmp_path, rng):
    array = rng.integers(0, 256, (3, 4, 5), dtype=np.uint8)
    path = tmp_path / "cube"
    path.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 3, 4, 5) + array.tobytes())
    np.testing.assert_array_equal(data.read_idx(path, 2051), array)
    # a big-endian int32 IDX (type code 0x0C)
    values = rng.integers(-(2**31), 2**31, (7,), dtype=np.int64)
    (tmp_path / "ints").write_bytes(
        b"\x00\x00\x0c\x01" + struct.pack(">I", 7) + struct.pack(">7i", *values.tolist()))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "ints"), values)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_corrupt_idx_magic_is_a_clear_error(tmp_path, rng, gz):
    write_mnist(tmp_path, rng, gz=gz)
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    content = idx_bytes(images, magic=0x12345678)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    (tmp_path / name).write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(data.DatasetFormatError) as info:
        data.load("mnist", root=tmp_path)
    message = str(info.value)
    assert name in message and str(0x12345678) in message and "2051" in message


def test_swapped_idx_files_are_reported(tmp_path, rng):
    arrays = write_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(
        idx_bytes(arrays["t10k-images-idx3-ubyte"]))  # images where labels belong: magic 2051
    with pytest.raises(data.DatasetFormatError, match=r"magic number 2051 .*expected 2049"):
        data.load("mnist", root=tmp_path)


def test_truncated_idx_file_is_reported(tmp_path, rng):
    write_mnist(tmp_path, rng)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.DatasetFormatError, match="truncated"):
        data.load("mnist", root=tmp_path)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_dataset_missing_names_every_path(tmp_path, rng, name, folder):
    write_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load(name, root=tmp_path)
    message = str(info.value)
    assert str(tmp_path / folder / "raw") in message
    assert f"{tmp_path}: missing t10k-labels-idx1-ubyte[.gz]" in message  # only that one
    assert "train-images-idx3-ubyte[.gz]" in message  # missing in the raw folder
    assert "download=True" in message


# --------------------------------------------------------------------------- subsets

def test_per_class_gives_exactly_n_per_class_deterministically(tmp_path, rng):
    write_mnist(tmp_path, rng, n_train=200, n_test=10)
    first = data.load("mnist", root=tmp_path, per_class=7, seed=3, normalize=False)
    again = data.load("mnist", root=tmp_path, per_class=7, seed=3, normalize=False)
    other = data.load("mnist", root=tmp_path, per_class=7, seed=4, normalize=False)
    labels = first.train.tensors[1].numpy()
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [7] * 10)
    assert torch.equal(first.train.tensors[0], again.train.tensors[0])
    assert not torch.equal(first.train.tensors[0], other.train.tensors[0])
    assert len(first.test) == 10  # the test split is never subsampled


def test_per_class_subsets_are_nested(tmp_path, rng):
    arrays = write_mnist(tmp_path, rng, n_train=200, n_test=10)
    images = {arrays["train-images-idx3-ubyte"][i].tobytes() for i in range(200)}
    small = data.load("mnist", root=tmp_path, per_class=3, normalize=False)
    large = data.load("mnist", root=tmp_path, per_class=9, normalize=False)
    small_set = {as_uint8(x[0]).tobytes() for x in small.train.tensors[0]}
    large_set = {as_uint8(x[0]).tobytes() for x in large.train.tensors[0]}
    assert small_set < large_set <= images


def test_class_counts_gives_the_requested_counts(tmp_path, rng):
    write_mnist(tmp_path, rng, n_train=200, n_test=10)
    counts = rng.integers(0, 20, 10).tolist()
    splits = data.load("mnist", root=tmp_path, class_counts=counts, val_fraction=0)
    np.testing.assert_array_equal(np.bincount(splits.train.tensors[1], minlength=10), counts)


@pytest.mark.parametrize("ratio,head", [(10.0, 18), (100.0, None), (1.0, 5)])
def test_imbalance_gives_a_geometric_profile(tmp_path, rng, ratio, head):
    write_mnist(tmp_path, rng, n_train=200, n_test=10)
    splits = data.load("mnist", root=tmp_path, imbalance=ratio, per_class=head, val_fraction=0)
    n0 = 20 if head is None else head  # without per_class: the smallest class (20 each)
    expected = [max(1, math.floor(n0 * ratio ** (-c / 9) + 0.5)) for c in range(10)]
    np.testing.assert_array_equal(np.bincount(splits.train.tensors[1], minlength=10), expected)
    assert expected[0] == n0 and expected[-1] == max(1, math.floor(n0 / ratio + 0.5))


def test_subset_requests_that_cannot_be_met_say_why(tmp_path, rng):
    write_mnist(tmp_path, rng, n_train=50, n_test=10)
    with pytest.raises(ValueError, match=r"class 0: 6 requested, 5 available"):
        data.load("mnist", root=tmp_path, per_class=6, val_fraction=0)
    with pytest.raises(ValueError, match="do not combine"):
        data.load("mnist", root=tmp_path, class_counts=[1] * 10, per_class=1)
    with pytest.raises(ValueError, match="one integer per class"):
        data.load("mnist", root=tmp_path, class_counts=[1] * 9)
    with pytest.raises(ValueError, match=">= 1"):
        data.load("mnist", root=tmp_path, imbalance=0.5)


def test_classes_subset_keeps_and_relabels(cifar):
    root, (train_x, train_y, test_x, test_y) = cifar
    splits = data.load("cifar10", root=root, classes=[7, 2, 9], normalize=False, val_fraction=0)
    x, y = splits.train.tensors
    keep = np.isin(train_y, [7, 2, 9])
    np.testing.assert_array_equal(as_uint8(x), train_x[keep])
    np.testing.assert_array_equal(y.numpy(), np.select(
        [train_y[keep] == 7, train_y[keep] == 2], [0, 1], 2))
    keep_test = np.isin(test_y, [7, 2, 9])
    np.testing.assert_array_equal(as_uint8(splits.test.tensors[0]), test_x[keep_test])
    assert set(splits.test.tensors[1].tolist()) == {0, 1, 2}
    assert splits.num_classes == 3
    assert splits.class_names == ("horse", "bird", "truck")


def test_classes_then_per_class(tmp_path, rng):
    write_mnist(tmp_path, rng, n_train=200, n_test=10)
    splits = data.load("mnist", root=tmp_path, classes=[5, 6, 7, 8, 9], per_class=4)
    np.testing.assert_array_equal(np.bincount(splits.train.tensors[1]), [4] * 5)
    with pytest.raises(ValueError, match="0..9"):
        data.load("mnist", root=tmp_path, classes=[3, 10])


# --------------------------------------------------------------------------- resize, normalize

def test_resize_gives_the_size(tmp_path, rng):
    write_mnist(tmp_path, rng)
    splits = data.load("mnist", root=tmp_path, resize=10)
    assert splits.input_shape == (1, 10, 10)
    assert splits.train.tensors[0].shape[1:] == (1, 10, 10)
    assert splits.test.tensors[0].shape[1:] == (1, 10, 10)
    flat = data.load("mnist", root=tmp_path, resize=(7, 14), flatten=True)
    assert flat.input_shape == (98,) and flat.test.tensors[0].shape[1:] == (98,)
    with pytest.raises(ValueError, match="resize"):
        data.load("mnist", root=tmp_path, resize=(7, 7, 7))


def test_resize_matches_pillows_antialiased_bilinear(tmp_path, rng):
    """Pillow's BILINEAR resize (a triangle filter widened when shrinking) is the reference."""
    image_module = pytest.importorskip("PIL.Image")
    arrays = write_mnist(tmp_path, rng, n_train=10, n_test=10)
    splits = data.load("mnist", root=tmp_path, resize=(10, 12), normalize=False, val_fraction=0)
    for image, got in zip(arrays["train-images-idx3-ubyte"], splits.train.tensors[0],
                          strict=True):
        pil = image_module.fromarray(image.astype(np.float32) / 255, mode="F")
        expected = np.asarray(pil.resize((12, 10), image_module.BILINEAR))
        np.testing.assert_allclose(got[0].numpy(), expected, atol=1e-5)
    # a 1-D signal: linear interpolation (NumPy reference at the sample centres)
    signals = data.load("synthetic", shape=(1, 8), num_samples=20, num_classes=2,
                        normalize=False, val_fraction=0, test_fraction=0, resize=16)
    raw = data.load("synthetic", shape=(1, 8), num_samples=20, num_classes=2,
                    normalize=False, val_fraction=0, test_fraction=0)
    centres = (np.arange(16) + 0.5) * 8 / 16 - 0.5
    for got, x in zip(signals.train.tensors[0], raw.train.tensors[0], strict=True):
        expected = np.interp(centres, np.arange(8), x[0].numpy())  # clamps at the edges
        np.testing.assert_allclose(got[0].numpy(), expected, atol=1e-5)


def test_normalize_gives_zero_mean_unit_std_per_channel_on_train(cifar):
    root, (train_x, _, test_x, _) = cifar
    splits = data.load("cifar10", root=root, val_fraction=0)
    x = splits.train.tensors[0].double()
    np.testing.assert_allclose(x.mean((0, 2, 3)).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(x.std((0, 2, 3), correction=0).numpy(), 1.0, atol=1e-6)
    # the test split uses the training statistics (float64 NumPy reference)
    raw = train_x / 255.0
    mean, std = raw.mean((0, 2, 3)), raw.std((0, 2, 3))
    expected = (test_x / 255.0 - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(splits.test.tensors[0].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(splits.normalization[0], mean, rtol=1e-6)
    np.testing.assert_allclose(splits.normalization[1], std, rtol=1e-6)


# --------------------------------------------------------------------------- validation split

@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.37])
def test_val_split_is_stratified_disjoint_and_sized(rng, fraction):
    splits = data.load("synthetic", num_samples=1250, num_classes=7, shape=(5,),
                       test_fraction=0.2, val_fraction=fraction, normalize=False,
                       data_seed=int(rng.integers(1000)))
    pool = data.load("synthetic", num_samples=1250, num_classes=7, shape=(5,),
                     test_fraction=0.2, val_fraction=0, normalize=False,
                     data_seed=splits.config["data_seed"])
    all_x, all_y = pool.train.tensors
    (train_x, train_y), (val_x, val_y) = splits.train.tensors, splits.val.tensors
    n = len(all_y)
    assert len(val_y) == math.floor(fraction * n + 0.5)
    assert len(train_y) + len(val_y) == n
    rows = {tuple(r) for r in all_x.tolist()}
    train_rows, val_rows = {tuple(r) for r in train_x.tolist()}, {tuple(r) for r in val_x.tolist()}
    assert train_rows.isdisjoint(val_rows) and train_rows | val_rows == rows
    per_class = np.bincount(all_y, minlength=7)
    val_per_class = np.bincount(val_y, minlength=7)
    assert np.all(np.abs(val_per_class - fraction * per_class) < 1)


def test_val_split_does_not_move_with_the_subsample(tmp_path, rng):
    write_mnist(tmp_path, rng, n_train=300, n_test=10)
    a = data.load("mnist", root=tmp_path, val_fraction=0.1, per_class=5, normalize=False)
    b = data.load("mnist", root=tmp_path, val_fraction=0.1, per_class=20, normalize=False)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    c = data.load("mnist", root=tmp_path, val_fraction=0.1, seed=1, normalize=False)
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])


# --------------------------------------------------------------------------- measure, augment

def _epoch(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(DataLoader(dataset, batch_size=16, shuffle=False))
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_measure_is_fixed_while_augmented_train_changes(cifar):
    root, _ = cifar
    torch.manual_seed(0)
    splits = data.load("cifar10", root=root, augment=True, val_fraction=0.1)
    assert isinstance(splits.measure, TensorDataset)
    m1, ml1 = _epoch(splits.measure)
    m2, ml2 = _epoch(splits.measure)
    assert torch.equal(m1, m2) and torch.equal(ml1, ml2)
    t1, tl1 = _epoch(splits.train)
    t2, tl2 = _epoch(splits.train)
    assert not torch.equal(t1, t2)
    assert t1.shape == t2.shape == m1.shape and len(splits.train) == len(splits.measure) == 90
    assert torch.equal(tl1, ml1) and torch.equal(tl2, ml1)
    assert torch.equal(splits.val.tensors[0], _epoch(splits.val)[0])  # val is not augmented


def _matches(augmented: np.ndarray, padded: np.ndarray, size: int) -> set[tuple[int, int, bool]]:
    """Every (top, left, flip) whose crop of `padded` equals `augmented` (brute force)."""
    found = set()
    for top in range(padded.shape[1] - size + 1):
        for left in range(padded.shape[2] - size + 1):
            window = padded[:, top:top + size, left:left + size]
            for flip in (False, True):
                if np.array_equal(window[:, :, ::-1] if flip else window, augmented):
                    found.add((top, left, flip))
    return found


@pytest.mark.parametrize("normalize", [False, True])
def test_augmented_images_are_padded_shifted_flipped_copies(cifar, normalize):
    root, (train_x, _, _, _) = cifar
    torch.manual_seed(1)
    splits = data.load("cifar10", root=root, augment=True, normalize=normalize, val_fraction=0)
    originals = splits.measure.tensors[0].numpy()
    # padding is raw black: 0 without normalisation, -mean/std with it
    fill = (np.zeros(3) if not normalize
            else -np.array(splits.normalization[0]) / np.array(splits.normalization[1]))
    one_by_one = [(i, *splits.train[i]) for i in range(0, 100, 5)]  # __getitem__
    images, labels = next(iter(DataLoader(splits.train, batch_size=20, shuffle=False)))
    batched = [(i, images[i], labels[i]) for i in range(20)]  # __getitems__, one batch
    seen = set()
    for i, image, label in one_by_one + batched:
        padded = np.stack([np.pad(originals[i, c], 4, constant_values=np.float32(fill[c]))
                           for c in range(3)])
        found = _matches(image.numpy(), padded, 32)
        assert found, f"augmented image {i} is no crop/flip of its padded original"
        assert int(label) == int(splits.measure.tensors[1][i])
        seen |= found
    assert {f for _, _, f in seen} == {False, True}
    assert len({(t, left) for t, left, _ in seen}) > 5  # offsets vary


def test_crop_flip_equals_a_hand_computed_crop():
    rng = np.random.default_rng(5)
    image = rng.standard_normal((2, 6, 5)).astype(np.float32)
    padded = np.pad(image, ((0, 0), (3, 3), (3, 3)), constant_values=-1.5)
    for top, left, flip in [(0, 0, False), (6, 6, True), (3, 3, False), (1, 5, True), (3, 2, True)]:
        expected = padded[:, top:top + 6, left:left + 5]
        expected = expected[:, :, ::-1] if flip else expected
        got = crop_flip(torch.from_numpy(image), top, left, flip, padding=3, fill=-1.5)
        np.testing.assert_array_equal(got.numpy(), expected)
    # the centre crop without flip is the image itself
    assert torch.equal(crop_flip(torch.from_numpy(image), 3, 3, False, 3), torch.from_numpy(image))


def test_augmented_dataset_with_a_generator_is_repeatable():
    images, labels = torch.rand(12, 3, 8, 8), torch.arange(12)
    first = AugmentedDataset(images, labels, generator=torch.Generator().manual_seed(9))
    second = AugmentedDataset(images, labels, generator=torch.Generator().manual_seed(9))
    assert torch.equal(_epoch(first)[0], _epoch(second)[0])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        AugmentedDataset(torch.rand(4, 10), torch.arange(4))


def test_flatten_with_augment_yields_vectors(cifar):
    root, _ = cifar
    splits = data.load("cifar10", root=root, augment=True, flatten=True, val_fraction=0.1)
    assert splits.input_shape == (3072,)
    assert splits.train[0][0].shape == (3072,) and splits.measure[0][0].shape == (3072,)
    assert splits.val.tensors[0].shape[1:] == (3072,)


def test_augment_needs_images():
    with pytest.raises(ValueError, match="augment"):
        data.load("synthetic", shape=(20,), num_samples=100, augment=True)


# --------------------------------------------------------------------------- generated data

def test_mnist1d_size_determinism_and_untouched_global_rng():
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    first = data.load("mnist1d", num_samples=300, data_seed=7, val_fraction=0)
    assert np.random.random() == expected_np and random.random() == expected_py
    again = data.load("mnist1d", num_samples=300, data_seed=7, val_fraction=0)
    other = data.load("mnist1d", num_samples=300, data_seed=8, val_fraction=0)
    x, y = first.train.tensors
    assert len(first.train) + len(first.test) == 300 and len(first.test) == 60
    assert first.input_shape == (1, 40) and first.num_classes == 10
    np.testing.assert_array_equal(
        np.bincount(torch.cat([y, first.test.tensors[1]]), minlength=10), [30] * 10)
    assert torch.equal(x, again.train.tensors[0]) and torch.equal(y, again.train.tensors[1])
    assert not torch.equal(x, other.train.tensors[0])
    resized = data.load("mnist1d", num_samples=100, resize=20, flatten=True)
    assert resized.input_shape == (20,)
    with pytest.raises(ValueError, match="multiple of 10"):
        data.load("mnist1d", num_samples=105)


def test_synthetic_clusters_have_the_requested_shape_and_classes():
    splits = data.load("synthetic", num_samples=600, num_classes=4, shape=(2, 3, 5),
                       separation=6.0, normalize=False, val_fraction=0, data_seed=11)
    x, y = splits.train.tensors
    assert splits.input_shape == (2, 3, 5) and x.shape[1:] == (2, 3, 5)
    assert splits.num_classes == 4 and set(y.tolist()) == {0, 1, 2, 3}
    assert len(splits.train) + len(splits.test) == 600 and len(splits.test) == 120
    # clusters: the nearest class mean (estimated on train) classifies the test split
    flat = x.reshape(len(x), -1).double()
    means = torch.stack([flat[y == c].mean(0) for c in range(4)])
    tx, ty = splits.test.tensors
    nearest = torch.cdist(tx.reshape(len(tx), -1).double(), means).argmin(1)
    assert (nearest == ty).double().mean() > 0.95
    # unit noise around each mean
    residual = flat - means[y]
    assert abs(residual.std().item() - 1.0) < 0.1
    same = data.load("synthetic", num_samples=600, num_classes=4, shape=(2, 3, 5),
                     separation=6.0, normalize=False, val_fraction=0, data_seed=11)
    assert torch.equal(same.train.tensors[0], x)


def test_digits_keep_the_quickstart_split():
    splits = data.load("digits", val_fraction=0)
    assert len(splits.train) == 1437 and len(splits.test) == 360
    assert splits.input_shape == (1, 8, 8)
    x = splits.train.tensors[0].double()
    assert abs(x.mean().item()) < 1e-6 and abs(x.std(correction=0).item() - 1) < 1e-6


# --------------------------------------------------------------------------- downloads (file://)

def test_download_checks_the_md5(tmp_path):
    source = tmp_path / "payload.bin"
    source.write_bytes(b"learnscope" * 1000)
    good = hashlib.md5(source.read_bytes()).hexdigest()
    target = tmp_path / "out" / "payload.bin"
    with pytest.raises(data.DownloadError, match=good):
        download_file([source.as_uri()], target, "0" * 32)
    assert not target.exists() and not list((tmp_path / "out").iterdir())
    missing = (tmp_path / "absent.bin").as_uri()
    assert download_file([missing, source.as_uri()], target, good) == target  # next mirror
    assert target.read_bytes() == source.read_bytes()


def test_cifar10_download_unpacks_the_checked_archive(tmp_path, rng, monkeypatch):
    staging = tmp_path / "staging"
    train_x, _, _, _ = write_cifar(staging, rng, per_batch=(10,) * 5, test=10)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar_module, "URL", archive.as_uri())
    monkeypatch.setattr(cifar_module, "MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    root = tmp_path / "root"
    splits = data.load("cifar10", root=root, download=True, normalize=False, val_fraction=0)
    np.testing.assert_array_equal(as_uint8(splits.train.tensors[0]), train_x)
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()


def test_archive_member_outside_the_folder_is_refused(tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        payload = b"x"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(data.DatasetFormatError, match="escaped"):
        extract_tar(archive, tmp_path / "into")
    assert not (tmp_path / "escaped.txt").exists()


def test_cifar10_channels_keeps_the_green_plane(cifar):
    root, (train_x, train_y, test_x, test_y) = cifar
    splits = data.load("cifar10", root=root, normalize=False, val_fraction=0, channels=[1])
    x, y = splits.train.tensors
    assert x.shape == (100, 1, 32, 32) and splits.input_shape == (1, 32, 32)
    np.testing.assert_array_equal(as_uint8(x)[:, 0], train_x[:, 1])  # the written green plane
    np.testing.assert_array_equal(y.numpy(), train_y)
    np.testing.assert_array_equal(as_uint8(splits.test.tensors[0])[:, 0], test_x[:, 1])
    two = data.load("cifar10", root=root, normalize=False, val_fraction=0, channels=[2, 0])
    np.testing.assert_array_equal(as_uint8(two.train.tensors[0]), train_x[:, [2, 0]])


@pytest.mark.parametrize("bad", [[], [3], [1, 1], "green", [True]])
def test_cifar10_bad_channels_say_what_is_allowed(cifar, bad):
    root, _ = cifar
    with pytest.raises(ValueError, match=r"channels=\[1\] for the green channel"):
        data.load("cifar10", root=root, channels=bad)
