"""Cached PixelCNN++: the U-net (Fast PixelCNN++, Ramachandran et al. 2017, arXiv:1704.06001) and its dilated form.

Both backbones run the same layer graph (``PixelCNNPP.forward``, ``PixelCNNPPDilated.forward``): a stem,
up-pass levels of gated blocks joined by links, and down-pass levels that take the up-pass outputs as
short-cuts. They differ only in the links: the U-net's are stride-2 convolutions down and transposed
convolutions up between three resolutions; the dilated net's are shifted convolutions at full resolution.

In the U-net the ul stream's transposed convolution has a (2, 2) kernel with stride 2, so each fine
position depends on one coarse position: when level ``l`` computes position ``(I, J)`` it fills the whole
2x2 block of level ``l - 1`` that it feeds, and no partial sums need to be kept. (The u stream's (2, 3)
kernel spreads over neighbouring coarse columns, but the u stream is computed a whole row at a time.)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..backbones.dilated import PixelCNNPPDilated
from ..backbones.pixelcnnpp import PixelCNNPP
from .base import register_cached
from .layers import CachedConvTranspose
from .planes import Plane
from .steps import Step, UpsampleStep
from .two_stream import TwoStreamCached

__all__ = ["CachedPixelCNNPP", "CachedPixelCNNPPDilated"]

Link = Callable[[int, Plane, Plane], tuple[Step, Step]]


class _CachedUNet(TwoStreamCached):
    """Builds the programs by walking the modules in the order the U-net ``forward`` calls them.

    ``level_of(k)`` is the resolution level of up-pass level ``k``; ``up_link(k, u, ul)`` and
    ``down_link(depth, u, ul)`` build the (u, ul) steps between levels (up links run at the level they
    lead to; down links at the level they leave).
    """

    def _build(self, backbone: nn.Module, level_of: Callable[[int], int], up_link: Link, down_link: Link) -> None:
        u = self.shifted_conv([(backbone.u_init, self.x, (1, 0))])
        ul = self.shifted_conv([(backbone.ul_init_down, self.x, (1, 0)), (backbone.ul_init_right, self.x, (0, 1))])
        self.u_up[0].append(u)
        self.ul_up[0].append(ul)
        u_list, ul_list = [u.out], [ul.out]
        n = len(backbone.up_layers)
        for k, layer in enumerate(backbone.up_layers):
            level = level_of(k)
            for u_block, ul_block in zip(layer.u_stream, layer.ul_stream):
                u = self.gated(u_block, u_list[-1], level=level)
                ul = self.gated(ul_block, ul_list[-1], [u.out], level=level)
                self._append(self.u_up, self.ul_up, level, u, ul, u_list, ul_list)
            if k < n - 1:
                self._append(self.u_up, self.ul_up, level_of(k + 1), *up_link(k, u_list[-1], ul_list[-1]),
                             u_list, ul_list)

        u_in, ul_in = u_list.pop(), ul_list.pop()
        for depth, layer in enumerate(backbone.down_layers):
            level = level_of(n - 1 - depth)
            for u_block, ul_block in zip(layer.u_stream, layer.ul_stream):
                if backbone.shortcuts:
                    u = self.gated(u_block, u_in, [u_list.pop()], level=level)
                    ul = self.gated(ul_block, ul_in, [u.out, ul_list.pop()], level=level)
                else:
                    u = self.gated(u_block, u_in, level=level)
                    ul = self.gated(ul_block, ul_in, [u.out], level=level)
                self._append(self.u_down, self.ul_down, level, u, ul)
                u_in, ul_in = u.out, ul.out
            if depth < n - 1:
                u, ul = down_link(depth, u_in, ul_in)
                self._append(self.u_down, self.ul_down, level, u, ul)
                u_in, ul_in = u.out, ul.out
        self.out = ul_in

    @staticmethod
    def _append(u_program, ul_program, level: int, u: Step, ul: Step, u_list=None, ul_list=None) -> None:
        u_program[level].append(u)
        ul_program[level].append(ul)
        if u_list is not None:
            u_list.append(u.out)
            ul_list.append(ul.out)


@register_cached(PixelCNNPP)
class CachedPixelCNNPP(_CachedUNet):
    """Incremental :class:`~pixelzoo.backbones.pixelcnnpp.PixelCNNPP` (any width, depth, short-cuts on/off).

    Per pixel: the ul stream at one position of level 0, and of level 1 / 2 when both coordinates are
    even / divisible by 4. Per row: the u stream on one row of each level that the row starts.

    Shape:
        canvas: (B, C, H, W) in [-1, 1], H and W divisible by 4; features_at(i, j) -> (B, nr_filters)
    """

    def __init__(self, backbone: PixelCNNPP, canvas: torch.Tensor, cond: torch.Tensor | None) -> None:
        super().__init__(backbone, canvas, cond, levels=len(backbone.up_layers))
        F_ = backbone.nr_filters

        def down(k: int, u: Plane, ul: Plane) -> tuple[Step, Step]:
            return (self.shifted_conv([(backbone.downsize_u[k], u, (0, 0))], level=k + 1),
                    self.shifted_conv([(backbone.downsize_ul[k], ul, (0, 0))], level=k + 1))

        def up(depth: int, u: Plane, ul: Plane) -> tuple[Step, Step]:
            level = len(self.sizes) - 1 - depth
            return (UpsampleStep(CachedConvTranspose(backbone.upsize_u[depth]), u, self.plane(F_, level - 1)),
                    UpsampleStep(CachedConvTranspose(backbone.upsize_ul[depth]), ul, self.plane(F_, level - 1)))

        self._build(backbone, lambda k: k, down, up)


@register_cached(PixelCNNPPDilated)
class CachedPixelCNNPPDilated(_CachedUNet):
    """Incremental :class:`~pixelzoo.backbones.dilated.PixelCNNPPDilated`: one resolution, so the u stream
    runs per row and the ul stream per pixel at every level; dilated windows are read from the planes.

    Shape:
        canvas: (B, C, H, W) in [-1, 1]; features_at(i, j) -> (B, nr_filters)
    """

    def __init__(self, backbone: PixelCNNPPDilated, canvas: torch.Tensor, cond: torch.Tensor | None) -> None:
        super().__init__(backbone, canvas, cond, levels=1)

        def link(pair: nn.ModuleList, u: Plane, ul: Plane) -> tuple[Step, Step]:
            return self.shifted_conv([(pair[0], u, (0, 0))]), self.shifted_conv([(pair[1], ul, (0, 0))])

        self._build(backbone, lambda k: 0, lambda k, u, ul: link(backbone.up_links[k], u, ul),
                    lambda depth, u, ul: link(backbone.down_links[depth], u, ul))
