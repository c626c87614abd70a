"""Cached PixelCNN++ U-net (the Fast PixelCNN++ scheme, Ramachandran et al. 2017, arXiv:1704.06001).

The u (vertical) stream at image row ``i`` depends only on rows above ``i``, at every resolution and in
both passes, so it is computed once per row, for the whole row. The ul (horizontal) stream is computed
one position at a time. A coarse level ``l`` (stride ``2**l``) position ``(I, J)`` is computed at the
pixel ``(2**l I, 2**l J)``: the first pixel whose output uses it, and the first moment all of its inputs
exist. The transposed convolutions of the ul stream then fill the 2x2 block of the finer level that
depends on that position only (their footprint is one input position), so no partial sums are kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..backbones.pixelcnnpp import PixelCNNPP
from .base import CachedBackbone, register_cached
from .layers import CachedConv, CachedConvTranspose, CachedGatedResnet
from .planes import Plane
from .steps import GatedStep, ShiftedConvSum, Step, UpsampleStep, run_steps

__all__ = ["CachedPixelCNNPP"]

_LEVELS = 3


@register_cached(PixelCNNPP)
class CachedPixelCNNPP(CachedBackbone):
    """Incremental :class:`~pixelzoo.backbones.pixelcnnpp.PixelCNNPP` (any width, depth, short-cuts on/off).

    Per pixel it runs the ul stream at one position of level 0 (and of level 1 / level 2 when both
    coordinates are even / divisible by 4); per row the u stream at one row of each level that the row
    starts. Work per image: about one full forward pass for the u stream and one for the ul stream.

    Shape:
        canvas: (B, C, H, W) in [-1, 1]; features_at(i, j) -> (B, nr_filters, 1, 1)
    """

    def __init__(self, backbone: PixelCNNPP, canvas: torch.Tensor, cond: torch.Tensor | None) -> None:
        super().__init__(backbone, canvas, cond)
        B, C, H, W = canvas.shape
        F_ = backbone.nr_filters
        self.sizes = [(H >> level, W >> level) for level in range(_LEVELS)]

        def plane(channels: int, level: int) -> Plane:
            return Plane(B, channels, *self.sizes[level], margin=1, dtype=canvas.dtype, device=canvas.device)

        def gated(block, level: int) -> CachedGatedResnet:
            return CachedGatedResnet(block, lambda channels: plane(channels, level), cond)

        self.channels = C
        self.x = plane(C + 1, 0)  # the image and its ones channel (zero in the border, like the padding)
        self.x.interior[:, :C] = canvas
        self.x.interior[:, C] = 1.0

        # u_up[l] / ul_up[l]: up-pass steps at level l; u_down[l] / ul_down[l]: down-pass steps at level l,
        # ending with the upsampling into level l - 1. Built in the order PixelCNNPP.forward runs.
        self.u_up: list[list[Step]] = [[] for _ in range(_LEVELS)]
        self.ul_up: list[list[Step]] = [[] for _ in range(_LEVELS)]
        self.u_down: list[list[Step]] = [[] for _ in range(_LEVELS)]
        self.ul_down: list[list[Step]] = [[] for _ in range(_LEVELS)]

        u = ShiftedConvSum(plane(F_, 0), [(CachedConv(backbone.u_init), self.x, (1, 0))])
        ul = ShiftedConvSum(plane(F_, 0), [(CachedConv(backbone.ul_init_down), self.x, (1, 0)),
                                           (CachedConv(backbone.ul_init_right), self.x, (0, 1))])
        self.u_up[0].append(u)
        self.ul_up[0].append(ul)
        u_list, ul_list = [u.out], [ul.out]
        for level, layer in enumerate(backbone.up_layers):
            for u_block, ul_block in zip(layer.u_stream, layer.ul_stream):
                u = GatedStep(gated(u_block, level), u_list[-1])
                ul = GatedStep(gated(ul_block, level), ul_list[-1], [u.out])
                self.u_up[level].append(u)
                self.ul_up[level].append(ul)
                u_list.append(u.out)
                ul_list.append(ul.out)
            if level < _LEVELS - 1:
                u = ShiftedConvSum(plane(F_, level + 1), [(CachedConv(backbone.downsize_u[level]), u_list[-1], (0, 0))])
                ul = ShiftedConvSum(plane(F_, level + 1),
                                    [(CachedConv(backbone.downsize_ul[level]), ul_list[-1], (0, 0))])
                self.u_up[level + 1].append(u)
                self.ul_up[level + 1].append(ul)
                u_list.append(u.out)
                ul_list.append(ul.out)

        u_in, ul_in = u_list.pop(), ul_list.pop()
        for depth, layer in enumerate(backbone.down_layers):
            level = _LEVELS - 1 - depth
            for u_block, ul_block in zip(layer.u_stream, layer.ul_stream):
                if backbone.shortcuts:
                    u = GatedStep(gated(u_block, level), u_in, [u_list.pop()])
                    ul = GatedStep(gated(ul_block, level), ul_in, [u.out, ul_list.pop()])
                else:
                    u = GatedStep(gated(u_block, level), u_in)
                    ul = GatedStep(gated(ul_block, level), ul_in, [u.out])
                self.u_down[level].append(u)
                self.ul_down[level].append(ul)
                u_in, ul_in = u.out, ul.out
            if level > 0:
                u = UpsampleStep(CachedConvTranspose(backbone.upsize_u[depth]), u_in, plane(F_, level - 1))
                ul = UpsampleStep(CachedConvTranspose(backbone.upsize_ul[depth]), ul_in, plane(F_, level - 1))
                self.u_down[level].append(u)
                self.ul_down[level].append(ul)
                u_in, ul_in = u.out, ul.out
        self.out = ul_in

    def _sweep(self, up: list[list[Step]], down: list[list[Step]], levels: list[int], region) -> None:
        """Run the up-pass steps of ``levels`` finest first, then their down-pass steps coarsest first."""
        for level in levels:
            run_steps(up[level], *region(level))
        for level in reversed(levels):
            run_steps(down[level], *region(level))

    def begin_row(self, i: int) -> None:
        # The u stream of every level whose rows start at image row i, on that whole row.
        levels = [level for level in range(_LEVELS) if i % (1 << level) == 0]
        self._sweep(self.u_up, self.u_down, levels,
                    lambda level: (i >> level, (i >> level) + 1, 0, self.sizes[level][1]))

    def features_at(self, i: int, j: int) -> torch.Tensor:
        levels = [level for level in range(_LEVELS) if i % (1 << level) == 0 and j % (1 << level) == 0]
        self._sweep(self.ul_up, self.ul_down, levels,
                    lambda level: (i >> level, (i >> level) + 1, j >> level, (j >> level) + 1))
        return F.elu(self.out.window(i, i + 1, j, j + 1))

    def set_pixel(self, i: int, j: int, values: torch.Tensor) -> None:
        self.x.interior[:, :self.channels, i, j] = values

    def prime(self, rows: int) -> None:
        # Level-l rows [0, ceil(rows / 2**l)) are exactly those the incremental run fills before image row `rows`.
        def region(level: int) -> tuple[int, int, int, int]:
            return 0, -(-rows // (1 << level)), 0, self.sizes[level][1]

        levels = list(range(_LEVELS))
        self._sweep(self.u_up, self.u_down, levels, region)
        self._sweep(self.ul_up, self.ul_down, levels, region)
