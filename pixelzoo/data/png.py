"""Folders of PNG images, and PIL images in general."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from einops import rearrange

from .dataset import SPLITS, DatasetNotFoundError, ImageDataset, PathLike, _check_split, _levels_tensor


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
