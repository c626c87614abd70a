"""Datasets as integer image tensors.

Every loader returns an :class:`ImageDataset`: ``images`` (N, C, H, W) integer levels and optional
``labels`` (N,) int64. The embedded default (``"bundled"``) is a 10,000 / 1,000 image MNIST subset that ships
inside the package (``pixelzoo/data/README.md`` gives its provenance and licence).

What :func:`load_dataset` accepts, and which files each ``split`` reads (train / test):

- ``None``, ``"bundled"``, ``"bundled:mnist"``: the first 10,000 MNIST training images / the first 1,000 test
  images.
- a CIFAR-10 python folder (``cifar-10-batches-py/``, or the folder holding it): ``data_batch_1`` ..
  ``data_batch_5``, all five required / ``test_batch``.
- an MNIST / Fashion-MNIST IDX folder (or the one whose ``raw/`` sub-folder holds the files, as torchvision
  keeps them), files gzipped or not: ``[prefix-]train-images-idx3-ubyte`` with ``train-labels-idx1-ubyte`` /
  the ``t10k-`` (or ``test-``) pair.
- a PNG folder with ``train/`` and ``test/`` sub-folders: ``train/`` / ``test/``.
- an ``.npz`` holding ``train_images`` and ``test_images``: ``train_images``, ``train_labels`` /
  ``test_images``, ``test_labels``.

Sources that are a single split already ignore ``split`` and give a dataset whose ``.split`` is None: one
file (``data_batch_3``, ``test_batch``, an IDX images file, an ``.npz`` holding ``images``), a PNG folder
without ``train/``/``test/`` sub-folders, and a dataset object (torchvision style). Check ``dataset.split``
before you report a number as a test-set result.

Formats:

- CIFAR-10 batches are Python pickles. They are read by a restricted unpickler that resolves only the three
  numpy globals an array needs and refuses every other one (a pickle that names ``os.system`` is an error,
  not a call). Pickles written with protocol 5 use ``numpy._core.numeric._frombuffer`` and are refused too.
- IDX: the header (magic 2051 for images, 2049 for labels, big-endian sizes) is checked against the file's
  length; a bad magic, a truncated or an over-long file is an error. A gzip file is recognised by its bytes.
- PNG: a flat folder gives unlabelled images; a folder of class sub-folders gives labels in sorted folder-name
  order (as torchvision's ``ImageFolder``); files are taken in natural order (``2.png`` before ``10.png``).
  Modes: ``L`` -> 1 channel, ``RGB`` -> 3, ``1`` -> 1 channel at 1 bit, ``I;16`` -> 1 channel at 16 bits.
  ``RGBA``/``LA`` drop the alpha channel only when it is 255 everywhere (then it holds no information);
  a translucent pixel is an error. Palette (``P``) and 16-bit colour PNGs are errors with the fix.
- ``.npz`` (read with ``allow_pickle=False``): ``images`` (N, H, W) or (N, H, W, C) channels-last, optional
  ``labels`` (N,), optional scalar ``bits``. uint8 means 8 bits; a wider integer type needs ``bits`` (in the
  file or as an argument), since the type alone does not say how many levels there are.
"""
from __future__ import annotations

import gzip
import os
import pickle
import re
import struct
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

__all__ = ["ImageDataset", "load_dataset", "load_bundled", "load_cifar10", "load_idx", "read_idx", "load_png_folder",
           "load_npz", "from_torchvision", "DatasetNotFoundError", "BUNDLED_NAMES", "SPLITS"]

BUNDLED_NAMES = ("bundled", "bundled:mnist")
SPLITS = ("train", "test")

PathLike = str | os.PathLike

