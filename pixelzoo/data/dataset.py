"""The dataset type every reader returns, and the checks they share."""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


BUNDLED_NAMES = ("bundled", "bundled:mnist")
SPLITS = ("train", "test")

PathLike = str | os.PathLike

_LAYOUTS = ("'bundled', a CIFAR-10 python folder (data_batch_1..5, test_batch), an MNIST-style IDX folder "
            "(train-images-idx3-ubyte[.gz], ...) or IDX images file, a folder of PNG images, or an .npz holding "
            "'images' (and 'labels')")


class DatasetNotFoundError(FileNotFoundError, ValueError):
    """A dataset path that does not exist; catch it as ``FileNotFoundError`` or ``ValueError``."""


# The dataset

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
        cond_maps: (N, D, h, w) float conditioning maps, one per image (for models with ``cond_channels``),
            or None. They are what a model conditions on (e.g. the coarser codes of a VQ-VAE-2), never modelled.

    Items are ``(image (C, H, W), label)``, with label -1 when the dataset has no labels.

    Shape:
        images: (N, C, H, W) integer; labels: (N,) int64 or None; item: ((C, H, W), ())
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, bits: int = 8,
                 name: str = "", *, split: str | None = None, class_names: Sequence[str] | None = None,
                 cond_maps: torch.Tensor | None = None) -> None:
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
        if cond_maps is not None:
            if not isinstance(cond_maps, torch.Tensor) or not cond_maps.dtype.is_floating_point:
                raise ValueError(f"cond_maps must be a float tensor (N, D, h, w), got "
                                 f"{getattr(cond_maps, 'dtype', type(cond_maps).__name__)}")
            if cond_maps.dim() != 4 or cond_maps.shape[0] != images.shape[0]:
                raise ValueError(f"cond_maps must be ({images.shape[0]}, D, h, w), one map per image, got "
                                 f"{tuple(cond_maps.shape)}")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        self.images = images
        self.labels = None if labels is None else labels.to(torch.int64)
        self.bits = bits
        self.name = name
        self.split = split
        self.class_names = class_names
        self.cond_maps = cond_maps

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
        maps = "" if self.cond_maps is None else f", cond_maps {tuple(self.cond_maps.shape[1:])}"
        return (f"ImageDataset({self.name!r}, {len(self)} images of {self.image_shape}, {self.bits} bits, "
                f"{self.num_classes} classes, split={self.split!r}{maps})")

    def subset(self, n: int) -> "ImageDataset":
        """The first ``n`` images (all when n >= len)."""
        return ImageDataset(self.images[:n], None if self.labels is None else self.labels[:n], self.bits, self.name,
                            split=self.split, class_names=self.class_names,
                            cond_maps=None if self.cond_maps is None else self.cond_maps[:n])


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
