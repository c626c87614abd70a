"""MNIST / Fashion-MNIST IDX files."""
from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import torch

from .dataset import SPLITS, DatasetNotFoundError, ImageDataset, PathLike, _check_split


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