_LAYOUTS = ("'bundled', a CIFAR-10 python folder (data_batch_1..5, test_batch), an MNIST-style IDX folder "
            "(train-images-idx3-ubyte[.gz], ...) or IDX images file, a folder of PNG images, or an .npz holding "
            "'images' (and 'labels')")


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A dataset path that does not exist; catch it as ``FileNotFoundError`` or ``ValueError``."""


# ---------------------------------------------------------------------------------------------------------------------
# The dataset
# ---------------------------------------------------------------------------------------------------------------------

class ImageDataset(Dataset):
    """Images held in memory as integer levels.

    Args:
        images: (N, C, H, W) integer levels in [0, 2**bits): uint8, or a wider int type for more than 8 bits.
        labels: (N,) non-negative class indices, or None.
        bits: bit depth of the levels (1..16).
        name: where the data came from (for reports and model cards).
        split: ``"train"`` / ``"test"`` when the source had splits, None when it was one set of images.
        class_names: names of the classes in index order, when the source gives them; they fix
            ``num_classes`` even when the last classes have no image here.

    Items are ``(image (C, H, W), label)``, with label -1 when the dataset has no labels.

    Shape:
        images: (N, C, H, W) integer; labels: (N,) int64 or None; item: ((C, H, W), ())
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, bits: int = 8,
                 name: str = "", *, split: str | None = None, class_names: Sequence[str] | None = None) -> None:
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
        if images.dtype.is_floating_point or images.dtype.is_complex or images.dtype == torch.bool:
            raise ValueError(f"images must hold integer levels (uint8 or a wider int type), got {images.dtype}")
        if not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"bits must be an int in 1..16, got {bits!r}")
        _check_levels(images, bits, name or "images")
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype.is_complex:
                raise ValueError(f"labels must be an integer tensor, got {getattr(labels, 'dtype', type(labels))}")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
            if labels.numel() and int(labels.min()) < 0:
                raise ValueError(f"labels must be class indices >= 0, got {int(labels.min())}")
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if labels is not None and labels.numel() and int(labels.max()) >= len(class_names):
                raise ValueError(f"label {int(labels.max())} has no name among the {len(class_names)} class names")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        self.images = images
        self.labels = None if labels is None else labels.to(torch.int64)
        self.bits = bits
        self.name = name
        self.split = split
        self.class_names = class_names

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes: the class names when known, else the largest label + 1, 0 without labels."""
        if self.class_names is not None:
            return len(self.class_names)
        return 0 if self.labels is None or not self.labels.numel() else int(self.labels.max()) + 1

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.images[i], (self.labels[i] if self.labels is not None else torch.tensor(-1))

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, {len(self)} images of {self.image_shape}, {self.bits} bits, "
                f"{self.num_classes} classes, split={self.split!r})")

    def subset(self, n: int) -> "ImageDataset":
        """The first ``n`` images (all when n >= len)."""
        return ImageDataset(self.images[:n], None if self.labels is None else self.labels[:n], self.bits, self.name,
                            split=self.split, class_names=self.class_names)


def _check_levels(images: torch.Tensor | np.ndarray, bits: int, where: str) -> None:
    """Every value must be a level in [0, 2**bits)."""
    if 0 in images.shape or (images.dtype in (np.uint8, torch.uint8) and bits >= 8):
        return  # nothing to check: empty, or every uint8 value is a level
    lo, hi, top = int(images.min()), int(images.max()), 2**bits - 1
    if lo < 0 or hi > top:
        raise ValueError(f"{where}: pixel values lie in [{lo}, {hi}], outside the levels [0, {top}] of {bits} bits; "
                         "pass the right bits= (or store a scalar 'bits' in the .npz)")


def _levels_tensor(x: np.ndarray, bits: int, where: str) -> torch.Tensor:
    """Integer levels as a tensor: uint8 up to 8 bits, int32 above (torch has few uint16 ops)."""
    _check_levels(x, bits, where)
    return torch.from_numpy(np.array(x, dtype=np.uint8 if bits <= 8 else np.int32, order="C", copy=True))


def _labels_tensor(labels: Any, n: int, where: str) -> torch.Tensor:
    y = np.asarray(labels)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{where}: {n} images but labels of shape {y.shape}; expected ({n},), one label per image")
    if y.size and int(y.min()) < 0:
        raise ValueError(f"{where}: labels must be class indices >= 0, got {int(y.min())}")
    return torch.from_numpy(y.astype(np.int64))


def _resolve_bits(dtype: np.dtype, bits: int | None, where: str) -> int:
    if bits is not None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 16:
            raise ValueError(f"{where}: bits must be an int in 1..16, got {bits!r}")
        return int(bits)
    if dtype == np.uint8:
        return 8
    if dtype == bool:
        return 1
    raise ValueError(f"{where}: images are {dtype}, wider than uint8, so the number of levels is not known; pass "
                     "bits= (e.g. 16) or store a scalar 'bits' array in the .npz")


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


# ---------------------------------------------------------------------------------------------------------------------
# The bundled MNIST subset and .npz files
# ---------------------------------------------------------------------------------------------------------------------

def load_bundled(split: str = "train") -> ImageDataset:
    """The MNIST subset shipped in the package: 10,000 training or 1,000 test images, (N, 1, 28, 28) uint8."""
    split = _check_split(split)
    with resources.files("pixelzoo").joinpath("data/mnist_subset.npz").open("rb") as f:
        data = load_npz(f, split, name="bundled MNIST subset")
    data.class_names = [str(d) for d in range(10)]
    return data


def load_npz(source: PathLike | BinaryIO, split: str = "train", *, bits: int | None = None,
             name: str | None = None) -> ImageDataset:
    """An ``.npz`` holding ``images`` (N, H, W[, C]) and optional ``labels`` (N,), or ``{split}_images`` and
    ``{split}_labels``; an optional scalar ``bits`` gives the depth of a wider int type.

    Shape:
        images (N, H, W) -> (N, 1, H, W); (N, H, W, C) channels-last -> (N, C, H, W)
    """
    split = _check_split(split)
    where = name or str(source)
    try:
        npz = np.load(source, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {where} as an .npz archive ({type(e).__name__}: {e})") from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{where} holds a single array, not an .npz archive; save it with "
                         "np.savez_compressed(path, images=..., labels=...)")
    with npz:
        keys = list(npz.files)
        if f"{split}_images" in keys:
            image_key, label_key, got_split = f"{split}_images", f"{split}_labels", split
        elif "images" in keys:
            image_key, label_key, got_split = "images", "labels", None
        else:
            raise ValueError(f"{where} holds the arrays {keys}, but neither '{split}_images' nor 'images'; expected "
                             "'images' (N, H, W[, C]) with optional 'labels' (N,), or 'train_images'/'test_images'")
        try:
            images = npz[image_key]
            labels = npz[label_key] if label_key in keys else None
            file_bits = npz["bits"] if "bits" in keys else None
        except ValueError as e:  # object arrays need pickle, which is refused
            raise ValueError(f"cannot read {where}: {e} (store plain integer arrays)") from e
    if file_bits is not None:
        if file_bits.shape != () or not np.issubdtype(file_bits.dtype, np.integer):
            raise ValueError(f"{where}: 'bits' must be a scalar integer, got {file_bits.dtype} {file_bits.shape}")
        if bits is not None and int(file_bits) != bits:
            raise ValueError(f"{where} says bits={int(file_bits)}, but bits={bits} was passed; drop one")
        bits = int(file_bits)
    if images.dtype == object or not (np.issubdtype(images.dtype, np.integer) or images.dtype == bool):
        raise ValueError(f"{where}: '{image_key}' must hold integer levels, got dtype {images.dtype}; "
                         "for floats in [0, 1] store (x * 255).round().astype(np.uint8)")
    bits = _resolve_bits(images.dtype, bits, where)
    images = _nhwc_to_nchw(images, f"{where} '{image_key}'")
    y = None if labels is None else _labels_tensor(labels, images.shape[0], where)
    suffix = f" ({got_split})" if got_split else ""
    return ImageDataset(_levels_tensor(images, bits, where), y, bits, f"{where}{suffix}", split=got_split)


def _nhwc_to_nchw(images: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) or channels-last (N, H, W, C) -> (N, C, H, W)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        if images.shape[-1] > 4 and images.shape[1] <= 4:
            raise ValueError(f"{where} has shape {images.shape}, which looks channels-first (N, C, H, W); "
                             "store channels-last (N, H, W, C): np.moveaxis(images, 1, -1)")
        return rearrange(images, "n h w c -> n c h w")
    raise ValueError(f"{where} must be (N, H, W) or (N, H, W, C), got shape {images.shape}")


# ---------------------------------------------------------------------------------------------------------------------
# CIFAR-10 python batches, through a restricted unpickler
# ---------------------------------------------------------------------------------------------------------------------

CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILES = ("test_batch",)
_CIFAR_FOLDER = "cifar-10-batches-py"

# An ndarray pickles as _reconstruct(ndarray, shape0, b"b") plus a state (shape, dtype, raw bytes). numpy 2 renamed
# numpy.core to numpy._core, so the official files (numpy 1) and fresh ones name the function differently; both
# names map to the function that this numpy's own ndarray.__reduce__ uses, without importing the numpy.core shim.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _CifarUnpickler(pickle.Unpickler):
    """Reads a CIFAR batch (a dict of bytes, lists, ints and one uint8 array) and nothing else.

    A pickle can call any importable function by name; ``find_class`` is where it asks for one, so it
    answers only the numpy globals that rebuild an array and refuses the rest.
    """

    def __init__(self, file: BinaryIO, path: Path) -> None:
        super().__init__(file, encoding="bytes")  # the official files are Python 2 pickles of byte strings
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _CIFAR_PICKLE_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in _CIFAR_PICKLE_GLOBALS)
            raise pickle.UnpicklingError(
                f"refusing to load {self._path}: the pickle asks for the global {module}.{name}, but a CIFAR-10 "
                f"batch needs only {allowed} (protocol-5 pickles are not accepted either); this is not an official "
                "CIFAR-10 batch, or it has been altered") from None


def _unpickle_cifar(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, path).load()
    except pickle.UnpicklingError as e:
        raise ValueError(str(e) if "refusing" in str(e) else f"{path} is not a readable CIFAR-10 pickle ({e})") from e
    except (EOFError, ValueError, TypeError, IndexError, AttributeError, KeyError, UnicodeError) as e:
        raise ValueError(f"{path} is not a readable CIFAR-10 pickle ({type(e).__name__}: {e}); "
                         "the file is truncated or not a CIFAR batch") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: a CIFAR-10 batch pickles a dict, this one holds a {type(obj).__name__}")
    # encoding="bytes" gives bytes keys; a batch re-pickled in Python 3 may have str keys
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> images (n, 3, 32, 32) uint8 and labels (n,).

    Each row of ``data`` is 1024 red, then 1024 green, then 1024 blue values, each plane row-major, so a
    reshape gives channels-first images directly.
    """
    batch = _unpickle_cifar(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: a CIFAR-10 batch holds 'data' and 'labels', this one holds {sorted(batch)}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: 'data' must be a uint8 array (n, 3072), got "
                         f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    labels = _labels_tensor(batch["labels"], data.shape[0], str(path)).numpy()
    return rearrange(data, "n (c h w) -> n c h w", c=3, h=32, w=32), labels


def _cifar_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / _CIFAR_FOLDER):
        if any((candidate / f).is_file() for f in (*CIFAR_TRAIN_FILES, *CIFAR_TEST_FILES)):
            return candidate
    return None


