"""Cached small PixelCNNs (Plain, NIN, Autoregressive-Channel; ``pixelzoo.backbones.small``).

One resolution: the u stream (stem, (2, 3) blocks and the 1x1 u blocks between them) depends only on
the rows above, so it runs once per row; the ul stream ((1, 2) and 1x1 blocks, the merge) runs per
pixel. The layers between field-growing steps are mirrored by their kind: nothing (Plain), groups of
1x1 gated blocks (NIN), or channel-set skips (AR-channel), where each channel set is its own plane.
"""
from __future__ import annotations

import torch
from torch import nn

# The between-step layer kinds are private to backbones.small; a cached form must mirror them exactly.
from ..backbones.small import (SmallARChannel, SmallNIN, SmallPixelCNN, _ChannelAR, _ChannelARPair, _NINGroup,
                               _PassThrough)
from .base import register_cached
from .planes import Plane
from .steps import ChannelConcat, Step
from .two_stream import TwoStreamCached

__all__ = ["CachedSmallPixelCNN"]


@register_cached(SmallARChannel)
@register_cached(SmallNIN)
@register_cached(SmallPixelCNN)
class CachedSmallPixelCNN(TwoStreamCached):
    """Incremental :class:`~pixelzoo.backbones.small.SmallPixelCNN` and its NIN / AR-channel variants.

    Shape:
        canvas: (B, C, H, W) in [-1, 1]; features_at(i, j) -> (B, nr_filters)
    """

    def __init__(self, backbone: SmallPixelCNN, canvas: torch.Tensor, cond: torch.Tensor | None) -> None:
        super().__init__(backbone, canvas, cond, levels=1)
        u_step = self.shifted_conv([(backbone.u_init, self.x, (1, 0))])
        ul_step = self.shifted_conv([(backbone.ul_init, self.x, (0, 1))])
        self.u_up[0].append(u_step)
        self.ul_up[0].append(ul_step)
        u, ul = u_step.out, ul_step.out
        for between, u_block, ul_block in zip(backbone.between, backbone.u_stream, backbone.ul_stream):
            u, ul = self._between(between, u, ul)
            ul = self._add(self.ul_up, self.gated(ul_block, ul, [u]))  # aux: u before this step's u block
            u = self._add(self.u_up, self.gated(u_block, u))
        self.out = self._add(self.ul_up, self.gated(backbone.merge, ul, [u]))

    @staticmethod
    def _add(program: list[list[Step]], step: Step) -> Plane:
        program[0].append(step)
        return step.out

    def _between(self, between: nn.Module, u: Plane, ul: Plane) -> tuple[Plane, Plane]:
        if isinstance(between, _PassThrough):
            return u, ul
        if isinstance(between, _NINGroup):
            for u_block, ul_block in zip(between.u_stream, between.ul_stream):
                u = self._add(self.u_up, self.gated(u_block, u))
                ul = self._add(self.ul_up, self.gated(ul_block, ul, [u]))
            return u, ul
        if isinstance(between, _ChannelARPair):
            return self._channel_ar(between.u_stream, u, self.u_up), self._channel_ar(between.ul_stream, ul, self.ul_up)
        raise ValueError(f"no cached form for the layer {type(between).__name__} between the steps of "
                         f"{type(self.backbone).__name__}; use method='naive'")

    def _channel_ar(self, ar: _ChannelAR, src: Plane, program: list[list[Step]]) -> Plane:
        """Set k of ``src`` += gated block(set k; aux: the updated sets < k); the sets are joined again."""
        size = src.channels // ar.sets
        sets = [self._add(program, ChannelConcat(self.plane(size), [(src, k * size, (k + 1) * size)]))
                for k in range(ar.sets)]
        for k, block in enumerate(ar.blocks, start=1):
            sets[k] = self._add(program, self.gated(block, sets[k], sets[:k]))
        return self._add(program, ChannelConcat(self.plane(src.channels), [(p, 0, size) for p in sets]))
