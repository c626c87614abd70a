"""The bundled MNIST subset and ``.npz`` files."""
from __future__ import annotations

import zipfile
from importlib import resources
from typing import BinaryIO

import numpy as np
import torch
from einops import rearrange

from .dataset import ImageDataset, PathLike, _check_split, _labels_tensor, _levels_tensor, _resolve_bits


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
    ``{split}_labels``; an optional scalar ``bits`` gives the depth of a wider int type, optional ``cond_maps``
    (or ``{split}_cond_maps``), float (N, D, h, w), the conditioning map of each image.

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
            map_key = f"{split}_cond_maps"
        elif "images" in keys:
            image_key, label_key, got_split, map_key = "images", "labels", None, "cond_maps"
        else:
            raise ValueError(f"{where} holds the arrays {keys}, but neither '{split}_images' nor 'images'; expected "
                             "'images' (N, H, W[, C]) with optional 'labels' (N,), or 'train_images'/'test_images'")
        try:
            images = npz[image_key]
            labels = npz[label_key] if label_key in keys else None
            file_bits = npz["bits"] if "bits" in keys else None
            maps = npz[map_key] if map_key in keys else None
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
    if maps is not None:
        if not np.issubdtype(maps.dtype, np.floating):
            raise ValueError(f"{where}: '{map_key}' must be a float array (N, D, h, w), got {maps.dtype}")
        maps = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    return ImageDataset(_levels_tensor(images, bits, where), y, bits, f"{where}{suffix}", split=got_split,
                        cond_maps=maps)


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