def _cifar_class_names(folder: Path) -> list[str] | None:
    meta = folder / "batches.meta"
    if not meta.is_file():
        return None
    names = _unpickle_cifar(meta).get("label_names")
    if not isinstance(names, list):
        return None
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def load_cifar10(source: PathLike, split: str = "train") -> ImageDataset:
    """CIFAR-10 in its official python layout: ``data_batch_1..5`` (train), ``test_batch`` (test).

    ``source`` is the ``cifar-10-batches-py`` folder, the folder that holds it, or one batch file (then
    ``split`` is ignored). Class names come from ``batches.meta`` when it is there.

    Shape:
        -> images (N, 3, 32, 32) uint8, labels (N,)
    """
    split = _check_split(split)
    path = Path(source)
    if path.is_file():
        images, labels = _read_cifar_batch(path)
        names = _cifar_class_names(path.parent)
        return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), 8, str(path),
                            class_names=names)
    folder = _cifar_folder(path)
    if folder is None:
        raise DatasetNotFoundError(f"no CIFAR-10 batches in {path}: expected data_batch_1..5 and test_batch "
                                   f"there or in {path / _CIFAR_FOLDER}")
    files = CIFAR_TRAIN_FILES if split == "train" else CIFAR_TEST_FILES
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DatasetNotFoundError(f"{folder} lacks {', '.join(missing)}: the {split} split of CIFAR-10 is "
                                   f"{', '.join(files)} (the official cifar-10-python.tar.gz holds all of them)")
    parts = [_read_cifar_batch(folder / f) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), 8, f"CIFAR-10 {folder} ({split})",
                        split=split, class_names=_cifar_class_names(folder))


