"""Causal building blocks of PixelCNN++ (Salimans et al. 2017; openai/pixel-cnn ``pixel_cnn_pp/nn.py``).

Causality comes from padding, never from masks: a *down-shifted* convolution pads ``kh - 1`` rows above
and ``(kw - 1) / 2`` columns on each side, so output ``(i, j)`` sees rows ``i - kh + 1 .. i`` only; a
*down-right-shifted* one pads ``kw - 1`` columns on the left too, so it sees columns ``j - kw + 1 .. j``.
``down_shift`` / ``right_shift`` then move a feature map one row down / one column right so that position
``(i, j)`` holds what was computed from strictly earlier pixels.

Every convolution is weight-normalised per output channel (``W = g · V / ‖V‖``, through
``torch.nn.utils.parametrizations.weight_norm``; for transposed convolutions the output axis is dim 1)
and supports the reference's data-dependent initialisation (:func:`data_dependent_init`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from torch.utils.checkpoint import checkpoint

from .fused import concat_elu_conv2d, dropout_keep, gated_residual

__all__ = [
    "down_shift",
    "right_shift",
    "concat_elu",
    "DataInitMixin",
    "DownShiftedConv2d",
    "DownRightShiftedConv2d",
    "DownShiftedConvTranspose2d",
    "DownRightShiftedConvTranspose2d",
    "NIN",
    "GatedResnet",
    "Conditioning",
    "add_spatial_conditioning",
    "data_dependent_init",
    "count_parameters",
]


@dataclass
class Conditioning:
    """What a model conditions on besides the image: a one-hot class vector and/or a spatial map.

    The map (B, D, h, w) is data the model conditions on, never part of what it models: every gated block
    adds a learned 1x1 projection of it, resized (nearest) to the block's resolution, to its gate input, as it
    adds the class bias (the conditional PixelCNN's spatial term, van den Oord et al. 2016). Resized maps are
    kept per resolution, so the blocks of one resolution share one resize.

    Shape:
        onehot: (B, num_classes) or None; map: (B, D, h, w) float or None
    """

    onehot: torch.Tensor | None = None
    map: torch.Tensor | None = None
    _resized: dict = field(default_factory=dict, repr=False, compare=False)

    def map_at(self, height: int, width: int) -> torch.Tensor:
        """The map resized (nearest) to ``height x width``: (B, D, height, width)."""
        key = (height, width)
        if key not in self._resized:
            m = self.map
            self._resized[key] = m if tuple(m.shape[-2:]) == key else F.interpolate(m, size=key, mode="nearest")
        return self._resized[key]


def split_conditioning(cond: "Conditioning | torch.Tensor | None") -> tuple[torch.Tensor | None, Conditioning | None]:
    """(one-hot, the Conditioning holding a map or None) from what a backbone was given as ``cond``."""
    if isinstance(cond, Conditioning):
        return cond.onehot, (cond if cond.map is not None else None)
    return cond, None


def add_spatial_conditioning(module: nn.Module, channels: int) -> int:
    """Give every :class:`GatedResnet` inside ``module`` a spatial conditioning term of ``channels`` map
    channels (a (D, 2F) projection, N(0, 0.05) like the class bias); returns how many blocks got one."""
    blocks = [m for m in module.modules() if isinstance(m, GatedResnet)]
    for block in blocks:
        block.enable_spatial_conditioning(channels)
    return len(blocks)


def _shift(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Move ``x`` (B, C, H, W) down by ``rows`` and right by ``cols``, filling with zeros; same shape."""
    H, W = x.shape[-2:]
    return F.pad(x, (cols, 0, rows, 0))[..., :H, :W]


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Prepend a zero row and drop the last: output row i holds input row i - 1. Shape kept (B, C, H, W)."""
    return _shift(x, 1, 0)


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Prepend a zero column and drop the last: output column j holds input column j - 1."""
    return _shift(x, 0, 1)


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu([x, -x])`` along channels: (B, C, H, W) -> (B, 2C, H, W)."""
    return F.elu(torch.cat([x, -x], dim=1))


class DataInitMixin:
    """Data-dependent initialisation of a weight-normed layer (Salimans & Kingma 2016).

    While :func:`data_dependent_init` is active, the first forward call of the layer rescales its gain
    ``g`` and bias ``b`` so that its pre-activations on that batch have mean 0 and standard deviation
    ``init_scale`` per output channel, and returns the rescaled output, so later layers see normalized
    inputs (the reference's sequential init).
    """

    init_scale: float = 1.0
    _data_init_pending: bool = False

    def _data_init(self, out: torch.Tensor) -> torch.Tensor:
        if not self._data_init_pending:
            return out
        self._data_init_pending = False
        with torch.no_grad():
            mean = out.mean(dim=(0, 2, 3))
            var = out.var(dim=(0, 2, 3), unbiased=False)
            scale = self.init_scale / torch.sqrt(var + 1e-10)
            g = self.parametrizations.weight.original0
            g.copy_(g * scale.reshape(g.shape))
            self.bias.copy_((self.bias - mean) * scale)
        return (out - mean[:, None, None]) * scale[:, None, None]


class _ConcatEluInputConv(DataInitMixin, nn.Conv2d):
    """A convolution that can take its input *before* the gated resnet's nonlinearity.

    ``conv(x, concat_elu_input=True, keep=keep, p=p)`` equals ``conv(dropout(concat_elu(x)))`` (dropout's mask
    ``keep`` from :func:`~pixelzoo.fused.dropout_keep`) but runs the fused
    :func:`~pixelzoo.fused.concat_elu_conv2d`; ``**fused`` passes its ``memory_format`` and ``recompute``.
    Subclasses set ``causal_pad`` (the zero padding, F.pad order) or leave it out for none.
    """

    def forward(self, x: torch.Tensor, *, concat_elu_input: bool = False, keep: torch.Tensor | None = None,
                p: float = 0.0, **fused) -> torch.Tensor:
        pad = getattr(self, "causal_pad", (0, 0, 0, 0))
        if concat_elu_input:
            out = concat_elu_conv2d(x, self.weight, self.bias, pad, self.stride, self.dilation, keep, p, **fused)
        elif keep is not None or fused:
            raise ValueError("keep=, memory_format= and recompute= apply to the fused concat_elu input only; "
                             "pass concat_elu_input=True")
        else:
            out = super().forward(F.pad(x, pad) if any(pad) else x)
        return self._data_init(out)


def _weight_normed(module: nn.Module, dim: int, init_scale: float) -> nn.Module:
    # Reference init: V ~ N(0, 0.05), g = 1, b = 0 (data-dependent init then rescales g and b).
    nn.init.normal_(module.weight, 0.0, 0.05)
    nn.init.zeros_(module.bias)
    weight_norm(module, dim=dim)
    with torch.no_grad():
        module.parametrizations.weight.original0.fill_(1.0)
    module.init_scale = init_scale
    return module


class DownShiftedConv2d(_ConcatEluInputConv):
    """Convolution whose output (i, j) sees input rows ``i-(kh-1)d .. i`` and columns ``j ± (kw-1)/2·d``.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: ``(kh, kw)`` with odd ``kw`` (default the reference's (2, 3)).
        stride: 1, or 2 to halve H and W (H and W even).
        dilation: dilation of the kernel (the causal padding scales with it).
        init_scale: target std of the pre-activations under data-dependent init.

    Shape:
        (B, in, H, W) -> (B, out, H / stride, W / stride)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int] = (2, 3),
                 stride: int = 1, dilation: int = 1, init_scale: float = 1.0) -> None:
        kh, kw = kernel_size
        if kw % 2 != 1:
            raise ValueError(f"a down-shifted convolution needs an odd kernel width, got {kw}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.causal_pad = ((kw - 1) // 2 * dilation, (kw - 1) // 2 * dilation, (kh - 1) * dilation, 0)
        _weight_normed(self, 0, init_scale)


class DownRightShiftedConv2d(_ConcatEluInputConv):
    """Convolution whose output (i, j) sees rows ``i-(kh-1)d .. i`` and columns ``j-(kw-1)d .. j``.

    Shape:
        (B, in, H, W) -> (B, out, H / stride, W / stride)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int] = (2, 2),
                 stride: int = 1, dilation: int = 1, init_scale: float = 1.0) -> None:
        kh, kw = kernel_size
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation)
        self.causal_pad = ((kw - 1) * dilation, 0, (kh - 1) * dilation, 0)
        _weight_normed(self, 0, init_scale)


class _CroppedConvTranspose2d(DataInitMixin, nn.ConvTranspose2d):
    """Stride-s transposed convolution cropped back to exactly ``s·H x s·W`` (TF's VALID output, cropped)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], stride: int,
                 init_scale: float) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, output_padding=stride - 1)
        _weight_normed(self, 1, init_scale)  # the weight is (in, out, kh, kw): output channels on dim 1

    def _left_crop(self) -> int:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride[0]
        H, W = x.shape[-2:]
        out = super().forward(x)  # (B, out, s(H-1) + kh + s - 1, s(W-1) + kw + s - 1)
        left = self._left_crop()
        return self._data_init(out[..., : s * H, left : left + s * W])


class DownShiftedConvTranspose2d(_CroppedConvTranspose2d):
    """Upsampling by ``stride`` that stays causal: output row r sees input rows ``≤ r / stride``.

    Shape:
        (B, in, H, W) -> (B, out, stride·H, stride·W)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int] = (2, 3),
                 stride: int = 2, init_scale: float = 1.0) -> None:
        if kernel_size[1] % 2 != 1:
            raise ValueError(f"a down-shifted transposed convolution needs an odd kernel width, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, stride, init_scale)

    def _left_crop(self) -> int:
        return (self.kernel_size[1] - 1) // 2


class DownRightShiftedConvTranspose2d(_CroppedConvTranspose2d):
    """Upsampling by ``stride``; output (r, c) sees input rows ``≤ r / stride`` and columns ``≤ c / stride``.

    Shape:
        (B, in, H, W) -> (B, out, stride·H, stride·W)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int] = (2, 2),
                 stride: int = 2, init_scale: float = 1.0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, init_scale)

    def _left_crop(self) -> int:
        return 0


