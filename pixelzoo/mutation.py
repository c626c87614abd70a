"""Input mutation for background models (Ren et al., "Likelihood Ratios for Out-of-Distribution Detection",
NeurIPS 2019): each sub-pixel is replaced, independently with probability ``rate``, by a level drawn uniformly
from all ``2**bits`` levels (the replacement may equal the original). Ren et al.'s ``(x + mask·U{0..255}) mod
256`` is the same distribution at 8 bits.
"""
from __future__ import annotations

import hashlib

import torch

__all__ = ["mutate", "mutation_generator"]


def mutation_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator that depends on ``(seed, step, rank)`` only: a resumed run draws the same mutations as an
    uninterrupted one, whatever the DataLoader workers or the device."""
    digest = hashlib.sha256(f"pixelzoo-mutation/{seed}/{step}/{rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def mutate(x: torch.Tensor, rate: float, bits: int, generator: torch.Generator | None = None, *,
           levels: int | None = None) -> torch.Tensor:
    """``x`` with each sub-pixel replaced by a uniform level with probability ``rate``; a new tensor.

    ``levels`` (default ``2**bits``) is the number of values to draw from: pass the codebook size for code maps.

    Shape:
        x: (B, C, H, W) integer levels in [0, 2**bits) on any device -> same shape, dtype and device
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"mutation rate must be in [0, 1], got {rate}")
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ValueError(f"mutate takes integer levels, got dtype {x.dtype}")
    if rate == 0.0:
        return x.clone()
    # Draw on the CPU: the same numbers on every device.
    mask = torch.rand(tuple(x.shape), generator=generator) < rate
    drawn = torch.randint(0, levels or 2**bits, tuple(x.shape), generator=generator, dtype=torch.int64)
    return torch.where(mask.to(x.device), drawn.to(device=x.device, dtype=x.dtype), x)