# ---------------------------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST IDX files
# ---------------------------------------------------------------------------------------------------------------------

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, H, W)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N,)
_IDX_KINDS = {IDX_IMAGES_MAGIC: "images (idx3, magic 2051)", IDX_LABELS_MAGIC: "labels (idx1, magic 2049)"}
_IDX_SPLIT_TOKENS = {"train": ("train",), "test": ("t10k", "test")}


def _read_maybe_gzip(path: Path) -> bytes:
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    if not gzipped:
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot decompress ({e}); the gzip file is truncated or corrupt") from e


def _idx_magic(path: Path) -> int | None:
    """The first four bytes of a file (decompressed when gzipped) as a big-endian int; None when unreadable."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open if gzipped else open)(path, "rb") as f:
            head = f.read(4)
    except (OSError, EOFError):
        return None
    return struct.unpack(">I", head)[0] if len(head) == 4 else None


def read_idx(path: PathLike, magic: int | None = None) -> np.ndarray:
    """One IDX file (gzipped or not) as a uint8 array, after checking its header against its length.

    Args:
        path: the file.
        magic: 2051 (images) or 2049 (labels) to insist on one kind; None takes either.

    Shape:
        images file -> (N, H, W); labels file -> (N,)
    """
    path = Path(path)
    raw = _read_maybe_gzip(path)
    expected = _IDX_KINDS[magic] if magic is not None else " or ".join(_IDX_KINDS.values())
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for an IDX header; expected IDX {expected}")
    found = struct.unpack(">I", raw[:4])[0]
    if found not in _IDX_KINDS or (magic is not None and found != magic):
        raise ValueError(f"{path}: IDX magic number {found} (0x{found:08x}), expected {expected}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, the header of {ndim} sizes needs {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header != size:
        state = "truncated" if len(raw) - header < size else "longer than its header says"
        raise ValueError(f"{path}: IDX file is {state}: the header gives sizes {dims}, i.e. {size} bytes of data, "
                         f"but {len(raw) - header} follow the header")
    return np.frombuffer(raw, np.uint8, size, header).reshape(dims).copy()


def _idx_labels_beside(images_file: Path) -> Path | None:
    """The labels file that goes with an images file: same name with images-idx3 -> labels-idx1, gz or not."""
    stem = re.sub(r"\.gz$", "", images_file.name)
    name = re.sub(r"images([-.])idx3", r"labels\1idx1", stem)
    if name == stem:
        return None
    for candidate in (images_file.parent / name, images_file.parent / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_idx_images(folder: Path, split: str) -> list[Path]:
    """IDX images files of one split in a folder, the uncompressed one first when both are there."""
    tokens = "|".join(_IDX_SPLIT_TOKENS[split])
    pattern = re.compile(rf"^(?:.*[-_])?(?:{tokens})-images[-.]idx3-ubyte(?:\.gz)?$")
    found = [p for p in folder.iterdir() if p.is_file() and pattern.match(p.name)]
    return sorted(found, key=lambda p: (p.name.endswith(".gz"), p.name))


def _idx_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / "raw"):  # torchvision keeps the files in MNIST/raw/
        if candidate.is_dir() and any(_find_idx_images(candidate, s) for s in SPLITS):
            return candidate
    return None


def load_idx(source: PathLike, split: str = "train") -> ImageDataset:
    """MNIST / Fashion-MNIST IDX files: a folder, or one images file (then ``split`` is ignored).

    In a folder, ``train`` reads ``[prefix-]train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``,
    ``test`` reads the ``t10k-`` (or ``test-``) pair; ``.`` for ``-`` before ``idx`` is accepted too. A missing
    labels file gives an unlabelled dataset.

    Shape:
        -> images (N, 1, H, W) uint8, labels (N,)
    """
    split = _check_split(split)
    path = Path(source)
    if path.is_file():
        images_file, got_split = path, None
    else:
        folder = _idx_folder(path)
        if folder is None:
            raise DatasetNotFoundError(f"no IDX images file in {path}: expected train-images-idx3-ubyte[.gz] or "
                                       "t10k-images-idx3-ubyte[.gz]")
        candidates = _find_idx_images(folder, split)
        if not candidates:
            raise DatasetNotFoundError(f"{folder} has no {split} images: expected "
                                       f"{' or '.join(t + '-images-idx3-ubyte[.gz]' for t in _IDX_SPLIT_TOKENS[split])}")
        stems = {re.sub(r"\.gz$", "", p.name) for p in candidates}
        if len(stems) > 1:
            raise ValueError(f"{folder} holds several {split} image sets ({', '.join(sorted(stems))}); "
                             "pass the path of the images file you want")
        images_file, got_split = candidates[0], split
    images = read_idx(images_file, IDX_IMAGES_MAGIC)
    labels_file = _idx_labels_beside(images_file)
    labels = None
    if labels_file is not None:
        y = read_idx(labels_file, IDX_LABELS_MAGIC)
        if y.shape[0] != images.shape[0]:
            raise ValueError(f"{images_file} holds {images.shape[0]} images but {labels_file} holds "
                             f"{y.shape[0]} labels; they must be the same split of the same dataset")
        labels = torch.from_numpy(y.astype(np.int64))
    suffix = f" ({got_split})" if got_split else ""
    return ImageDataset(torch.from_numpy(images[:, None]), labels, 8, f"{images_file}{suffix}", split=got_split)


# ---------------------------------------------------------------------------------------------------------------------
# Folders of PNG images, and PIL images in general
# ---------------------------------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _pil_levels(im: Any, where: str) -> tuple[np.ndarray, int]:
    """A PIL image -> (levels (C, H, W), bits); see the module docstring for the modes."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.uint8)[None], 1
    if mode == "L":
        return np.asarray(im)[None], 8
    if mode.startswith("I;16") or mode == "I":
        return np.asarray(im).astype(np.int32)[None], 16
    if mode == "RGB":
        return rearrange(np.asarray(im), "h w c -> c h w"), 8
    if mode in ("RGBA", "LA"):
        a = np.asarray(im)
        if (a[..., -1] != 255).any():
            raise ValueError(f"{where} is {mode} with translucent pixels; pixelzoo models colour only, so convert "
                             "it yourself (e.g. composite over a background, then .convert('RGB'))")
        return rearrange(a[..., :-1], "h w c -> c h w"), 8
    fix = "im.convert('RGB') (or 'L' for grey)" if mode == "P" else "im.convert('RGB') or im.convert('L')"
    raise ValueError(f"{where} has PIL mode {mode!r}; supported are L, RGB, 1, I;16 and opaque RGBA/LA; "
                     f"convert it first: {fix}")


