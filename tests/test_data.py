"""Dataset readers: every format on tiny files written here, exact pixels and labels, and every bad input.

The expected arrays are built in the test from the format's definition (byte offsets, explicit index formulas),
not by calling the reader's own helpers.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelzoo.data import (DatasetNotFoundError, ImageDataset, from_torchvision, load_bundled, load_dataset,
                           read_idx)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------------------------------
# bundled subset
# ---------------------------------------------------------------------------------------------------------------------

BUNDLED_SHA256 = "9e833d6f3287f20a44bfa50e8c67b563787e7085f6707aa8bf6731011b156033"  # pixelzoo/data/README.md


@pytest.mark.parametrize("split, n, first_labels", [
    ("train", 10000, [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]),  # the official MNIST order
    ("test", 1000, [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]),
])
def test_bundled_shapes_dtypes_and_pixels(split, n, first_labels):
    data = load_bundled(split)
    assert data.images.shape == (n, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert data.labels[:10].tolist() == first_labels
    assert data.bits == 8 and data.num_classes == 10 and data.split == split and data.image_shape == (1, 28, 28)
    raw = resources.files("pixelzoo").joinpath("data/mnist_subset.npz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == BUNDLED_SHA256
    with resources.files("pixelzoo").joinpath("data/mnist_subset.npz").open("rb") as f:
        ref = np.load(f)[f"{split}_images"]
    for i in (0, 1, n // 2, n - 1):  # pixel sums and a few single pixels, by plain numpy
        assert int(data.images[i].sum()) == int(ref[i].astype(np.int64).sum())
        assert data.images[i, 0, 14, 10:18].tolist() == ref[i, 14, 10:18].tolist()
    assert torch.equal(load_dataset(None, split).images, data.images)
    assert torch.equal(load_dataset("bundled", split).labels, data.labels)


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches
# ---------------------------------------------------------------------------------------------------------------------

def _s(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING: how Python 2 pickles a str
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _i(v: int) -> bytes:  # BININT
    return b"J" + struct.pack("<i", v)


def py2_cifar_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """The protocol-2 pickle that Python 2 cPickle writes for a CIFAR batch, assembled opcode by opcode:
    byte strings as BINSTRING, the array through numpy.core.multiarray._reconstruct (numpy 1 names)."""
    out = b"\x80\x02}(" + _s(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _i(0) + b"\x85" + _s(b"b") + b"\x87R"
    out += b"(" + _i(1) + _i(data.shape[0]) + _i(3072) + b"\x86" + b"cnumpy\ndtype\n" + _s(b"u1") + _i(0) + _i(1)
    out += b"\x87R(" + _i(3) + _s(b"|") + b"NNN" + _i(-1) + _i(-1) + _i(0) + b"tb"  # dtype state
    out += b"\x89" + _s(data.tobytes()) + b"tb"  # not Fortran, raw bytes; BUILD the array
    out += _s(b"labels") + b"](" + b"".join(_i(v) for v in labels) + b"e"
    return out + _s(b"batch_label") + _s(b"a batch") + b"u."


def py2_meta(names: list[str]) -> bytes:
    return b"\x80\x02}(" + _s(b"label_names") + b"](" + b"".join(_s(n.encode()) for n in names) + b"eu."


def cifar_expected(rows: np.ndarray) -> np.ndarray:
    """Official layout: value (c, h, w) of an image is row[1024 c + 32 h + w]."""
    c, h, w = np.indices((3, 32, 32))
    return rows[:, 1024 * c + 32 * h + w]


@pytest.fixture
def cifar_root(tmp_path):
    """A cifar-10-batches-py folder with five 2-image training batches and a 3-image test batch; batches 1-3
    as Python 2 wrote them, 4-5 and test as a Python 3 pickle.dump (protocol 4) of the same kind of dict."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    g = rng(1)
    batches = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        n = 3 if name == "test_batch" else 2
        rows = g.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in g.integers(0, 10, n)]
        batches[name] = (rows, labels)
        if k < 3:
            (folder / name).write_bytes(py2_cifar_batch(rows, labels))
        else:
            with open(folder / name, "wb") as f:
                pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": rows}, f, protocol=4)
    (folder / "batches.meta").write_bytes(py2_meta(["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse",
                                                    "ship", "truck"]))
    return tmp_path, batches


