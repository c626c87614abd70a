"""CIFAR-10 python batches, through a restricted unpickler."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from einops import rearrange

from .dataset import DatasetNotFoundError, ImageDataset, PathLike, _check_split, _labels_tensor


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