def _read_png(path: Path) -> tuple[np.ndarray, int, str]:
    """One PNG -> (levels (C, H, W), bits, "WxH mode") for error messages."""
    from PIL import Image

    with open(path, "rb") as f:
        head = f.read(26)
    if head[:8] != _PNG_SIGNATURE:
        raise ValueError(f"{path} is not a PNG file (bad signature)")
    depth, colour = head[24], head[25]
    if depth == 16 and colour in (2, 4, 6):  # Pillow reads these as 8 bits a channel, losing the low bits
        raise ValueError(f"{path} is a 16-bit colour PNG, which Pillow cannot read without losing bits; "
                         "store 8-bit RGB PNGs, or an .npz with a 'bits' scalar")
    with Image.open(path) as im:
        levels, bits = _pil_levels(im, str(path))
        return levels, bits, f"{im.size[0]}x{im.size[1]} {im.mode}"


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _pngs_in(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"
                   and not p.name.startswith(".")), key=lambda p: _natural_key(p.name))


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _stack_same(arrays: Sequence[tuple[np.ndarray, int, str]], names: Sequence[str], what: str) -> tuple[np.ndarray, int]:
    """Stack (levels, bits, desc) items into (N, C, H, W); the first item that differs from item 0 is an error."""
    first, bits, desc = arrays[0]
    for (levels, b, d), name in zip(arrays[1:], names[1:]):
        if levels.shape != first.shape or b != bits:
            raise ValueError(f"{what} must all have the same size and channels: {names[0]} is {desc} "
                             f"({first.shape[0]} channels, {bits} bits), {name} is {d} ({levels.shape[0]} channels, "
                             f"{b} bits)")
    return np.stack([a[0] for a in arrays]), bits