@pytest.mark.parametrize("where", ["parent", "folder"])
def test_cifar_folder_train_and_test(cifar_root, where):
    parent, batches = cifar_root
    source = parent if where == "parent" else parent / "cifar-10-batches-py"
    train = load_dataset(source, "train")
    order = [f"data_batch_{i}" for i in range(1, 6)]
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
    assert np.array_equal(train.images.numpy(), np.concatenate([cifar_expected(batches[b][0]) for b in order]))
    assert train.labels.tolist() == [y for b in order for y in batches[b][1]]
    assert train.split == "train" and train.class_names[1] == "car" and train.num_classes == 10
    test = load_dataset(str(source), "test")
    assert np.array_equal(test.images.numpy(), cifar_expected(batches["test_batch"][0]))
    assert test.labels.tolist() == batches["test_batch"][1] and test.split == "test"


def test_cifar_single_batch_file(cifar_root):
    parent, batches = cifar_root
    one = load_dataset(parent / "cifar-10-batches-py" / "data_batch_2", "test")  # split ignored for a file
    assert np.array_equal(one.images.numpy(), cifar_expected(batches["data_batch_2"][0]))
    assert one.labels.tolist() == batches["data_batch_2"][1] and one.split is None


def test_cifar_missing_batch(cifar_root):
    parent, _ = cifar_root
    (parent / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        load_dataset(parent, "train")
    assert len(load_dataset(parent, "test")) == 3  # the test split does not need it


class _RunsCommand:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


class _CallsEval:
    def __reduce__(self):
        return eval, ("1 + 1",)


@pytest.mark.parametrize("payload, name", [("system", "system"), ("eval", "builtins.eval")])
def test_cifar_pickle_with_other_globals_is_refused(cifar_root, payload, name):
    parent, _ = cifar_root
    marker = parent / "pwned"
    evil = _RunsCommand(marker) if payload == "system" else _CallsEval()
    with open(parent / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": evil}, f, protocol=4)
    with pytest.raises(ValueError, match=rf"refusing to load .*data_batch_1.*{name}"):
        load_dataset(parent, "train")
    assert not marker.exists()


def test_cifar_protocol5_and_bad_contents(cifar_root):
    parent, _ = cifar_root
    folder = parent / "cifar-10-batches-py"
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0]}, f, protocol=5)
    with pytest.raises(ValueError, match="_frombuffer"):
        load_dataset(parent, "test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=4)
    with pytest.raises(ValueError, match=r"\(n, 3072\)"):
        load_dataset(parent, "test")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f, protocol=4)
    with pytest.raises(ValueError, match="2 images but labels"):
        load_dataset(parent, "test")
    good = py2_cifar_batch(np.zeros((1, 3072), np.uint8), [0])
    (folder / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="not a readable CIFAR-10 pickle"):
        load_dataset(parent, "test")


# ---------------------------------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)
# ---------------------------------------------------------------------------------------------------------------------

def idx_bytes(a: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in a.shape) + a.astype(np.uint8).tobytes()


def write(path: Path, raw: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)
    return path


@pytest.fixture
def idx_folder(tmp_path, request):
    gz = request.param
    g = rng(2)
    sets = {}
    for prefix, n in (("train", 5), ("t10k", 3)):
        x = g.integers(0, 256, (n, 7, 6), dtype=np.uint8)
        y = g.integers(0, 10, n).astype(np.uint8)
        write(tmp_path / f"{prefix}-images-idx3-ubyte", idx_bytes(x, 2051), gz)
        write(tmp_path / f"{prefix}-labels-idx1-ubyte", idx_bytes(y, 2049), gz)
        sets[prefix] = (x, y)
    return tmp_path, sets, gz


@pytest.mark.parametrize("idx_folder", [False, True], indirect=True, ids=["plain", "gzip"])
def test_idx_folder_and_file(idx_folder):
    folder, sets, gz = idx_folder
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load_dataset(folder, split)
        x, y = sets[prefix]
        assert data.images.shape == (len(x), 1, 7, 6) and data.images.dtype == torch.uint8
        assert np.array_equal(data.images[:, 0].numpy(), x) and data.labels.tolist() == y.tolist()
        assert data.split == split
    one = load_dataset(folder / ("t10k-images-idx3-ubyte" + (".gz" if gz else "")), "train")
    assert np.array_equal(one.images[:, 0].numpy(), sets["t10k"][0]) and one.labels.tolist() == sets["t10k"][1].tolist()
    assert one.split is None


