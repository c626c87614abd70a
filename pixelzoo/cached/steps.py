"""Steps of a cached program: each fills one plane on a region, reading planes filled before it.

A cached backbone is a list of these steps per stream and resolution, built once by walking the
backbone's modules in the order its ``forward`` calls them. Running a list on a region evaluates that
part of the network there.
"""
from __future__ import annotations

from typing import Protocol, Sequence

from .layers import CachedConv, CachedConvTranspose
import torch

from .planes import Plane

__all__ = ["Step", "ShiftedConvSum", "UpsampleStep", "ChannelConcat", "run_steps"]


class Step(Protocol):
    """Fills ``out`` on a region ``rows [r0, r1) x cols [c0, c1)`` given in this step's own coordinates.

    :class:`~pixelzoo.cached.layers.CachedGatedResnet` is one; the others are below.
    """

    out: Plane

    def run(self, r0: int, r1: int, c0: int, c1: int) -> None: ...


class ShiftedConvSum:
    """``out = Σ shift(conv(src), down, right)``: the PixelCNN++ stem (one or two shifted convolutions),
    or a single strided convolution when every shift is 0 (the region is then in output coordinates).

    ``shift(y, a, b)`` moves ``y`` down ``a`` rows and right ``b`` columns, filling with zeros
    (:func:`~pixelzoo.layers.down_shift` is ``(1, 0)``, :func:`~pixelzoo.layers.right_shift` ``(0, 1)``).
    """

    def __init__(self, out: Plane, terms: Sequence[tuple[CachedConv, Plane, tuple[int, int]]]) -> None:
        self.out, self.terms = out, list(terms)

    def run(self, r0: int, r1: int, c0: int, c1: int) -> None:
        total = None
        for conv, src, (down, right) in self.terms:
            y = conv.region(src, r0 - down, r1 - down, c0 - right, c1 - right)
            # Positions shifted in from outside the map are zeros, not the convolution of padding.
            if r0 < down:
                y[:, :down - r0] = 0
            if c0 < right:
                y[:, :, :right - c0] = 0
            total = y if total is None else total + y
        self.out.write(r0, c0, total)


class UpsampleStep:
    """A transposed convolution to the next finer resolution. The region is given on the *coarse* grid
    and the step fills its image on the fine grid, ``rows [s·r0, s·r1) x cols [s·c0, s·c1)``.
    """

    def __init__(self, conv: CachedConvTranspose, src: Plane, out: Plane) -> None:
        self.conv, self.src, self.out = conv, src, out

    def run(self, r0: int, r1: int, c0: int, c1: int) -> None:
        sh, sw = self.conv.stride
        self.out.write(sh * r0, sw * c0, self.conv.region(self.src, sh * r0, sh * r1, sw * c0, sw * c1))


class ChannelConcat:
    """``out = cat([src[..., lo:hi] for src, lo, hi in sources], channels)``: slicing and joining channel sets."""

    def __init__(self, out: Plane, sources: Sequence[tuple[Plane, int, int]]) -> None:
        self.out, self.sources = out, list(sources)

    def run(self, r0: int, r1: int, c0: int, c1: int) -> None:
        parts = [src.window(r0, r1, c0, c1)[..., lo:hi] for src, lo, hi in self.sources]
        self.out.write(r0, c0, parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))


def run_steps(steps: Sequence[Step], r0: int, r1: int, c0: int, c1: int) -> None:
    """Run every step of a list on the same region, in order."""
    if r1 <= r0 or c1 <= c0:
        return
    for step in steps:
        step.run(r0, r1, c0, c1)
