"""Ancestral sampling in raster order."""
from __future__ import annotations

import torch

from .heads.base import levels_to_unit

__all__ = ["sample", "sample_naive", "output_dtype"]


def output_dtype(bits: int) -> torch.dtype:
    """uint8 holds up to 8 bits; deeper images come back as int32."""
    return torch.uint8 if bits <= 8 else torch.int32


def _prepare(model, n: int, labels):
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    labels = model.check_labels(labels, n)
    dtype = model.proj.bias.dtype
    return labels, model.condition(labels, dtype), dtype


@torch.no_grad()
def sample_naive(model, n: int, labels=None, *, generator: torch.Generator | None = None,
                 canvas: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
    """Run the whole network once per remaining pixel and draw that pixel from the head.

    ``canvas`` (n, C, H, W) integer levels with the pixels before raster index ``start`` already filled
    allows completion; by default the canvas is empty and sampling starts at pixel 0.

    Shape:
        -> (n, C, H, W) int64 levels
    """
    labels, cond, dtype = _prepare(model, n, labels)
    C, H, W = model.image_shape
    x = torch.zeros((n, C, H, W), dtype=torch.int64, device=model.device) if canvas is None else canvas.clone()
    for idx in range(start, H * W):
        i, j = divmod(idx, W)
        params = model.params_from_unit(levels_to_unit(x, model.bits, dtype), cond)
        x[:, :, i, j] = model.head.sample(params[:, :, i:i + 1, j:j + 1], generator=generator)[:, :, 0, 0]
    return x


_METHODS = {"naive": sample_naive}


@torch.no_grad()
def sample(model, n: int, labels=None, *, method: str = "auto",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample ``n`` images from ``model`` in eval mode (dropout off); training mode is restored after.

    Shape:
        -> (n, C, H, W) uint8 (bits <= 8) or int32
    """
    if method == "auto":
        method = "naive"
    if method not in _METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {['auto', *_METHODS]}")
    was_training = model.training
    model.eval()
    try:
        out = _METHODS[method](model, n, labels, generator=generator)
    finally:
        model.train(was_training)
    return out.to(output_dtype(model.bits))
