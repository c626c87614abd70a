"""PixelCNN++ with dilated convolutions instead of down- and up-sampling.

Paper: "PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
Modifications", Salimans, Karpathy, Chen, Kingma, ICLR 2017, https://arxiv.org/abs/1701.05517, §2.3:
the alternative the paper compares downsampling against ("with these additional short-cut connections,
we found the performance of downsampling to be the same as for dilated convolution"). The paper gives
no layer recipe and no bits/dim for it; this layout is pixelzoo's.

Layout: the U-net of ``pixelcnnpp.py`` (same stem, gated blocks, two streams and mirrored short-cuts)
with every level at full resolution. Level k's blocks use dilation ``dilations[k]`` (default 1, 2, 4
where the U-net has 32², 16², 8²); the stride-2 convolutions between up-pass levels become stride-1
shifted convolutions with the next level's dilation, and the transposed convolutions between down-pass
levels become shifted convolutions with the dilation of the level they lead into. A dilated
down-shifted (2, 3) convolution pads ``d`` rows above and ``d`` columns on each side; a dilated
down-right (2, 2) one pads ``d`` rows above and ``d`` columns on the left, so causality is kept.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DownRightShiftedConv2d, DownShiftedConv2d, GatedResnet
from ..receptive_field import conv_deps, identity_deps, stem_deps, two_stream_unet_deps, unpack_deps
from ..registry import Preset, register_backbone, register_model
from .base import Backbone
from .pixelcnnpp import two_stream_stem, two_stream_unet

__all__ = ["PixelCNNPPDilated"]


class _DilatedStreamPair(nn.Module):
    """``n`` steps of (u-stream block, ul-stream block), all with dilation ``dilation``."""

    def __init__(self, n: int, F_: int, u_aux: int, ul_aux: int, num_classes: int, dropout: float,
                 dilation: int) -> None:
        super().__init__()
        self.u_stream = nn.ModuleList(
            GatedResnet(F_, "down", u_aux, num_classes, dropout, dilation) for _ in range(n))
        self.ul_stream = nn.ModuleList(
            GatedResnet(F_, "down_right", ul_aux, num_classes, dropout, dilation) for _ in range(n))


def _link_pair(F_: int, dilation: int) -> nn.ModuleList:
    """The (u, ul) pair of shifted convolutions that joins two levels."""
    return nn.ModuleList([DownShiftedConv2d(F_, F_, (2, 3), dilation=dilation),
                          DownRightShiftedConv2d(F_, F_, (2, 2), dilation=dilation)])


@register_backbone("pixelcnnpp_dilated")
class PixelCNNPPDilated(Backbone):
    """Two-stream gated PixelCNN++ at full resolution, dilated levels, mirrored U-net short-cuts.

    Up pass: ``nr_resnet`` gated blocks per stream at each level (dilation ``dilations[k]``), a linking
    shifted convolution per stream between levels; every intermediate is kept (``len(dilations)·(nr_resnet
    + 1)`` per stream). Down pass: ``nr_resnet, nr_resnet + 1, ...`` blocks over the levels in reverse,
    each taking the matching up-pass output as auxiliary input (u: the u skip; ul: ``[u, ul skip]``).
    Output: ``elu(ul)``.

    Args:
        in_channels: image channels.
        num_classes: > 0 adds a class-dependent bias to every gated block.
        nr_resnet: blocks per level (reference 5).
        nr_filters: F, the width of every block.
        dropout: dropout probability inside the blocks.
        shortcuts: ``False`` drops the short-cuts (down-pass ul blocks then take only u as aux input).
        dilations: one dilation per level (default ``(1, 2, 4)``).

    Shape:
        x: (B, in_channels, H, W) in [-1, 1]; cond: (B, num_classes) or None -> (B, nr_filters, H, W)
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 0, nr_resnet: int = 5, nr_filters: int = 160,
                 dropout: float = 0.5, shortcuts: bool = True, dilations: Sequence[int] = (1, 2, 4)) -> None:
        super().__init__(in_channels, num_classes)
        if nr_resnet < 1 or nr_filters < 1:
            raise ValueError(f"nr_resnet and nr_filters must be >= 1, got {nr_resnet}, {nr_filters}")
        dilations = tuple(dilations)
        if not dilations or not all(isinstance(d, int) and d >= 1 for d in dilations):
            raise ValueError(f"dilations must be a non-empty sequence of ints >= 1, got {dilations!r}")
        F_ = nr_filters
        self.nr_resnet, self.nr_filters, self.shortcuts, self.dilations = nr_resnet, nr_filters, shortcuts, dilations
        self.out_features = F_
        c_in = in_channels + 1  # + the ones channel
        self.u_init = DownShiftedConv2d(c_in, F_, (2, 3))
        self.ul_init_down = DownShiftedConv2d(c_in, F_, (1, 3))
        self.ul_init_right = DownRightShiftedConv2d(c_in, F_, (2, 1))

        self.up_layers = nn.ModuleList(
            _DilatedStreamPair(nr_resnet, F_, 0, F_, num_classes, dropout, d) for d in dilations)
        self.up_links = nn.ModuleList(_link_pair(F_, d) for d in dilations[1:])

        u_aux, ul_aux = (F_, 2 * F_) if shortcuts else (0, F_)
        down_dilations = dilations[::-1]
        counts = [nr_resnet] + [nr_resnet + 1] * (len(dilations) - 1)
        self.down_layers = nn.ModuleList(
            _DilatedStreamPair(n, F_, u_aux, ul_aux, num_classes, dropout, d) for n, d in zip(counts, down_dilations))
        self.down_links = nn.ModuleList(_link_pair(F_, d) for d in down_dilations[1:])

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        u, ul = two_stream_stem(self, x)
        up = [lambda u, ul, pair=pair: (pair[0](u), pair[1](ul)) for pair in self.up_links]
        down = [lambda u, ul, pair=pair: (pair[0](u), pair[1](ul)) for pair in self.down_links]
        return F.elu(two_stream_unet(u, ul, self.up_layers, up, self.down_layers, down, self.shortcuts, cond))

    def declared_receptive_field(self, height: int, width: int) -> torch.Tensor:
        """Output (i, j) -> input pixels it sees, from walking the layer graph with dependency maps
        (``pixelzoo.receptive_field``), without autograd.

        Shape:
            -> (H, W, H, W) bool
        """
        self.check_image_size(height, width)
        u, ul = stem_deps(identity_deps(height, width), self.u_init, self.ul_init_down, self.ul_init_right)
        ul = two_stream_unet_deps(u, ul, self.up_layers, [_link_deps(p) for p in self.up_links],
                                  self.down_layers, [_link_deps(p) for p in self.down_links], self.shortcuts)
        return unpack_deps(ul, height, width)


def _link_deps(pair: nn.ModuleList):
    return lambda u, ul: (conv_deps(u, pair[0]), conv_deps(ul, pair[1]))

register_model(Preset(
    name="pixelcnnpp_dilated_cifar10", backbone="pixelcnnpp_dilated", head="dlogistic", image_shape=(3, 32, 32),
    backbone_args=dict(nr_resnet=5, nr_filters=160, dropout=0.5, dilations=[1, 2, 4]),
    head_args=dict(num_mixtures=10),
    metadata=dict(paper="Salimans et al. 2017, arXiv:1701.05517, §2.3", dataset="cifar10", paper_bits_per_dim=None,
                  notes="The paper reports no figure for the dilated variant, only that it performed the same as "
                        "downsampling with short-cuts. Layout is pixelzoo's: the U-net at full resolution "
                        "with dilations 1, 2, 4 in place of the 32/16/8 levels.")))
