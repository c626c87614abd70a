"""Cached (fast) sampling: per-layer caches so each new pixel costs only what it changes.

Importing this package registers the cached implementation of every backbone that has one;
:func:`cached_class` says whether a backbone has one, :func:`build_cached` builds it.
"""
from .base import CachedBackbone, build_cached, cached_class, no_cache_error, register_cached
from . import pixelcnnpp as _pixelcnnpp  # noqa: F401  (registers the U-net and the dilated net)
from . import small as _small  # noqa: F401  (registers the small Plain / NIN / AR-channel nets)

__all__ = ["CachedBackbone", "build_cached", "cached_class", "no_cache_error", "register_cached"]