def load_png_folder(source: PathLike, split: str = "train") -> ImageDataset:
    """A folder of PNG images, optionally with one sub-folder per class and ``train/``/``test/`` splits.

    Layouts: ``root/*.png`` (unlabelled); ``root/<class>/*.png`` (labels in sorted class-folder order);
    either one under ``root/train/`` and ``root/test/`` (then ``split`` picks the folder, else it is ignored).

    Shape:
        -> images (N, C, H, W): C = 1 for L / 1 / I;16, 3 for RGB
    """
    split = _check_split(split)
    root = Path(source)
    got_split = None
    if any((root / s).is_dir() for s in SPLITS) and not _pngs_in(root):
        if not (root / split).is_dir():
            raise DatasetNotFoundError(f"{root} has split folders but no {split}/ folder")
        root, got_split = root / split, split
    files = _pngs_in(root)
    classes = _subfolders(root)
    if files and any(_pngs_in(c) for c in classes):
        raise ValueError(f"{root} holds both PNG files and class folders with PNGs; put every image in a class "
                         "folder (labelled) or none (unlabelled)")
    labels, class_names = None, None
    if not files:
        if not classes:
            raise ValueError(f"no PNG images in {root}: expected *.png files or one sub-folder of them per class")
        per_class = [_pngs_in(c) for c in classes]
        empty = [c.name for c, f in zip(classes, per_class) if not f]
        if empty:
            raise ValueError(f"class folders without PNG images in {root}: {', '.join(empty)}; every sub-folder "
                             "is a class, so remove them or add images")
        files = [f for group in per_class for f in group]
        labels = torch.tensor([k for k, group in enumerate(per_class) for _ in group], dtype=torch.int64)
        class_names = [c.name for c in classes]
    names = [str(f) for f in files]
    images, bits = _stack_same([_read_png(f) for f in files], names, f"the PNG images in {root}")
    suffix = f" ({got_split})" if got_split else ""
    return ImageDataset(_levels_tensor(images, bits, str(root)), labels, bits, f"{root}{suffix}", split=got_split,
                        class_names=class_names)


