"""Several sources as one dataset: a list of files or folders, or a folder of ``.npz`` batches."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import torch

from .dataset import ImageDataset


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def npz_batches(folder: Path, split: str) -> list[Path]:
    """The ``.npz`` files of one split in a folder of batches, in natural order (``_2`` before ``_10``).

    Files whose name holds ``test`` are the test split; the others (``train`` in the name, or any name when
    none says ``train``) are the training split, e.g. ``cifar10_train_1..5.npz`` + ``cifar10_test.npz``.
    """
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".npz" and p.is_file()),
                   key=lambda p: _natural_key(p.name))
    test = [p for p in files if "test" in p.name.lower()]
    train = [p for p in files if p not in test]
    if any("train" in p.name.lower() for p in train):
        train = [p for p in train if "train" in p.name.lower()]
    return test if split == "test" else train


def concat_datasets(parts: Sequence[ImageDataset], name: str | None = None) -> ImageDataset:
    """One dataset of every image of ``parts``, in order; they must agree on image shape, bits, labels and maps.

    Raises:
        ValueError: no part, or parts of different image shapes, bit depths, with and without labels or maps.
    """
    if not parts:
        raise ValueError("no datasets to join")
    first = parts[0]
    for p in parts[1:]:
        if tuple(p.image_shape) != tuple(first.image_shape):
            raise ValueError(f"cannot join datasets of different image shapes: {first.name!r} holds "
                             f"{tuple(first.image_shape)} images, {p.name!r} {tuple(p.image_shape)}")
        if p.bits != first.bits:
            raise ValueError(f"cannot join datasets of different bit depths: {first.name!r} has {first.bits} bits, "
                             f"{p.name!r} {p.bits}")
        if (p.labels is None) != (first.labels is None):
            raise ValueError(f"cannot join labelled and unlabelled datasets ({first.name!r}, {p.name!r})")
        if (p.cond_maps is None) != (first.cond_maps is None) or (
                p.cond_maps is not None and tuple(p.cond_maps.shape[1:]) != tuple(first.cond_maps.shape[1:])):
            raise ValueError(f"cannot join datasets with different conditioning maps ({first.name!r}, {p.name!r})")
    if len(parts) == 1:
        return first
    splits = {p.split for p in parts}
    names = [c for c in (p.class_names for p in parts) if c is not None]
    return ImageDataset(
        torch.cat([p.images for p in parts]), None if first.labels is None else torch.cat([p.labels for p in parts]),
        first.bits, name or " + ".join(p.name for p in parts), split=splits.pop() if len(splits) == 1 else None,
        class_names=max(names, key=len) if names else None,
        cond_maps=None if first.cond_maps is None else torch.cat([p.cond_maps for p in parts]))
