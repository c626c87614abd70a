"""Small PixelCNNs with a limited field of view: Plain, NIN and Autoregressive-Channel (paper Table 2).

Paper: "PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood and Other
Modifications", Salimans, Karpathy, Chen, Kingma, ICLR 2017, https://arxiv.org/abs/1701.05517, §3.3.
The paper builds them as "PixelCNN++ without downsampling blocks" with fewer layers and gives no layer
recipe; the layouts below are pixelzoo's, designed so that the field is exactly the paper's set.

**The field.** ``field=(Wf, Hf)`` (paper "11x5": Wf = 11 columns, Hf = 5 rows), with ``w = (Wf - 1) / 2``:
output (i, j) sees exactly

* the rectangle above: rows ``i - Hf .. i - 1``, columns ``j - w .. j + w`` (Wf x Hf pixels), and
* the ``w`` pixels to its left: row ``i``, columns ``j - w .. j - 1``,

clipped to the image: 11x5 is 55 + 5 = 60 pixels, 15x8 is 120 + 7 = 127. (The reference layer types
cannot give this set: their (2, 2) down-right convolutions widen the part above too, REFERENCE §2.8.)

**The arrangement** (F channels per stream; ``n = min((Hf - 1) // 2, (w - 1) // 2)`` field-growing steps,
``kh0 = Hf - 2n`` and ``w0 = w - 2n``, both >= 1; 11x5: n = 2, kh0 = 1, w0 = 1; 15x8: n = 3, kh0 = 2, w0 = 1):

* stem, on the image plus a ones channel:
  ``u_0 = down_shift(DownShiftedConv2d(kh0, 2·w0 + 1))``: rows ``i - kh0 .. i - 1``, columns ``j ± w0``;
  ``ul_0 = right_shift(DownRightShiftedConv2d(1, w0))``: row ``i``, columns ``j - w0 .. j - 1``.
* step l = 0 .. n-1: ``ul_{l+1} = GatedResnet(ul_l, aux=u_l)`` with horizontal (1, 2) down-right
  convolutions (each widens the row part by one column to the left and never looks up);
  ``u_{l+1} = GatedResnet(u_l)`` with (2, 3) down-shifted convolutions (each adds a row and a column on
  each side). So ``u_l`` sees rows ``kh0 + 2l`` up and columns ``± (w0 + 2l)``; ``ul_n`` sees ``w0 + 2n = w``
  pixels to the left.
* merge: ``out = elu(GatedResnet(ul_n, aux=u_n))`` with 1x1 convolutions, which adds exactly u_n's
  rectangle (Hf rows, ``± w`` columns).

Why the rectangle stays exact: the aux input ``u_l`` enters block l after its first convolution, so the
rest of the ul stream (1 + 2(n-1-l) horizontal taps) spreads it ``w0 + 2l + 1 + 2(n-1-l) = w - 1 <= w``
columns to the left; it is never wider, taller, or further right than u_n's rectangle. Feeding ``u_{l+1}``
instead would spread one column too far.

**Variants** (the paper's text, §3.3, and pixelzoo's reading of it):

* ``small_plain``: the arrangement above ("only limited in depth").
* ``small_nin``: "insert additional gated ResNet blocks with 1x1 convolution between regular convolution
  blocks that grow receptive field ... we inserted 3 NIN blocks between every other layer". Read as: a
  group of ``nin_blocks`` (3) 1x1 gated blocks per stream between consecutive field-growing layers (stem
  and step 0, step 0 and step 1, ..., step n-2 and step n-1): n groups. The ul-stream 1x1 blocks take
  the u stream as aux input; their output still spreads only ``w0 + 2l + 2(n - l) = w`` columns left.
* ``small_archannel``: "skip connections between sets of channels via 1x1 convolution gated ResNet
  block". Read as an autoregressive structure over channel sets: at the same places as the NIN groups,
  each stream's F channels are split into ``channel_sets`` sets of F/S channels, and for k = 1 .. S-1 set
  k is updated by a 1x1 gated block whose aux input is the (already updated) sets 0 .. k-1, i.e. set k
  gets a gated residual skip from every earlier set. It adds capacity at the same position only, so it
  does not change the field. (Another possible reading, dense skips between layers, would also keep
  the field; the paper does not say.)

Widths, dropout and the number of mixtures are not in the paper: the presets use 160 filters, dropout
0.5 and 10 mixtures as the reference code's U-net does.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DownRightShiftedConv2d, DownShiftedConv2d, GatedResnet, down_shift, right_shift
from ..registry import Preset, register_backbone, register_model
from .base import Backbone, add_ones_channel

__all__ = ["SmallPixelCNN", "SmallNIN", "SmallARChannel", "small_field"]

_ONE_BY_ONE_U = ("down", (1, 1))
_ONE_BY_ONE_UL = ("down_right", (1, 1))


def _parse_field(field: Sequence[int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in field)
    except (TypeError, ValueError):
        raise ValueError(f"field must be (width, height), e.g. (11, 5), got {field!r}") from None
    if width < 3 or width % 2 != 1 or height < 1:
        raise ValueError(f"field must be (width, height) with an odd width >= 3 and height >= 1 (the paper's "
                         f"11x5 and 15x8), got {width}x{height}")
    return width, height


def small_field(field: Sequence[int], height: int, width: int) -> torch.Tensor:
    """The paper's limited field as data: output (i, j) -> the Wf x Hf rectangle above and w pixels left.

    Shape:
        -> (H, W, H, W) bool
    """
    field_w, field_h = _parse_field(field)
    w = (field_w - 1) // 2
    i = torch.arange(height)[:, None, None, None]
    j = torch.arange(width)[None, :, None, None]
    p = torch.arange(height)[None, None, :, None]
    q = torch.arange(width)[None, None, None, :]
    above = (p < i) & (p >= i - field_h) & ((q - j).abs() <= w)
    left = (p == i) & (q < j) & (q >= j - w)
    return above | left


class _PassThrough(nn.Module):
    """Plain inserts nothing between field-growing steps."""

    def forward(self, u: torch.Tensor, ul: torch.Tensor, cond: torch.Tensor | None = None):
        return u, ul


@register_backbone("small_plain")
class SmallPixelCNN(Backbone):
    """The "Plain" small PixelCNN with an exact ``field`` (see the module docstring for the layout).

    Args:
        in_channels: image channels.
        num_classes: > 0 adds a class-dependent bias to every gated block.
        field: ``(width, height)`` of the field, e.g. ``(11, 5)``; width odd.
        nr_filters: F, the width of both streams.
        dropout: dropout probability inside the blocks.

    Shape:
        x: (B, in_channels, H, W) in [-1, 1]; cond: (B, num_classes) or None -> (B, nr_filters, H, W)
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 0, field: Sequence[int] = (11, 5),
                 nr_filters: int = 160, dropout: float = 0.5) -> None:
        super().__init__(in_channels, num_classes)
        if nr_filters < 1:
            raise ValueError(f"nr_filters must be >= 1, got {nr_filters}")
        field_w, field_h = _parse_field(field)
        w = (field_w - 1) // 2
        n = min((field_h - 1) // 2, (w - 1) // 2)
        kh0, w0 = field_h - 2 * n, w - 2 * n
        F_ = nr_filters
        self.field, self.nr_filters, self.num_steps = (field_w, field_h), nr_filters, n
        self.out_features = F_
        c_in = in_channels + 1  # + the ones channel
        self.u_init = DownShiftedConv2d(c_in, F_, (kh0, 2 * w0 + 1))
        self.ul_init = DownRightShiftedConv2d(c_in, F_, (1, w0))
        self.u_stream = nn.ModuleList(GatedResnet(F_, "down", 0, num_classes, dropout) for _ in range(n))
        self.ul_stream = nn.ModuleList(
            GatedResnet(F_, ("down_right", (1, 2)), F_, num_classes, dropout) for _ in range(n))
        self.between = nn.ModuleList(self._between_layer(F_, num_classes, dropout) for _ in range(n))
        self.merge = GatedResnet(F_, _ONE_BY_ONE_UL, F_, num_classes, dropout)

    def _between_layer(self, F_: int, num_classes: int, dropout: float) -> nn.Module:
        """What the variant inserts before each field-growing step: ``(u, ul, cond) -> (u, ul)``."""
        return _PassThrough()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = add_ones_channel(x)
        u = down_shift(self.u_init(x))
        ul = right_shift(self.ul_init(x))
        for between, u_block, ul_block in zip(self.between, self.u_stream, self.ul_stream):
            u, ul = between(u, ul, cond)
            ul = ul_block(ul, u, cond=cond)  # aux: u before this step's u block (keeps the field exact)
            u = u_block(u, cond=cond)
        return F.elu(self.merge(ul, u, cond=cond))

    def declared_receptive_field(self, height: int, width: int) -> torch.Tensor:
        """Output (i, j) -> input pixels it sees: the paper's field, analytically (:func:`small_field`).

        Shape:
            -> (H, W, H, W) bool
        """
        self.check_image_size(height, width)
        return small_field(self.field, height, width)


class _NINGroup(nn.Module):
    """``count`` 1x1 gated blocks per stream; the ul-stream blocks take u as aux input."""

    def __init__(self, count: int, F_: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.u_stream = nn.ModuleList(GatedResnet(F_, _ONE_BY_ONE_U, 0, num_classes, dropout) for _ in range(count))
        self.ul_stream = nn.ModuleList(
            GatedResnet(F_, _ONE_BY_ONE_UL, F_, num_classes, dropout) for _ in range(count))

    def forward(self, u: torch.Tensor, ul: torch.Tensor, cond: torch.Tensor | None = None):
        for u_block, ul_block in zip(self.u_stream, self.ul_stream):
            u = u_block(u, cond=cond)
            ul = ul_block(ul, u, cond=cond)
        return u, ul


@register_backbone("small_nin")
class SmallNIN(SmallPixelCNN):
    """The "NIN" small PixelCNN: Plain plus ``nin_blocks`` 1x1 gated blocks per stream between field-growing
    layers (module docstring). Args as :class:`SmallPixelCNN`, plus ``nin_blocks`` (paper: 3).

    Shape:
        x: (B, in_channels, H, W) in [-1, 1]; cond: (B, num_classes) or None -> (B, nr_filters, H, W)
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 0, field: Sequence[int] = (11, 5),
                 nr_filters: int = 160, dropout: float = 0.5, nin_blocks: int = 3) -> None:
        if nin_blocks < 1:
            raise ValueError(f"nin_blocks must be >= 1, got {nin_blocks}")
        self.nin_blocks = nin_blocks
        super().__init__(in_channels, num_classes, field, nr_filters, dropout)

    def _between_layer(self, F_: int, num_classes: int, dropout: float) -> nn.Module:
        return _NINGroup(self.nin_blocks, F_, num_classes, dropout)


class _ChannelAR(nn.Module):
    """Autoregressive skips over ``sets`` channel sets: set k += gated 1x1 block of (set k; aux sets < k).

    Shape:
        (B, F, H, W) -> (B, F, H, W)
    """

    def __init__(self, sets: int, F_: int, kind: tuple, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.sets = sets
        size = F_ // sets
        self.blocks = nn.ModuleList(GatedResnet(size, kind, k * size, num_classes, dropout) for k in range(1, sets))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        parts = list(x.chunk(self.sets, dim=1))
        for k, block in enumerate(self.blocks, start=1):
            parts[k] = block(parts[k], torch.cat(parts[:k], dim=1), cond=cond)
        return torch.cat(parts, dim=1)


class _ChannelARPair(nn.Module):
    def __init__(self, sets: int, F_: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.u_stream = _ChannelAR(sets, F_, _ONE_BY_ONE_U, num_classes, dropout)
        self.ul_stream = _ChannelAR(sets, F_, _ONE_BY_ONE_UL, num_classes, dropout)

    def forward(self, u: torch.Tensor, ul: torch.Tensor, cond: torch.Tensor | None = None):
        return self.u_stream(u, cond), self.ul_stream(ul, cond)


@register_backbone("small_archannel")
class SmallARChannel(SmallPixelCNN):
    """The "Autoregressive Channel" small PixelCNN: Plain plus channel-set skips through 1x1 gated blocks
    between field-growing layers (module docstring). Args as :class:`SmallPixelCNN`, plus ``channel_sets``
    (S; ``nr_filters`` must be divisible by it).

    Shape:
        x: (B, in_channels, H, W) in [-1, 1]; cond: (B, num_classes) or None -> (B, nr_filters, H, W)
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 0, field: Sequence[int] = (11, 5),
                 nr_filters: int = 160, dropout: float = 0.5, channel_sets: int = 4) -> None:
        if channel_sets < 2 or nr_filters % channel_sets:
            raise ValueError(f"channel_sets must be >= 2 and divide nr_filters, got channel_sets={channel_sets}, "
                             f"nr_filters={nr_filters}; e.g. channel_sets=4 with nr_filters=160")
        self.channel_sets = channel_sets
        super().__init__(in_channels, num_classes, field, nr_filters, dropout)

    def _between_layer(self, F_: int, num_classes: int, dropout: float) -> nn.Module:
        return _ChannelARPair(self.channel_sets, F_, num_classes, dropout)


# ------------------------------------------------------------------------------------- presets
_TABLE2 = {  # paper Table 2: CIFAR-10 test bits/dim
    ("plain", (11, 5)): 3.11, ("nin", (11, 5)): 3.09, ("archannel", (11, 5)): 3.07,
    ("plain", (15, 8)): 3.07, ("nin", (15, 8)): 3.04, ("archannel", (15, 8)): 3.03,
}
_ROW_NAMES = {"plain": "Plain", "nin": "NIN", "archannel": "Autoregressive Channel"}

for (_variant, _field), _bpd in _TABLE2.items():
    register_model(Preset(
        name=f"small_{_variant}_{_field[0]}x{_field[1]}", backbone=f"small_{_variant}", head="dlogistic",
        image_shape=(3, 32, 32), backbone_args=dict(field=list(_field), nr_filters=160, dropout=0.5),
        head_args=dict(num_mixtures=10),
        metadata=dict(paper="Salimans et al. 2017, arXiv:1701.05517, §3.3 Table 2", dataset="cifar10",
                      paper_bits_per_dim=_bpd, paper_row=f"Field={_field[0]}x{_field[1]}, {_ROW_NAMES[_variant]}",
                      notes="Layer layout, width (160), dropout (0.5) and mixtures (10) are pixelzoo's: the paper "
                            "gives only the field and the variant. The field is exact (see pixelzoo.backbones.small).")))

# A local model for likelihood-ratio OOD scores (Zhang, Zhang & McDonagh, NeurIPS 2021): a 5x3 field (two pixels
# to the left, the 5x3 rectangle above) explains pixel-level statistics and little else.
register_model(Preset(
    name="small_plain_local_28", backbone="small_plain", head="dlogistic", image_shape=(1, 28, 28),
    backbone_args=dict(field=[5, 3], nr_filters=32, dropout=0.0), head_args=dict(num_mixtures=5),
    metadata=dict(dataset="fashion_mnist",
                  notes="Local model of the OOD study: a 5x3 receptive field on 1x28x28 images (pixelzoo.ood).")))