# ---------------------------------------------------------------------------------------------------------------------
# Dataset objects passed in by the user (torchvision style)
# ---------------------------------------------------------------------------------------------------------------------

def _item_levels(img: Any, bits: int | None, where: str) -> tuple[np.ndarray, int, str]:
    """One image of a dataset object -> (levels (C, H, W), bits, description).

    PIL images by mode; tensors are channels-first (torchvision's ToTensor / PILToTensor), numpy arrays
    channels-last (PIL / numpy convention); 2-D is one channel. Floats must be exact levels k / (2**bits - 1).
    """
    if hasattr(img, "mode") and hasattr(img, "size") and not isinstance(img, (np.ndarray, torch.Tensor)):
        levels, b = _pil_levels(img, where)
        if bits is not None and bits != b:
            raise ValueError(f"{where}: a PIL {img.mode} image has {b}-bit levels, but bits={bits} was passed")
        return levels, b, f"{img.size[0]}x{img.size[1]} {img.mode}"
    if not isinstance(img, (torch.Tensor, np.ndarray)):
        raise ValueError(f"{where}: expected a PIL image, a tensor or a numpy array, got {type(img).__name__}")
    channels_first = isinstance(img, torch.Tensor)
    a = img.detach().cpu().numpy() if channels_first else img
    if a.ndim not in (2, 3):
        raise ValueError(f"{where}: expected a 2-D or 3-D image, got shape {a.shape}")
    if a.ndim == 2:
        a = a[None]
    elif channels_first and a.shape[0] > 4 and a.shape[-1] <= 4:
        raise ValueError(f"{where}: tensor of shape {a.shape} looks channels-last; tensors are read as (C, H, W) "
                         "(torchvision's convention): permute(2, 0, 1) it, or return a numpy array (H, W, C)")
    elif not channels_first:
        if a.shape[-1] > 4 and a.shape[0] <= 4:
            raise ValueError(f"{where}: array of shape {a.shape} looks channels-first; numpy arrays are read as "
                             "(H, W, C) (PIL's convention): np.moveaxis(a, 0, -1), or return a tensor (C, H, W)")
        a = rearrange(a, "h w c -> c h w")
    desc = f"{type(img).__name__} {a.dtype} (C, H, W) = {a.shape}"
    if np.issubdtype(a.dtype, np.floating):
        b = _resolve_bits(np.dtype(np.uint8), bits, where)
        top = 2**b - 1
        scaled = a.astype(np.float64) * top
        levels = np.rint(scaled)
        # float32 holds k/255 to ~6e-8, so a true level lands within ~2e-5 of an integer after scaling
        if a.size and (a.min() < 0 or a.max() > 1 or np.abs(scaled - levels).max() > 1e-3):
            raise ValueError(f"{where}: float pixels in [{a.min():.4g}, {a.max():.4g}] are not the exact levels "
                             f"k/{top} that ToTensor makes (Normalize, resizing or augmentation changed them); "
                             "pixelzoo models integer levels, so drop the float transforms or use "
                             "transforms.PILToTensor()")
        return levels.astype(np.int64), b, desc
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        return a, _resolve_bits(a.dtype, bits, where), desc
    raise ValueError(f"{where}: image dtype {a.dtype} is not integer levels or floats in [0, 1]")


