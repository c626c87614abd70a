"""Datasets as integer image tensors.

Every loader returns an :class:`ImageDataset`: ``images`` (N, C, H, W) integer levels and optional
``labels`` (N,) int64. The embedded default (``"bundled"``) is a 10,000 / 1,000 image MNIST subset that ships
inside the package (``pixelzoo/data/README.md`` gives its provenance and licence).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["ImageDataset", "load_dataset", "load_bundled", "BUNDLED_NAMES"]

BUNDLED_NAMES = ("bundled", "bundled:mnist")


class ImageDataset(Dataset):
    """Images held in memory as integer levels.

    Args:
        images: (N, C, H, W) uint8 (or a wider int type for more than 8 bits).
        labels: (N,) class indices, or None.
        bits: bit depth of the levels.
        name: where the data came from (for reports and model cards).

    Items are ``(image (C, H, W), label)``, with label -1 when the dataset has no labels.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, bits: int = 8,
                 name: str = "") -> None:
        if images.dim() != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(images.shape)}")
        if labels is not None and labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be ({images.shape[0]},), got {tuple(labels.shape)}")
        self.images = images
        self.labels = None if labels is None else labels.to(torch.int64)
        self.bits = bits
        self.name = name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return 0 if self.labels is None else int(self.labels.max()) + 1

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.images[i], (self.labels[i] if self.labels is not None else torch.tensor(-1))

    def subset(self, n: int) -> "ImageDataset":
        """The first ``n`` images (all when n >= len)."""
        return ImageDataset(self.images[:n], None if self.labels is None else self.labels[:n], self.bits, self.name)


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def load_bundled(split: str = "train") -> ImageDataset:
    """The MNIST subset shipped in the package: 10,000 training or 1,000 test images, (N, 1, 28, 28) uint8."""
    split = _check_split(split)
    with resources.files("pixelzoo").joinpath("data/mnist_subset.npz").open("rb") as f:
        d = np.load(f)
        images = torch.from_numpy(d[f"{split}_images"].copy())[:, None]
        labels = torch.from_numpy(d[f"{split}_labels"].astype(np.int64))
    return ImageDataset(images, labels, 8, f"bundled MNIST subset ({split})")


def load_dataset(source: str | Path | None = None, split: str = "train") -> ImageDataset:
    """Load a dataset by name or path; ``None`` / ``"bundled"`` is the embedded MNIST subset."""
    if source is None or str(source) in BUNDLED_NAMES:
        return load_bundled(split)
    raise ValueError(f"unknown dataset {str(source)!r}: pass 'bundled' or a path to a supported layout")
