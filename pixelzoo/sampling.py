"""Ancestral sampling in raster order: naive (the whole network per pixel) or cached (only what changes).

Both methods draw every pixel with ``model.head.sample(params[:, :, i:i+1, j:j+1], generator=...)`` in
the same order, so for the same generator state they consume the same random numbers and, since their
parameters agree to float rounding, return the same images. In float64 that is exact; in float32 a draw
that lands within rounding of a bin edge can (rarely) go the other way and change the rest of the image.
"""
from __future__ import annotations

from typing import Callable

import torch

from .cached import build_cached, cached_class, no_cache_error
from .cached.layers import CachedConv
from .heads.base import check_temperature

__all__ = ["sample", "complete", "sample_naive", "sample_cached", "resolve_method", "output_dtype"]


def output_dtype(bits: int) -> torch.dtype:
    """uint8 holds up to 8 bits; deeper images come back as int32."""
    return torch.uint8 if bits <= 8 else torch.int32


def _prepare(model, n: int, labels, cond_map):
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    labels = model.check_labels(labels, n)
    cond_map = model.check_cond_map(cond_map, n)
    dtype = model.proj.bias.dtype
    return labels, model.condition(labels, dtype, cond_map), dtype


def _canvas(model, n: int, canvas: torch.Tensor | None) -> torch.Tensor:
    C, H, W = model.image_shape
    return torch.zeros((n, C, H, W), dtype=torch.int64, device=model.device) if canvas is None else canvas.clone()


@torch.no_grad()
def sample_naive(model, n: int, labels=None, *, cond_map=None, generator: torch.Generator | None = None,
                 canvas: torch.Tensor | None = None, start: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """Run the whole network once per remaining pixel and draw that pixel from the head.

    ``canvas`` (n, C, H, W) integer levels with the pixels before raster index ``start`` already filled
    allows completion; by default the canvas is empty and sampling starts at pixel 0.

    Shape:
        -> (n, C, H, W) int64 levels
    """
    labels, cond, dtype = _prepare(model, n, labels, cond_map)
    C, H, W = model.image_shape
    x = _canvas(model, n, canvas)
    for idx in range(start, H * W):
        i, j = divmod(idx, W)
        params = model.params_from_unit(model.encode(x, dtype), cond)
        x[:, :, i, j] = model.head.sample(params[:, :, i:i + 1, j:j + 1], generator=generator,
                                          temperature=temperature)[:, :, 0, 0]
    return x


@torch.no_grad()
def sample_cached(model, n: int, labels=None, *, cond_map=None, generator: torch.Generator | None = None,
                  canvas: torch.Tensor | None = None, start: int = 0, temperature: float = 1.0) -> torch.Tensor:
    """Like :func:`sample_naive`, computing only what each new pixel changes (the backbone's cache).

    The rows above ``start`` are computed in bulk first, then every pixel of the row of ``start`` before
    it, then each remaining pixel is drawn exactly as the naive sampler draws it. Raises ``ValueError``
    if the backbone has no cached implementation.

    Shape:
        -> (n, C, H, W) int64 levels
    """
    labels, cond, dtype = _prepare(model, n, labels, cond_map)
    C, H, W = model.image_shape
    x = _canvas(model, n, canvas)
    state = build_cached(model.backbone, model.encode(x, dtype), cond)
    if start >= H * W:  # nothing to draw
        return x
    proj = CachedConv(model.proj)
    first_row = start // W
    state.prime(first_row)
    for idx in range(first_row * W, H * W):
        i, j = divmod(idx, W)
        if j == 0:
            state.begin_row(i)
        features = state.features_at(i, j)
        if idx < start:  # a given pixel: its features only fill the caches
            continue
        params = proj(features[:, None, None]).permute(0, 3, 1, 2)  # (B, P, 1, 1), as the naive sampler's
        x[:, :, i, j] = model.head.sample(params, generator=generator, temperature=temperature)[:, :, 0, 0]
        state.set_pixel(i, j, model.encode(x[:, :, i:i + 1, j:j + 1], dtype)[:, :, 0, 0])
    return x


_METHODS: dict[str, Callable[..., torch.Tensor]] = {"naive": sample_naive, "cached": sample_cached}


def resolve_method(model, method: str) -> str:
    """``"auto"`` -> ``"cached"`` where the backbone has a cached implementation, else ``"naive"``."""
    if method == "auto":
        return "cached" if cached_class(model.backbone) is not None else "naive"
    if method not in _METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {['auto', *_METHODS]}")
    if method == "cached" and cached_class(model.backbone) is None:
        raise no_cache_error(model.backbone)
    return method


def _run(model, method: str, n: int, labels, generator, temperature, cond_map, **canvas) -> torch.Tensor:
    fn = _METHODS[resolve_method(model, method)]
    temperature = check_temperature(temperature)
    was_training = model.training
    model.eval()
    try:
        out = fn(model, n, labels, cond_map=cond_map, generator=generator, temperature=temperature, **canvas)
    finally:
        model.train(was_training)
    return out.to(model.sample_dtype)


@torch.no_grad()
def sample(model, n: int, labels=None, *, cond_map=None, method: str = "auto",
           generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Sample ``n`` images from ``model`` in eval mode (dropout off); training mode is restored after.

    ``method``: ``"naive"``, ``"cached"`` (``ValueError`` if the backbone has no cache) or ``"auto"``
    (cached where available, else naive). Both give the same images for the same generator.
    ``temperature``: T > 0, as the head defines it (1: the model itself, bit for bit).

    Shape:
        cond_map: (n, D, h, w) or None -> (n, C, H, W) uint8 (bits <= 8), int32 (deeper) or int64 (codes)
    """
    return _run(model, method, n, labels, generator, temperature, cond_map)


@torch.no_grad()
def complete(model, x: torch.Tensor, rows: int, labels=None, *, cond_map=None, method: str = "auto",
             generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Keep the first ``rows`` rows of each image and sample the rest (inpainting the lower part).

    The given rows are returned unchanged; the rest is drawn as :func:`sample` draws it, conditioned on
    them. Cached and naive completion give the same images for the same generator.

    Shape:
        x: (B, C, H, W) integer levels; labels: (B,) or None -> (B, C, H, W) uint8 (bits <= 8) or int32
    """
    x = model.check_images(x)
    H, W = model.image_shape[1:]
    if isinstance(rows, bool) or not isinstance(rows, int) or not 0 <= rows <= H:
        raise ValueError(f"rows must be an int in [0, {H}] (the number of rows to keep), got {rows!r}")
    canvas = x.to(device=model.device, dtype=torch.int64)
    return _run(model, method, x.shape[0], labels, generator, temperature, cond_map, canvas=canvas,
                start=rows * W)
