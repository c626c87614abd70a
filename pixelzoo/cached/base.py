"""The contract of a cached backbone, and the table of backbones that have one."""
from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import nn

__all__ = ["CachedBackbone", "register_cached", "cached_class", "build_cached", "no_cache_error"]

_CACHED: dict[type, type["CachedBackbone"]] = {}

T = TypeVar("T", bound=type)


class CachedBackbone:
    """Incremental evaluation of a backbone while an image batch is filled in raster order.

    It holds every layer's output for the whole image (its caches) and computes, at each step, only the
    positions the next pixel needs. The sampler calls, for every row ``i``: :meth:`begin_row` once, then
    for every column ``j``: :meth:`features_at` (the backbone output at ``(i, j)``, exactly what the
    ordinary forward pass gives there once all pixels before ``(i, j)`` are set) and :meth:`set_pixel`.
    :meth:`prime` fills the caches of the first rows of a given canvas in bulk (for completion).

    Args:
        backbone: the module (in eval mode; its weights are read once, here).
        canvas: (B, C, H, W) images in [-1, 1]; the pixels before the first sampled one must be set.
        cond: (B, num_classes) one-hot conditioning or None.

    Shape:
        features_at(i, j) -> (B, out_features); set_pixel(i, j, values (B, C))
    """

    def __init__(self, backbone: nn.Module, canvas: torch.Tensor, cond: torch.Tensor | None) -> None:
        self.backbone = backbone

    def prime(self, rows: int) -> None:
        """Compute every cache entry that depends only on image rows ``< rows`` (as if they were sampled)."""
        raise NotImplementedError

    def begin_row(self, i: int) -> None:
        """Compute what row ``i`` needs from the rows above it (called once per row, before its pixels)."""
        raise NotImplementedError

    def features_at(self, i: int, j: int) -> torch.Tensor:
        raise NotImplementedError

    def set_pixel(self, i: int, j: int, values: torch.Tensor) -> None:
        raise NotImplementedError


def register_cached(backbone_cls: type) -> Callable[[T], T]:
    """Class decorator: ``cached_cls`` is the cached implementation of exactly ``backbone_cls``.

    Subclasses of ``backbone_cls`` are not covered (they may change ``forward``); register them too.
    """

    def deco(cached_cls: T) -> T:
        if backbone_cls in _CACHED:
            raise ValueError(f"{backbone_cls.__name__} already has a cached implementation: "
                             f"{_CACHED[backbone_cls].__name__}")
        _CACHED[backbone_cls] = cached_cls
        return cached_cls

    return deco


def cached_class(backbone: nn.Module | type) -> type[CachedBackbone] | None:
    """The cached implementation of this backbone's exact class (or of this class), or None."""
    return _CACHED.get(backbone if isinstance(backbone, type) else type(backbone))


def no_cache_error(backbone: nn.Module) -> ValueError:
    """The error for asking a cached sampler of a backbone that has none."""
    return ValueError(f"backbone {_name(type(backbone))} has no cached sampler (backbones with one: "
                      f"{sorted(_name(b) for b in _CACHED)}); use method='naive', or method='auto', which "
                      f"falls back to naive sampling for it")


def _name(cls: type) -> str:
    # A class's own registry name, not one inherited from a registered parent.
    return repr(cls.__dict__.get("registry_name") or cls.__name__)


def build_cached(backbone: nn.Module, canvas: torch.Tensor, cond: torch.Tensor | None) -> CachedBackbone:
    """The cached implementation for ``backbone``; ``ValueError`` naming the backbone if it has none."""
    cls = cached_class(backbone)
    if cls is None:
        raise no_cache_error(backbone)
    return cls(backbone, canvas, cond)