def test_idx_torchvision_raw_layout_and_prefix(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x = rng(3).integers(0, 256, (2, 4, 4), dtype=np.uint8)
    write(raw / "emnist-digits-train-images-idx3-ubyte", idx_bytes(x, 2051), gz=True)
    write(raw / "emnist-digits-train-labels-idx1-ubyte", idx_bytes(np.array([4, 2]), 2049), gz=False)
    data = load_dataset(tmp_path / "MNIST")
    assert np.array_equal(data.images[:, 0].numpy(), x) and data.labels.tolist() == [4, 2]
    write(raw / "emnist-letters-train-images-idx3-ubyte", idx_bytes(x, 2051), gz=False)
    with pytest.raises(ValueError, match="several train image sets"):
        load_dataset(raw)


def test_idx_without_labels_file(tmp_path):
    x = rng(4).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(x, 2051), gz=False)
    data = load_dataset(tmp_path)
    assert data.labels is None and data.num_classes == 0 and np.array_equal(data.images[:, 0].numpy(), x)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_bad_headers(tmp_path, gz):
    x = np.zeros((2, 3, 3), np.uint8)
    good = idx_bytes(x, 2051)
    bad_magic = write(tmp_path / "a-images-idx3-ubyte", idx_bytes(x, 2052), gz)
    with pytest.raises(ValueError, match=r"magic number 2052.*2051"):
        read_idx(bad_magic, 2051)
    short = write(tmp_path / "b-images-idx3-ubyte", good[:-1], gz)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(short)
    long = write(tmp_path / "c-images-idx3-ubyte", good + b"\0", gz)
    with pytest.raises(ValueError, match="longer than its header"):
        read_idx(long)
    header = write(tmp_path / "d-images-idx3-ubyte", good[:10], gz)
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(header)
    labels = write(tmp_path / "e-labels-idx1-ubyte", idx_bytes(np.zeros(2), 2049), gz)
    with pytest.raises(ValueError, match="expected images"):
        read_idx(labels, 2051)
    with pytest.raises(ValueError, match="IDX labels file"):
        load_dataset(labels)


def test_idx_corrupt_gzip_and_count_mismatch(tmp_path):
    x = np.zeros((3, 2, 2), np.uint8)
    packed = gzip.compress(idx_bytes(x, 2051))
    (tmp_path / "x-images-idx3-ubyte.gz").write_bytes(packed[:-12])
    with pytest.raises(ValueError, match="cannot decompress"):
        read_idx(tmp_path / "x-images-idx3-ubyte.gz")
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(x, 2051), gz=False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(2), 2049), gz=False)
    with pytest.raises(ValueError, match=r"3 images but .*train-labels-idx1-ubyte holds 2 labels"):
        load_dataset(tmp_path, "train")
    with pytest.raises(DatasetNotFoundError, match="no test images"):
        load_dataset(tmp_path, "test")


# ---------------------------------------------------------------------------------------------------------------------
# PNG folders
# ---------------------------------------------------------------------------------------------------------------------