class NIN(_ConcatEluInputConv):
    """Weight-normed 1x1 convolution ("network in network"; the reference's ``nin`` dense layer).

    Shape:
        (B, in, H, W) -> (B, out, H, W)
    """

    def __init__(self, in_channels: int, out_channels: int, init_scale: float = 1.0) -> None:
        super().__init__(in_channels, out_channels, 1)
        _weight_normed(self, 0, init_scale)


class GatedResnet(nn.Module):
    """The reference ``gated_resnet``: ``x + a · σ(b)`` with ``[a, b] = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(aux)))))``.

    Args:
        channels: F, the channels of ``x`` and of the output.
        conv: ``"down"`` (down-shifted, kernel (2, 3)) or ``"down_right"`` (kernel (2, 2)), or a kernel
            ``(kh, kw)`` paired with the kind, e.g. ``("down", (1, 1))`` for a 1x1 block.
        aux_channels: channels of the optional auxiliary input ``a`` (0: none).
        num_classes: size of the conditioning vector; > 0 adds a class-dependent bias to the second
            convolution (``cond @ W``, W ~ N(0, 0.05), shape (num_classes, 2F)).
        dropout: elementwise dropout probability after the first convolution's nonlinearity.
        dilation: dilation of both convolutions.

    Attributes:
        checkpointing: when ``True`` (set by a backbone's ``checkpointing=True``), training-mode forwards
            with gradients keep only the block's inputs and recompute the rest in the backward pass
            (activation checkpointing: less memory, about one more forward pass of time).
        memory_format: layout of the convolutions' 2F-channel inputs (and so of their outputs);
            ``torch.channels_last`` (default, the faster on CPU and GPU) or ``torch.contiguous_format``.
        recompute: keep each convolution's F-channel input for the backward pass and rebuild its
            2F-channel activation there (less memory), instead of keeping the activation (less time).

    Shape:
        x: (B, F, H, W); a: (B, aux_channels, H, W); cond: (B, num_classes) -> (B, F, H, W)
    """

    checkpointing: bool = False
    memory_format: torch.memory_format = torch.channels_last
    recompute: bool = False

    def __init__(self, channels: int, conv: str | tuple = "down", aux_channels: int = 0, num_classes: int = 0,
                 dropout: float = 0.5, dilation: int = 1) -> None:
        super().__init__()
        kind, kernel = (conv, None) if isinstance(conv, str) else conv
        conv_cls = {"down": DownShiftedConv2d, "down_right": DownRightShiftedConv2d}.get(kind)
        if conv_cls is None:
            raise ValueError(f"conv must be 'down' or 'down_right', got {kind!r}")
        kernel = kernel or ((2, 3) if kind == "down" else (2, 2))
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.conv_in = conv_cls(2 * channels, channels, kernel, dilation=dilation)
        self.nin_aux = NIN(2 * aux_channels, channels) if aux_channels else None
        self.dropout = nn.Dropout(dropout)
        # init_scale 0.1: each block starts close to the identity (reference).
        self.conv_out = conv_cls(2 * channels, 2 * channels, kernel, dilation=dilation, init_scale=0.1)
        self.cond_bias = None
        if num_classes:
            self.cond_bias = nn.Parameter(torch.randn(num_classes, 2 * channels) * 0.05)
        self.map_proj = None

    def enable_spatial_conditioning(self, channels: int) -> None:
        """Add the spatial term: ``resize(map) · P`` with P (channels, 2F) added to the gate input."""
        self.map_proj = nn.Parameter(torch.randn(channels, self.conv_out.out_channels) * 0.05)

    def conditioning_terms(self, c2: torch.Tensor, cond) -> torch.Tensor:
        """``c2`` (B, 2F, H, W) plus the class bias and the spatial term this block has."""
        onehot, spatial = split_conditioning(cond)
        if self.cond_bias is not None:
            c2 = c2 + (onehot.to(c2.dtype) @ self.cond_bias.to(c2.dtype))[:, :, None, None]
        if self.map_proj is not None:
            m = spatial.map_at(*c2.shape[-2:]).to(c2.dtype)
            c2 = c2 + torch.einsum("bdhw,dk->bkhw", m, self.map_proj.to(c2.dtype))
        return c2

    def forward(self, x: torch.Tensor, a: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.nin_aux is not None and a is None:
            raise ValueError("this GatedResnet was built with an auxiliary input; pass a=")
        onehot, spatial = split_conditioning(cond)
        if self.cond_bias is not None and onehot is None:
            raise ValueError("this GatedResnet is class-conditional; pass cond=")
        if self.map_proj is not None and spatial is None:
            raise ValueError("this GatedResnet conditions on a spatial map; pass cond=Conditioning(map=...)")
        if self.checkpointing and self.training and torch.is_grad_enabled():
            # Keep only the block's inputs; its activations are recomputed (with the same dropout mask,
            # since checkpoint replays the RNG state) during the backward pass.
            return checkpoint(self._forward, x, a, cond, use_reentrant=False)
        return self._forward(x, a, cond)

    def _forward(self, x: torch.Tensor, a: torch.Tensor | None, cond: torch.Tensor | None) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return self._forward_composite(x, a, cond)
        # Each concat_elu (with the padding and dropout) is fused into the convolution that reads it, and
        # the gate keeps only its input (pixelzoo.fused).
        fused = dict(concat_elu_input=True, memory_format=self.memory_format, recompute=self.recompute)
        # The residual sum takes x's layout: convert once here, and a stream of blocks stays in the buffers'
        # layout instead of converting at every convolution.
        x = x.contiguous(memory_format=self.memory_format)
        c1 = self.conv_in(x, **fused)
        if self.nin_aux is not None:
            c1 = c1 + self.nin_aux(a, **fused)
        keep, p = None, self.dropout.p
        if self.dropout.training and p > 0:
            B, F_, H, W = c1.shape
            keep = dropout_keep((B, 2 * F_, H, W), p, c1.device)
        c2 = self.conditioning_terms(self.conv_out(c1, keep=keep, p=p, **fused), cond)
        return gated_residual(x, c2)

    def _forward_composite(self, x: torch.Tensor, a: torch.Tensor | None, cond: torch.Tensor | None) -> torch.Tensor:
        """The same block from plain ops, for torch.compile: inductor fuses them itself (and cannot trace the
        hand-fused Functions, which write into strided ``out=`` views)."""
        c1 = self.conv_in(concat_elu(x))
        if self.nin_aux is not None:
            c1 = c1 + self.nin_aux(concat_elu(a))
        c2 = self.conditioning_terms(self.conv_out(self.dropout(concat_elu(c1))), cond)
        a_, b_ = c2.chunk(2, dim=1)
        return x + a_ * torch.sigmoid(b_)


@contextlib.contextmanager
def _data_init_mode(model: nn.Module) -> Iterator[None]:
    layers = [m for m in model.modules() if isinstance(m, DataInitMixin)]
    for m in layers:
        m._data_init_pending = True
    try:
        yield
    finally:
        for m in layers:
            m._data_init_pending = False


@torch.no_grad()
def data_dependent_init(model: nn.Module, *args, **kwargs):
    """Run ``model(*args, **kwargs)`` once with data-dependent initialisation of every weight-normed layer.

    Run it once, on the first real batch (the reference uses 16 images), before training; never after
    loading weights. Returns the output of that forward pass.
    """
    with _data_init_mode(model):
        return model(*args, **kwargs)


def count_parameters(model: nn.Module, include_weight_norm_gains: bool = False) -> int:
    """Number of parameters; by default without the weight-norm gains ``g`` (``...original0``)."""
    return sum(p.numel() for n, p in model.named_parameters()
               if include_weight_norm_gains or not n.endswith("parametrizations.weight.original0"))
