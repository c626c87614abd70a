"""Which reader a source needs: :func:`load_dataset`."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .concat import concat_datasets, npz_batches
from .dataset import BUNDLED_NAMES, DatasetNotFoundError, ImageDataset, _LAYOUTS, _check_split
from .cifar import _cifar_folder, load_cifar10
from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, _idx_folder, _idx_magic, load_idx
from .npz import load_bundled, load_npz
from .objects import from_torchvision
from .png import _pngs_in, _subfolders, load_png_folder


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
    if any(p.suffix.lower() == ".npz" for p in path.iterdir()):
        files = npz_batches(path, split)
        if not files:
            raise DatasetNotFoundError(f"{path} holds .npz files but none of the {split} split (file names with "
                                       f"'test' are the test split, the others the training split)")
        joined = concat_datasets([load_npz(f, split, bits=bits) for f in files],
                                 name=f"{path} ({split}: {', '.join(f.name for f in files)})")
        joined.split = split
        return joined
    if _pngs_in(path) or any(_pngs_in(sub) or any(_pngs_in(c) for c in _subfolders(sub)) for sub in _subfolders(path)):
        return load_png_folder(path, split)
    entries = sorted(p.name for p in path.iterdir())
    shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "") if entries else "nothing"
    raise ValueError(f"unknown dataset layout in {path} (it holds {shown}); expected {_LAYOUTS}")


def load_dataset(source: Any = None, split: str = "train", *, bits: int | None = None) -> ImageDataset:
    """Load a dataset by name, path or object; the module docstring lists the layouts and their splits.

    Args:
        source: None / ``"bundled"`` (the embedded MNIST subset), a path (CIFAR-10 folder, IDX folder or file,
            PNG folder, ``.npz``, a folder of ``.npz`` batches), a list of such paths or a comma-separated string of
            them (joined in order into one dataset), an :class:`ImageDataset` (returned as is) or a dataset object
            whose items are ``(image, label)`` (see :func:`from_torchvision`).
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
    if isinstance(source, str) and "," in source:
        source = [s.strip() for s in source.split(",") if s.strip()]
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("an empty list of datasets")
        return concat_datasets([load_dataset(s, split, bits=bits) for s in source])
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), split, bits)
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return from_torchvision(source, bits=bits)
    raise ValueError(f"cannot load a dataset from a {type(source).__name__}: expected {_LAYOUTS}, or a dataset "
                     "object of (image, label) pairs")