def save_png(path: Path, a: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(a)
    (im.convert(mode) if mode else im).save(path)


def test_png_flat_grey_in_natural_order(tmp_path):
    g = rng(5)
    arrays = {k: g.integers(0, 256, (5, 4), dtype=np.uint8) for k in (10, 2, 1)}
    for k, a in arrays.items():
        save_png(tmp_path / f"img{k}.png", a)
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_dataset(tmp_path)
    assert data.images.shape == (3, 1, 5, 4) and data.labels is None and data.split is None
    for i, k in enumerate([1, 2, 10]):
        assert np.array_equal(data.images[i, 0].numpy(), arrays[k])


def test_png_class_folders_rgb_and_splits(tmp_path):
    g = rng(6)
    made = {}
    for split in ("train", "test"):
        for cls in ("zebra", "ant"):
            for j in range(2):
                a = g.integers(0, 256, (3, 5, 3), dtype=np.uint8)  # H, W, RGB
                save_png(tmp_path / split / cls / f"{j}.png", a)
                made[split, cls, j] = a
    (tmp_path / "train" / ".hidden").mkdir()
    for split in ("train", "test"):
        data = load_dataset(tmp_path, split)
        assert data.class_names == ["ant", "zebra"] and data.labels.tolist() == [0, 0, 1, 1]
        assert data.images.shape == (4, 3, 3, 5) and data.split == split
        for i, (cls, j) in enumerate([("ant", 0), ("ant", 1), ("zebra", 0), ("zebra", 1)]):
            a = made[split, cls, j]
            for c in range(3):  # NCHW: channel c of image i is the c-th value of every pixel
                assert np.array_equal(data.images[i, c].numpy(), a[:, :, c])


def test_png_modes(tmp_path):
    opaque = np.dstack([rng(7).integers(0, 256, (2, 2, 3)), np.full((2, 2), 255)]).astype(np.uint8)
    save_png(tmp_path / "rgba" / "a.png", opaque)
    data = load_dataset(tmp_path / "rgba")
    assert data.images.shape == (1, 3, 2, 2) and np.array_equal(data.images[0, 1].numpy(), opaque[:, :, 1])
    translucent = opaque.copy()
    translucent[0, 0, 3] = 254
    save_png(tmp_path / "rgba2" / "a.png", translucent)
    with pytest.raises(ValueError, match="translucent"):
        load_dataset(tmp_path / "rgba2")
    deep = np.array([[0, 1000], [40000, 65535]], np.uint16)
    save_png(tmp_path / "g16" / "a.png", deep)
    data = load_dataset(tmp_path / "g16")
    assert data.bits == 16 and data.images.dtype == torch.int32 and data.images[0, 0].tolist() == deep.tolist()
    save_png(tmp_path / "bw" / "a.png", np.array([[0, 255], [255, 0]], np.uint8), mode="1")
    data = load_dataset(tmp_path / "bw")
    assert data.bits == 1 and data.images[0, 0].tolist() == [[0, 1], [1, 0]]
    save_png(tmp_path / "pal" / "a.png", opaque[..., :3], mode="P")
    with pytest.raises(ValueError, match=r"mode 'P'.*convert"):
        load_dataset(tmp_path / "pal")


def test_png_mixed_sizes_and_modes(tmp_path):
    save_png(tmp_path / "s" / "a.png", np.zeros((4, 4), np.uint8))
    save_png(tmp_path / "s" / "b.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png is 4x4 L.*b\.png is 5x4 L"):
        load_dataset(tmp_path / "s")
    save_png(tmp_path / "m" / "a.png", np.zeros((4, 4), np.uint8))
    save_png(tmp_path / "m" / "b.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png is 4x4 L \(1 channels.*b\.png is 4x4 RGB \(3 channels"):
        load_dataset(tmp_path / "m")


def test_png_bad_layouts(tmp_path):
    save_png(tmp_path / "both" / "a.png", np.zeros((2, 2), np.uint8))
    save_png(tmp_path / "both" / "cls" / "b.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="both PNG files and class folders"):
        load_dataset(tmp_path / "both")
    save_png(tmp_path / "emptycls" / "cat" / "b.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "emptycls" / "dog").mkdir()
    with pytest.raises(ValueError, match="without PNG images.*dog"):
        load_dataset(tmp_path / "emptycls")
    save_png(tmp_path / "onlytrain" / "train" / "a.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetNotFoundError, match="no test/ folder"):
        load_dataset(tmp_path / "onlytrain", "test")
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "x.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="not a PNG"):
        load_dataset(tmp_path / "fake")


# ---------------------------------------------------------------------------------------------------------------------
# .npz
# ---------------------------------------------------------------------------------------------------------------------

def test_npz_nhwc_to_nchw_and_grey(tmp_path):
    g = rng(8)
    x = g.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    y = np.array([3, 1, 0, 2], np.uint8)
    np.savez_compressed(tmp_path / "rgb.npz", images=x, labels=y)
    data = load_dataset(tmp_path / "rgb.npz", "test")
    assert data.images.shape == (4, 3, 5, 6) and data.images.dtype == torch.uint8 and data.images.is_contiguous()
    n, c, h, w = np.indices((4, 3, 5, 6))
    assert np.array_equal(data.images.numpy(), x[n, h, w, c])
    assert data.labels.tolist() == [3, 1, 0, 2] and data.split is None
    grey = g.integers(0, 256, (2, 3, 3), dtype=np.uint8)
    np.savez(tmp_path / "grey.npz", images=grey)
    data = load_dataset(tmp_path / "grey.npz")
    assert data.images.shape == (2, 1, 3, 3) and data.labels is None
    assert np.array_equal(data.images[:, 0].numpy(), grey)


def test_npz_split_keys_and_bits(tmp_path):
    tr, te = np.full((2, 2, 2), 7, np.uint8), np.full((1, 2, 2), 9, np.uint8)
    np.savez(tmp_path / "s.npz", train_images=tr, train_labels=np.array([1, 0]), test_images=te,
             test_labels=np.array([4]))
    assert load_dataset(tmp_path / "s.npz", "test").images.flatten().tolist() == [9] * 4
    assert load_dataset(tmp_path / "s.npz", "train").labels.tolist() == [1, 0]
    assert load_dataset(tmp_path / "s.npz", "train").split == "train"
    np.savez(tmp_path / "only.npz", train_images=tr)
    with pytest.raises(ValueError, match=r"neither 'test_images' nor 'images'"):
        load_dataset(tmp_path / "only.npz", "test")
    deep = np.array([[[0, 1023], [512, 3]]], np.uint16)
    np.savez(tmp_path / "deep.npz", images=deep)
    with pytest.raises(ValueError, match="wider than uint8.*bits="):
        load_dataset(tmp_path / "deep.npz")
    data = load_dataset(tmp_path / "deep.npz", bits=10)
    assert data.bits == 10 and data.images.dtype == torch.int32 and data.images[0, 0].tolist() == deep[0].tolist()
    np.savez(tmp_path / "deepbits.npz", images=deep, bits=np.int64(10))
    assert load_dataset(tmp_path / "deepbits.npz").bits == 10
    with pytest.raises(ValueError, match="says bits=10, but bits=12"):
        load_dataset(tmp_path / "deepbits.npz", bits=12)
    with pytest.raises(ValueError, match=r"\[0, 1023\], outside the levels \[0, 255\]"):
        load_dataset(tmp_path / "deep.npz", bits=8)


def test_npz_bad_inputs(tmp_path):
    x = np.zeros((3, 4, 4), np.uint8)
    np.savez(tmp_path / "count.npz", images=x, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"3 images but labels of shape \(2,\)"):
        load_dataset(tmp_path / "count.npz")
    np.savez(tmp_path / "nchw.npz", images=np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="channels-first"):
        load_dataset(tmp_path / "nchw.npz")
    np.savez(tmp_path / "float.npz", images=x.astype(np.float32))
    with pytest.raises(ValueError, match="integer levels.*float32"):
        load_dataset(tmp_path / "float.npz")
    np.savez(tmp_path / "keys.npz", pixels=x)
    with pytest.raises(ValueError, match=r"\['pixels'\]"):
        load_dataset(tmp_path / "keys.npz")
    np.savez(tmp_path / "neg.npz", images=x, labels=np.array([0, -1, 2]))
    with pytest.raises(ValueError, match=">= 0"):
        load_dataset(tmp_path / "neg.npz")
    np.savez(tmp_path / "obj.npz", images=x, labels=np.array([0, "a", None], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz"):
        load_dataset(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(ValueError, match=r"cannot read .*junk\.npz"):
        load_dataset(tmp_path / "junk.npz")


# ---------------------------------------------------------------------------------------------------------------------
# dataset objects
# ---------------------------------------------------------------------------------------------------------------------

class ListDataset:
    """The torchvision protocol: len() and [i] -> (image, label), optional .classes and .train."""

    def __init__(self, items, classes=None, train=None):
        self.items, self.classes, self.train = items, classes, train

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_dataset_object_pil_tensor_ndarray():
    g = rng(9)
    rgb = [g.integers(0, 256, (4, 3, 3), dtype=np.uint8) for _ in range(3)]  # H, W, C
    as_pil = ListDataset([(Image.fromarray(a), k) for k, a in enumerate(rgb)], classes=["a", "b", "c", "d"],
                         train=False)
    as_float = ListDataset([(torch.from_numpy(a).permute(2, 0, 1).float() / 255, torch.tensor(k))
                            for k, a in enumerate(rgb)])  # what ToTensor makes: float32 k/255, (C, H, W)
    as_array = ListDataset([(a, np.int64(k)) for k, a in enumerate(rgb)])
    n, c, h, w = np.indices((3, 3, 4, 3))
    expected = np.stack(rgb)[n, h, w, c]
    for ds in (as_pil, as_float, as_array):
        data = load_dataset(ds)
        assert data.images.dtype == torch.uint8 and np.array_equal(data.images.numpy(), expected)
        assert data.labels.tolist() == [0, 1, 2]
    pil = from_torchvision(as_pil)
    assert pil.class_names == ["a", "b", "c", "d"] and pil.num_classes == 4 and pil.split == "test"
    grey = ListDataset([(torch.tensor([[0, 3], [2, 1]]), 0)])
    assert from_torchvision(grey, bits=2).images.tolist() == [[[[0, 3], [2, 1]]]]


def test_dataset_object_refusals():
    normalized = ListDataset([(torch.full((1, 2, 2), -0.5), 0)])
    with pytest.raises(ValueError, match="not the exact levels.*PILToTensor"):
        from_torchvision(normalized)
    resized = ListDataset([(torch.full((1, 2, 2), 0.5), 0)])  # 127.5 is between two levels
    with pytest.raises(ValueError, match="not the exact levels"):
        from_torchvision(resized)
    mixed = ListDataset([(np.zeros((2, 2), np.uint8), 0), (np.zeros((3, 2), np.uint8), 1)])
    with pytest.raises(ValueError, match=r"ListDataset\[0\].*ListDataset\[1\]"):
        from_torchvision(mixed)
    channels = ListDataset([(np.zeros((2, 2), np.uint8), 0), (np.zeros((2, 2, 3), np.uint8), 1)])
    with pytest.raises(ValueError, match="1 channels.*3 channels"):
        from_torchvision(channels)
    with pytest.raises(ValueError, match="wider than uint8"):
        from_torchvision(ListDataset([(torch.zeros(1, 2, 2, dtype=torch.int64), 0)]))
    with pytest.raises(ValueError, match="looks channels-last"):
        from_torchvision(ListDataset([(torch.zeros(8, 8, 3, dtype=torch.uint8), 0)]))
    with pytest.raises(ValueError, match="looks channels-first"):
        from_torchvision(ListDataset([(np.zeros((3, 8, 8), np.uint8), 0)]))
    with pytest.raises(ValueError, match=r"\(image, label\) pair"):
        from_torchvision(ListDataset([np.zeros((2, 2), np.uint8)]))
    with pytest.raises(ValueError, match="some items have a label"):
        from_torchvision(ListDataset([(np.zeros((2, 2), np.uint8), 0), (np.zeros((2, 2), np.uint8), None)]))


def test_real_torchvision_dataset():
    datasets = pytest.importorskip("torchvision.datasets")
    transforms = pytest.importorskip("torchvision.transforms")
    plain = datasets.FakeData(size=4, image_size=(3, 5, 6), num_classes=3, random_offset=7)
    expected = np.stack([np.asarray(plain[i][0]).transpose(2, 0, 1) for i in range(4)])
    labels = [int(plain[i][1]) for i in range(4)]
    for transform in (None, transforms.ToTensor(), transforms.PILToTensor()):
        ds = datasets.FakeData(size=4, image_size=(3, 5, 6), num_classes=3, random_offset=7, transform=transform)
        data = from_torchvision(ds)
        assert np.array_equal(data.images.numpy(), expected) and data.labels.tolist() == labels


# ---------------------------------------------------------------------------------------------------------------------
# dispatch and the dataset class
# ---------------------------------------------------------------------------------------------------------------------

def test_dispatch_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"'mnist' does not exist.*'bundled'") as err:
        load_dataset("mnist")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_dataset(missing)
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"unknown dataset file .*a\.txt"):
        load_dataset(tmp_path / "a.txt")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match=r"unknown dataset layout .*readme\.md.*CIFAR-10"):
        load_dataset(tmp_path / "other")
    with pytest.raises(ValueError, match="split must be"):
        load_dataset("bundled", "validation")
    with pytest.raises(ValueError, match="cannot load a dataset from a int"):
        load_dataset(3)


def test_image_dataset_checks_and_subset():
    x = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    data = ImageDataset(x, torch.tensor([0, 1, 0, 1]), 8, "toy", split="train", class_names=["a", "b", "c"])
    assert load_dataset(data) is data
    sub = data.subset(2)
    assert len(sub) == 2 and sub.split == "train" and sub.num_classes == 3 and sub.class_names == ["a", "b", "c"]
    assert sub[1][1].item() == 1 and ImageDataset(x)[0][1].item() == -1
    with pytest.raises(ValueError, match="integer levels"):
        ImageDataset(x.float())
    bright = x.clone()
    bright[2, 0, 1, 0] = 3
    with pytest.raises(ValueError, match=r"\[0, 3\], outside the levels \[0, 1\]"):
        ImageDataset(bright, bits=1)
    with pytest.raises(ValueError, match=r"labels must be \(4,\)"):
        ImageDataset(x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no name"):
        ImageDataset(x, torch.tensor([0, 1, 0, 5]), class_names=["a", "b"])
