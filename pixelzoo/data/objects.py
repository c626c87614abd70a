"""Dataset objects passed in by the user (torchvision style)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from einops import rearrange

from .dataset import ImageDataset, _labels_tensor, _levels_tensor, _resolve_bits
from .png import _pil_levels, _stack_same


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
