"""PixelCNN++ U-net backbone.

Paper: "PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
Modifications", Salimans, Karpathy, Chen, Kingma, ICLR 2017, https://arxiv.org/abs/1701.05517.
Origin code: openai/pixel-cnn ``pixel_cnn_pp/model.py`` (``model_spec``), whose layer graph this follows
exactly (REFERENCE §2.3): 160 filters as in the released code and checkpoint (the paper's text says 192).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import (DownRightShiftedConv2d, DownRightShiftedConvTranspose2d, DownShiftedConv2d,
                      DownShiftedConvTranspose2d, GatedResnet, down_shift, right_shift)
from ..registry import Preset, register_backbone, register_model
from .base import Backbone, add_ones_channel

__all__ = ["PixelCNNPP"]


class _StreamPair(nn.Module):
    """``n`` steps of (u-stream block, ul-stream block); ``skips`` = aux channels of u and ul blocks."""

    def __init__(self, n: int, F_: int, u_aux: int, ul_aux: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.u_stream = nn.ModuleList(
            GatedResnet(F_, "down", u_aux, num_classes, dropout) for _ in range(n))
        self.ul_stream = nn.ModuleList(
            GatedResnet(F_, "down_right", ul_aux, num_classes, dropout) for _ in range(n))


@register_backbone("pixelcnnpp")
class PixelCNNPP(Backbone):
    """The PixelCNN++ U-net: two causal streams (u: above; ul: above and left), 3 resolutions, short-cuts.

    Up pass: ``nr_resnet`` gated blocks per stream at each of H, H/2, H/4, with stride-2 shifted convs
    between levels; every intermediate (1 + nr_resnet per level, 18 per stream at the defaults) is kept.
    Down pass: ``nr_resnet, nr_resnet + 1, nr_resnet + 1`` blocks at H/4, H/2, H, with transposed convs
    between levels; each block takes the matching up-pass output as its auxiliary input (u: the u skip;
    ul: ``[u, ul skip]``). Output: ``elu(ul)``.

    Args:
        in_channels: image channels (1 or 3, any C works).
        num_classes: > 0 adds a class-dependent bias to every gated block.
        nr_resnet: blocks per level (reference 5).
        nr_filters: F, the width of every block (reference code 160; paper text 192).
        dropout: dropout probability inside the blocks (reference 0.5).
        shortcuts: ``False`` removes the U-net short-cut connections (the paper's "no short-cut" ablation);
            down-pass ul blocks then take only the u stream as auxiliary input.
        checkpointing: activation checkpointing of every gated block in training (less memory for about
            one more forward pass of time; the outputs and gradients are unchanged).

    Shape:
        x: (B, in_channels, H, W) in [-1, 1], H and W divisible by 4; cond: (B, num_classes) or None
        -> (B, nr_filters, H, W)
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 0, nr_resnet: int = 5, nr_filters: int = 160,
                 dropout: float = 0.5, shortcuts: bool = True, checkpointing: bool = False) -> None:
        super().__init__(in_channels, num_classes)
        if nr_resnet < 1 or nr_filters < 1:
            raise ValueError(f"nr_resnet and nr_filters must be >= 1, got {nr_resnet}, {nr_filters}")
        F_ = nr_filters
        self.nr_resnet, self.nr_filters, self.shortcuts = nr_resnet, nr_filters, shortcuts
        self.out_features = F_
        c_in = in_channels + 1  # + the ones channel
        self.u_init = DownShiftedConv2d(c_in, F_, (2, 3))
        self.ul_init_down = DownShiftedConv2d(c_in, F_, (1, 3))
        self.ul_init_right = DownRightShiftedConv2d(c_in, F_, (2, 1))

        self.up_layers = nn.ModuleList(_StreamPair(nr_resnet, F_, 0, F_, num_classes, dropout) for _ in range(3))
        self.downsize_u = nn.ModuleList(DownShiftedConv2d(F_, F_, (2, 3), stride=2) for _ in range(2))
        self.downsize_ul = nn.ModuleList(DownRightShiftedConv2d(F_, F_, (2, 2), stride=2) for _ in range(2))

        u_aux, ul_aux = (F_, 2 * F_) if shortcuts else (0, F_)
        self.down_layers = nn.ModuleList(
            _StreamPair(n, F_, u_aux, ul_aux, num_classes, dropout) for n in (nr_resnet, nr_resnet + 1, nr_resnet + 1))
        self.upsize_u = nn.ModuleList(DownShiftedConvTranspose2d(F_, F_, (2, 3)) for _ in range(2))
        self.upsize_ul = nn.ModuleList(DownRightShiftedConvTranspose2d(F_, F_, (2, 2)) for _ in range(2))
        for block in self.modules():
            if isinstance(block, GatedResnet):
                block.checkpointing = checkpointing

    def check_image_size(self, height: int, width: int) -> None:
        super().check_image_size(height, width)
        if height % 4 or width % 4:
            raise ValueError(f"pixelcnnpp downsamples twice by 2, so H and W must be divisible by 4; "
                             f"got {height}x{width}")

    def stem(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> u0, ul0 each (B, F, H, W): the first features of the two streams."""
        return two_stream_stem(self, x)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        u, ul = self.stem(x)
        down = [lambda u, ul, k=k: (self.downsize_u[k](u), self.downsize_ul[k](ul)) for k in range(2)]
        up = [lambda u, ul, k=k: (self.upsize_u[k](u), self.upsize_ul[k](ul)) for k in range(2)]
        return F.elu(two_stream_unet(u, ul, self.up_layers, down, self.down_layers, up, self.shortcuts, cond))


Link = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def two_stream_stem(backbone: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference stem through ``backbone.u_init``, ``ul_init_down`` and ``ul_init_right``: the u stream
    sees the rows above, the ul stream the rows above and the pixels to the left.

    Shape:
        x: (B, C, H, W) -> u0, ul0 each (B, F, H, W)
    """
    x = add_ones_channel(x)
    u = down_shift(backbone.u_init(x))
    ul = down_shift(backbone.ul_init_down(x)) + right_shift(backbone.ul_init_right(x))
    return u, ul


def two_stream_unet(u: torch.Tensor, ul: torch.Tensor, up_layers: Sequence[nn.Module], up_links: Sequence[Link],
                    down_layers: Sequence[nn.Module], down_links: Sequence[Link], shortcuts: bool,
                    cond: torch.Tensor | None) -> torch.Tensor:
    """The U-net walk shared by the PixelCNN++ backbones (REFERENCE §2.3).

    Up pass: each level's (u, ul) block pairs, every intermediate kept; ``up_links[k]`` joins level k to k+1
    (stride-2 convolutions in the U-net, dilated ones in the dilated variant). Down pass: each block takes
    the matching kept intermediate (u: the u skip; ul: ``[u, ul skip]``), or only ``u`` for ul blocks when
    ``shortcuts`` is False; ``down_links`` join the levels on the way back. Returns the final ul stream.
    """
    u_list, ul_list = [u], [ul]
    for level, layer in enumerate(up_layers):
        for u_block, ul_block in zip(layer.u_stream, layer.ul_stream):
            u = u_block(u, cond=cond)
            ul = ul_block(ul, u, cond=cond)
            u_list.append(u)
            ul_list.append(ul)
        if level < len(up_links):
            u, ul = up_links[level](u, ul)
            u_list.append(u)
            ul_list.append(ul)

    u, ul = u_list.pop(), ul_list.pop()
    for level, layer in enumerate(down_layers):
        for u_block, ul_block in zip(layer.u_stream, layer.ul_stream):
            if shortcuts:
                u = u_block(u, u_list.pop(), cond=cond)
                ul = ul_block(ul, torch.cat([u, ul_list.pop()], dim=1), cond=cond)
            else:
                u = u_block(u, cond=cond)
                ul = ul_block(ul, u, cond=cond)
        if level < len(down_links):
            u, ul = down_links[level](u, ul)
    return ul


def _preset(name: str, **kw) -> Preset:
    return register_model(Preset(name=name, backbone="pixelcnnpp", head="dlogistic", **kw))


_PAPER_CIFAR = dict(paper="Salimans et al. 2017, arXiv:1701.05517", paper_nr_filters=192,
                    notes="nr_filters=160 as in openai/pixel-cnn and its released checkpoint; the paper's "
                          "text says 192 feature maps.")

_preset("pixelcnnpp_cifar10", image_shape=(3, 32, 32),
        backbone_args=dict(nr_resnet=5, nr_filters=160, dropout=0.5), head_args=dict(num_mixtures=10),
        metadata=dict(_PAPER_CIFAR, paper_bits_per_dim=2.92, dataset="cifar10"))
_preset("pixelcnnpp_small", image_shape=(3, 32, 32),
        backbone_args=dict(nr_resnet=1, nr_filters=32, dropout=0.5), head_args=dict(num_mixtures=5),
        metadata=dict(notes="A small U-net for CPU demos and tests (the pclucas14 port's 'small config')."))
_preset("pixelcnnpp_cifar10_small", image_shape=(3, 32, 32),
        backbone_args=dict(nr_resnet=1, nr_filters=40, dropout=0.1), head_args=dict(num_mixtures=10),
        metadata=dict(dataset="cifar10", hub_id="pixelzoo/pixelcnnpp-cifar10-small",
                      notes="A small U-net sized for about two hours of training on 2 CPU cores (about six "
                            "epochs); the zoo's CIFAR-10 checkpoint."))
_preset("pixelcnnpp_mnist", image_shape=(1, 28, 28),
        backbone_args=dict(nr_resnet=1, nr_filters=32, dropout=0.0), head_args=dict(num_mixtures=5),
        metadata=dict(dataset="mnist", hub_id="pixelzoo/pixelcnnpp-mnist",
                      notes="A small 1-channel U-net that trains on 2 CPU cores; the zoo's MNIST checkpoint."))
_preset("pixelcnnpp_fashion_mnist", image_shape=(1, 28, 28),
        backbone_args=dict(nr_resnet=1, nr_filters=32, dropout=0.0), head_args=dict(num_mixtures=5),
        metadata=dict(dataset="fashion_mnist",
                      notes="pixelcnnpp_mnist's U-net trained on Fashion-MNIST: the foreground model of the OOD "
                            "study (pixelzoo.ood)."))
_preset("pixelcnnpp_fashion_mnist_background", image_shape=(1, 28, 28),
        backbone_args=dict(nr_resnet=1, nr_filters=32, dropout=0.0), head_args=dict(num_mixtures=5),
        metadata=dict(dataset="fashion_mnist",
                      notes="The foreground's architecture trained on mutated Fashion-MNIST (--mutation-rate): the "
                            "background model of the likelihood ratio of Ren et al. (NeurIPS 2019)."))

# The paper's other CIFAR-10 rows and ablations (§3.2, §3.4): the cifar10 preset with one thing changed.
_CIFAR_ARGS = dict(image_shape=(3, 32, 32), head_args=dict(num_mixtures=10))
_preset("pixelcnnpp_cifar10_cond", num_classes=10, **_CIFAR_ARGS,
        backbone_args=dict(nr_resnet=5, nr_filters=160, dropout=0.5),
        metadata=dict(_PAPER_CIFAR, paper_bits_per_dim=2.94, dataset="cifar10", paper_section="§3.2",
                      paper_row="class-conditional: a class-dependent bias in every gated block"))
_preset("pixelcnnpp_noshortcut", **_CIFAR_ARGS,
        backbone_args=dict(nr_resnet=5, nr_filters=160, dropout=0.5, shortcuts=False),
        metadata=dict(_PAPER_CIFAR, paper_bits_per_dim=None, dataset="cifar10", paper_section="§3.4.3",
                      paper_result="no figure: 'the model fails to train' without the short-cut connections (Fig. 7)"))
_preset("pixelcnnpp_nodropout", **_CIFAR_ARGS,
        backbone_args=dict(nr_resnet=5, nr_filters=160, dropout=0.0),
        metadata=dict(_PAPER_CIFAR, paper_bits_per_dim=None, dataset="cifar10", paper_section="§3.4.4",
                      paper_result="overfits: train below 2.0 bits/dim, final test above 6.0, never below 3.0 on test"))
