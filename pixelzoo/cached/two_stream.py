"""The cached form shared by every two-stream backbone (PixelCNN++ U-net, dilated, small).

These backbones keep a u (vertical) stream, whose value at image row ``i`` depends only on the rows
above ``i``, and a ul (horizontal) stream, which also sees the pixels to the left in the current row.
So the u stream is computed once per row, for the whole row (large matmuls), and only the ul stream is
computed pixel by pixel. A coarse level ``l`` (stride ``2**l``, the U-net's downsampled maps) has its row
``R`` computed at image row ``2**l R`` and its position ``(R, J)`` at pixel ``(2**l R, 2**l J)``: the first
pixel whose output uses it, and the first moment all of its inputs exist.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import CachedBackbone
from .layers import CachedConv, CachedGatedResnet
from .planes import Plane
from .steps import ShiftedConvSum, Step, run_steps

__all__ = ["TwoStreamCached"]

Region = tuple[int, int, int, int]


class TwoStreamCached(CachedBackbone):
    """Programs of steps for the two streams, per resolution level, and the order to run them in.

    Subclasses build ``u_up[l]``, ``ul_up[l]`` (up pass at level l, finest level first) and ``u_down[l]``,
    ``ul_down[l]`` (down pass, run coarsest first; empty for backbones without one), and set ``out``,
    the plane whose ``elu`` is the backbone output.

    Args:
        backbone, canvas, cond: as :class:`~pixelzoo.cached.base.CachedBackbone`.
        levels: number of resolutions (1 at full resolution only; H and W divisible by ``2**(levels-1)``).

    Shape:
        canvas: (B, C, H, W) in [-1, 1]; features_at(i, j) -> (B, out_features)
    """

    out: Plane

    def __init__(self, backbone: nn.Module, canvas: torch.Tensor, cond: torch.Tensor | None, levels: int = 1) -> None:
        super().__init__(backbone, canvas, cond)
        B, C, H, W = canvas.shape
        self.batch, self.dtype, self.device, self.cond = B, canvas.dtype, canvas.device, cond
        self.sizes = [(H >> level, W >> level) for level in range(levels)]
        # A border as wide as the widest causal padding keeps every window a view.
        self.margin = max([1] + [max(m.causal_pad) for m in backbone.modules() if hasattr(m, "causal_pad")])
        self.channels = C
        self.x = Plane(B, C + 1, H, W, margin=self.margin, dtype=self.dtype, device=self.device)
        self.x.interior[..., :C] = canvas.permute(0, 2, 3, 1)
        self.x.interior[..., C] = 1.0  # the ones channel (zero in the border, like the padding)
        self.u_up: list[list[Step]] = [[] for _ in range(levels)]
        self.ul_up: list[list[Step]] = [[] for _ in range(levels)]
        self.u_down: list[list[Step]] = [[] for _ in range(levels)]
        self.ul_down: list[list[Step]] = [[] for _ in range(levels)]

    # ------------------------------------------------------------------ building
    def plane(self, channels: int, level: int = 0, values: bool = True) -> Plane:
        """A feature plane at ``level`` that keeps its concat_elu activations (and its values, by default)."""
        return Plane(self.batch, channels, *self.sizes[level], margin=self.margin, dtype=self.dtype,
                     device=self.device, activations=True, values=values)

    def gated(self, block: nn.Module, x: Plane, aux: Sequence[Plane] = (), level: int = 0) -> CachedGatedResnet:
        return CachedGatedResnet(block, x, aux, lambda channels, values=True: self.plane(channels, level, values),
                                 self.cond)

    def shifted_conv(self, terms: Sequence[tuple[nn.Conv2d, Plane, tuple[int, int]]], level: int = 0) -> ShiftedConvSum:
        """``Σ shift(conv(src), down, right)`` into a new plane at ``level`` (terms: (module, src, shift))."""
        out = self.plane(terms[0][0].out_channels, level)
        return ShiftedConvSum(out, [(CachedConv(conv), src, shift) for conv, src, shift in terms])

    # ------------------------------------------------------------------- running
    def _sweep(self, up: list[list[Step]], down: list[list[Step]], levels: list[int],
               region: Callable[[int], Region]) -> None:
        """Run the up-pass steps of ``levels`` finest first, then their down-pass steps coarsest first."""
        for level in levels:
            run_steps(up[level], *region(level))
        for level in reversed(levels):
            run_steps(down[level], *region(level))

    def begin_row(self, i: int) -> None:
        # The u stream of every level whose rows start at image row i, on that whole row.
        levels = [level for level in range(len(self.sizes)) if i % (1 << level) == 0]
        self._sweep(self.u_up, self.u_down, levels,
                    lambda level: (i >> level, (i >> level) + 1, 0, self.sizes[level][1]))

    def features_at(self, i: int, j: int) -> torch.Tensor:
        levels = [level for level in range(len(self.sizes)) if i % (1 << level) == 0 and j % (1 << level) == 0]
        self._sweep(self.ul_up, self.ul_down, levels,
                    lambda level: (i >> level, (i >> level) + 1, j >> level, (j >> level) + 1))
        return F.elu(self.out.window(i, i + 1, j, j + 1))[:, 0, 0]

    def set_pixel(self, i: int, j: int, values: torch.Tensor) -> None:
        self.x.interior[:, i, j, :self.channels] = values

    def prime(self, rows: int) -> None:
        # Level-l rows [0, ceil(rows / 2**l)) are exactly those the incremental run fills before image row `rows`.
        def region(level: int) -> Region:
            return 0, -(-rows // (1 << level)), 0, self.sizes[level][1]

        levels = list(range(len(self.sizes)))
        self._sweep(self.u_up, self.u_down, levels, region)
        self._sweep(self.ul_up, self.ul_down, levels, region)
