"""Cached counterparts of the causal layers: compute a layer's output on any rectangle of positions.

Each class reads a layer's weights once (through its public ``weight``, ``bias``, ``causal_pad``,
``stride`` and ``dilation``) and evaluates the layer on a region ``rows [r0, r1) x cols [c0, c1)`` of
its output, reading only the input window that region needs from a :class:`~pixelzoo.cached.planes.Plane`.
A region can be one pixel (the horizontal stream during sampling), one row (the vertical stream), or a
block of rows (priming the caches for completion). Every region gives the same numbers as the ordinary
forward pass at those positions, up to float rounding (the sums run in another order).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import DownShiftedConvTranspose2d, GatedResnet, concat_elu
from .planes import Plane, zero_window

__all__ = ["CachedConv", "CachedConvTranspose", "CachedGatedResnet"]


def _frozen(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class CachedConv:
    """A shifted (or 1x1) convolution evaluated on output regions.

    Works for :class:`~pixelzoo.layers.DownShiftedConv2d`, :class:`~pixelzoo.layers.DownRightShiftedConv2d`
    (any kernel, stride, dilation) and :class:`~pixelzoo.layers.NIN` / any ``nn.Conv2d`` without padding.

    Shape:
        region(src, r0, r1, c0, c1): src holds (B, in, H, W) -> (B, out, r1 - r0, c1 - c0)
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        with torch.no_grad():
            self.weight, self.bias = _frozen(conv.weight), _frozen(conv.bias)
        self.left, _, self.top, _ = getattr(conv, "causal_pad", (0, 0, 0, 0))
        self.stride, self.dilation = tuple(conv.stride), tuple(conv.dilation)
        self.kernel = tuple(self.weight.shape[-2:])

    def input_window(self, r0: int, r1: int, c0: int, c1: int) -> tuple[int, int, int, int]:
        """Input rows and columns ``(r0, r1, c0, c1)`` that output region ``[r0, r1) x [c0, c1)`` reads."""
        (sh, sw), (dh, dw), (kh, kw) = self.stride, self.dilation, self.kernel
        return (r0 * sh - self.top, (r1 - 1) * sh - self.top + (kh - 1) * dh + 1,
                c0 * sw - self.left, (c1 - 1) * sw - self.left + (kw - 1) * dw + 1)

    def region(self, src: Plane, r0: int, r1: int, c0: int, c1: int,
               pre: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """The output on ``[r0, r1) x [c0, c1)``; ``pre`` (zero-preserving, e.g. concat_elu) maps the input first."""
        window = src.window(*self.input_window(r0, r1, c0, c1))
        return self(pre(window) if pre is not None else window)

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        """The convolution of an already padded input window (no padding added)."""
        return F.conv2d(window, self.weight, self.bias, stride=self.stride, dilation=self.dilation)


class CachedConvTranspose:
    """A causal stride-s transposed convolution (:class:`~pixelzoo.layers.DownShiftedConvTranspose2d`,
    :class:`~pixelzoo.layers.DownRightShiftedConvTranspose2d`) evaluated on output regions.

    Output ``(r, c)`` of the cropped layer collects ``input[I, J] · w[r - s·I, c + left - s·J]``; a region
    reads only the input rows and columns whose kernel footprint reaches it.

    Shape:
        region(src, r0, r1, c0, c1): src holds (B, in, H, W) -> (B, out, r1 - r0, c1 - c0), output
        coordinates on the (s·H, s·W) grid
    """

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        with torch.no_grad():
            self.weight, self.bias = _frozen(conv.weight), _frozen(conv.bias)
        self.stride = tuple(conv.stride)
        self.kernel = tuple(self.weight.shape[-2:])
        # The layer crops its output columns by (kw - 1) // 2 when it is down-shifted (centred), else 0.
        self.left = (self.kernel[1] - 1) // 2 if isinstance(conv, DownShiftedConvTranspose2d) else 0

    def region(self, src: Plane, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        (sh, sw), (kh, kw) = self.stride, self.kernel
        i0, i1 = _ceil_div(r0 - kh + 1, sh), (r1 - 1) // sh + 1
        j0, j1 = _ceil_div(c0 + self.left - kw + 1, sw), (c1 - 1 + self.left) // sw + 1
        full = F.conv_transpose2d(src.window(i0, i1, j0, j1), self.weight, stride=self.stride)
        # full row t is output row s·i0 + t; full column u is output column s·j0 - left + u.
        out = zero_window(full, r0 - sh * i0, r1 - sh * i0, c0 + self.left - sw * j0, c1 + self.left - sw * j0)
        return out + self.bias[:, None, None]


class CachedGatedResnet:
    """A :class:`~pixelzoo.layers.GatedResnet` (eval mode: no dropout) with caches for its two convolutions.

    Args:
        block: the module.
        make_plane: ``make_plane(channels) -> Plane`` at this block's resolution.
        cond: (B, num_classes) one-hot conditioning, or None.

    Attributes:
        out: the plane of block outputs; ``hidden``: the plane of first-convolution outputs (the
            second convolution reads them around each position).

    Shape:
        region(x, aux, r0, r1, c0, c1): x holds (B, F, H, W), aux the planes concatenated into the
        auxiliary input; writes ``out`` on the region.
    """

    def __init__(self, block: GatedResnet, make_plane: Callable[[int], Plane], cond: torch.Tensor | None) -> None:
        channels = block.conv_in.out_channels
        self.conv_in, self.conv_out = CachedConv(block.conv_in), CachedConv(block.conv_out)
        self.nin_aux = CachedConv(block.nin_aux) if block.nin_aux is not None else None
        self.cond_term = None
        if block.cond_bias is not None:
            if cond is None:
                raise ValueError("this GatedResnet is class-conditional; pass cond=")
            with torch.no_grad():
                self.cond_term = (cond @ block.cond_bias.to(cond.dtype))[:, :, None, None]
        self.hidden, self.out = make_plane(channels), make_plane(channels)

    def region(self, x: Plane, aux: Sequence[Plane], r0: int, r1: int, c0: int, c1: int) -> None:
        hidden = self.conv_in.region(x, r0, r1, c0, c1, pre=concat_elu)
        if self.nin_aux is not None:
            a = [p.window(r0, r1, c0, c1) for p in aux]
            hidden = hidden + self.nin_aux(concat_elu(a[0] if len(a) == 1 else torch.cat(a, dim=1)))
        self.hidden.write(r0, c0, hidden)
        gate_in = self.conv_out.region(self.hidden, r0, r1, c0, c1, pre=concat_elu)
        if self.cond_term is not None:
            gate_in = gate_in + self.cond_term
        a_, b_ = gate_in.chunk(2, dim=1)
        self.out.write(r0, c0, x.window(r0, r1, c0, c1) + a_ * torch.sigmoid(b_))