def from_torchvision(dataset: Any, *, bits: int | None = None, name: str | None = None) -> ImageDataset:
    """Any indexable dataset of ``(image, label)`` pairs (a torchvision dataset, a list) as integer levels.

    Images may be PIL images, tensors (C, H, W) or numpy arrays (H, W[, C]); labels ints, 0-d tensors or None.
    Float tensors from ``ToTensor`` are mapped back to their exact levels; other floats are refused. Class names
    come from ``dataset.classes`` and the split from ``dataset.train`` when the object has them.

    Shape:
        -> images (N, C, H, W), labels (N,) or None
    """
    label_name = name or type(dataset).__name__
    try:
        n = len(dataset)
    except TypeError as e:
        raise ValueError(f"{label_name}: a dataset object must have len() and [i]; got {type(dataset).__name__}") from e
    if n == 0:
        raise ValueError(f"{label_name} is empty")
    items, labels, names = [], [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"{label_name}[{i}] must be an (image, label) pair, got {type(item).__name__}")
        img, label = item
        items.append(_item_levels(img, bits, f"{label_name}[{i}]"))
        labels.append(label)
        names.append(f"{label_name}[{i}]")
    images, b = _stack_same(items, names, f"the images of {label_name}")
    y = None
    if any(label is not None for label in labels):
        if any(label is None for label in labels):
            raise ValueError(f"{label_name}: some items have a label and some have None")
        try:
            y = _labels_tensor([int(label) for label in labels], n, label_name)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"{label_name}: labels must be class indices (ints or 0-d tensors): {e}") from e
    classes = getattr(dataset, "classes", None)
    class_names = [str(c) for c in classes] if isinstance(classes, (list, tuple)) and classes else None
    if class_names is not None and y is not None and y.numel() and int(y.max()) >= len(class_names):
        class_names = None  # the labels are not indices into .classes (a target_transform changed them)
    train = getattr(dataset, "train", None)
    split = ("train" if train else "test") if isinstance(train, bool) else None
    return ImageDataset(_levels_tensor(images, b, label_name), y, b, label_name, split=split, class_names=class_names)


# ---------------------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------------------

def _load_path(path: Path, split: str, bits: int | None) -> ImageDataset:
    if not path.exists():
        hint = " (the embedded default is 'bundled')" if os.sep not in str(path) and not path.suffix else ""
        raise DatasetNotFoundError(f"dataset {str(path)!r} does not exist{hint}; expected {_LAYOUTS}")
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return load_npz(path, split, bits=bits)
        if re.fullmatch(r"data_batch_\d+|test_batch", path.name):
            return load_cifar10(path, split)
        magic = _idx_magic(path)
        if magic == IDX_IMAGES_MAGIC:
            return load_idx(path, split)
        if magic == IDX_LABELS_MAGIC:
            raise ValueError(f"{path} is an IDX labels file; pass the images file beside it, or the folder")
        raise ValueError(f"unknown dataset file {path}: expected an .npz, an IDX images file, or a CIFAR-10 batch "
                         "(data_batch_N, test_batch); for PNG images pass their folder")
    if _cifar_folder(path) is not None:
        return load_cifar10(path, split)
    if _idx_folder(path) is not None:
        return load_idx(path, split)
    if _pngs_in(path) or any(_pngs_in(sub) or any(_pngs_in(c) for c in _subfolders(sub)) for sub in _subfolders(path)):
        return load_png_folder(path, split)
    entries = sorted(p.name for p in path.iterdir())
    shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "") if entries else "nothing"
    raise ValueError(f"unknown dataset layout in {path} (it holds {shown}); expected {_LAYOUTS}")


def load_dataset(source: Any = None, split: str = "train", *, bits: int | None = None) -> ImageDataset:
    """Load a dataset by name, path or object; the module docstring lists the layouts and their splits.

    Args:
        source: None / ``"bundled"`` (the embedded MNIST subset), a path (CIFAR-10 folder, IDX folder or file,
            PNG folder, ``.npz``), an :class:`ImageDataset` (returned as is) or a dataset object whose items
            are ``(image, label)`` (see :func:`from_torchvision`).
        split: ``"train"`` or ``"test"``; ignored by sources that hold one split (their ``.split`` is None).
        bits: bit depth for integer data wider than uint8, or for float data; uint8 is 8 bits.

    Raises:
        DatasetNotFoundError (a FileNotFoundError and ValueError): a missing path or split.
        ValueError: an unknown layout, a corrupt file, mixed image sizes or channels, a label count mismatch.

    Shape:
        -> ImageDataset with images (N, C, H, W) integer levels, labels (N,) int64 or None
    """
    split = _check_split(split)
    if source is None or (isinstance(source, str) and source in BUNDLED_NAMES):
        return load_bundled(split)
    if isinstance(source, ImageDataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), split, bits)
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return from_torchvision(source, bits=bits)
    raise ValueError(f"cannot load a dataset from a {type(source).__name__}: expected {_LAYOUTS}, or a dataset "
                     "object of (image, label) pairs")
