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

from ..layers import DownShiftedConvTranspose2d, GatedResnet, split_conditioning
from .planes import Plane

__all__ = ["CachedConv", "CachedConvTranspose", "CachedGatedResnet"]


def _frozen(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


class CachedConv:
    """A shifted (or 1x1) convolution evaluated on output regions, as a matmul over gathered taps.

    Works for :class:`~pixelzoo.layers.DownShiftedConv2d`, :class:`~pixelzoo.layers.DownRightShiftedConv2d`
    (any kernel, stride, dilation) and :class:`~pixelzoo.layers.NIN` / any ``nn.Conv2d`` without padding.

    Shape:
        region(src, r0, r1, c0, c1): src holds (B, H, W, in) -> (B, r1 - r0, c1 - c0, out)
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        with torch.no_grad():
            weight, self.bias = _frozen(conv.weight), _frozen(conv.bias)
        self.out_channels, _, kh, kw = weight.shape
        # (out, in, kh, kw) -> (out, kh * kw * in): the order in which taps are gathered below.
        self.matrix = weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1).contiguous()
        self.left, _, self.top, _ = getattr(conv, "causal_pad", (0, 0, 0, 0))
        self.stride, self.dilation, self.kernel = tuple(conv.stride), tuple(conv.dilation), (kh, kw)

    def input_window(self, r0: int, r1: int, c0: int, c1: int) -> tuple[int, int, int, int]:
        """Input rows and columns ``(r0, r1, c0, c1)`` that output region ``[r0, r1) x [c0, c1)`` reads."""
        (sh, sw), (dh, dw), (kh, kw) = self.stride, self.dilation, self.kernel
        return (r0 * sh - self.top, (r1 - 1) * sh - self.top + (kh - 1) * dh + 1,
                c0 * sw - self.left, (c1 - 1) * sw - self.left + (kw - 1) * dw + 1)

    def region(self, src: Plane, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """The output on ``[r0, r1) x [c0, c1)``, reading ``src`` (the plane of this layer's input)."""
        return self(src.window(*self.input_window(r0, r1, c0, c1)), r1 - r0, c1 - c0)

    def __call__(self, window: torch.Tensor, rows: int = 1, cols: int = 1) -> torch.Tensor:
        """The ``rows x cols`` outputs of an already padded input window (B, h, w, in)."""
        (sh, sw), (dh, dw), (kh, kw) = self.stride, self.dilation, self.kernel
        B = window.shape[0]
        if rows == 1 and cols == 1:  # one position: the window's taps are the matmul's row
            taps = (window if dh == dw == 1 else window[:, ::dh, ::dw]).reshape(B, 1, 1, self.matrix.shape[1])
        else:
            taps = torch.cat([window[:, a * dh:a * dh + (rows - 1) * sh + 1:sh, b * dw:b * dw + (cols - 1) * sw + 1:sw]
                              for a in range(kh) for b in range(kw)], dim=-1)
        return F.linear(taps, self.matrix, self.bias)


class CachedConvTranspose:
    """A causal stride-s transposed convolution (:class:`~pixelzoo.layers.DownShiftedConvTranspose2d`,
    :class:`~pixelzoo.layers.DownRightShiftedConvTranspose2d`) evaluated on output regions.

    Output ``(r, c)`` of the cropped layer is ``bias + Σ input[I, J] · w[r - s·I, c + left - s·J]``; a
    region adds, for each kernel tap, one matmul of the input positions that tap carries into it.

    Shape:
        region(src, r0, r1, c0, c1): src holds (B, H, W, in) -> (B, r1 - r0, c1 - c0, out), output
        coordinates on the (s·H, s·W) grid
    """

    def __init__(self, conv: nn.ConvTranspose2d) -> None:
        with torch.no_grad():
            weight, self.bias = _frozen(conv.weight), _frozen(conv.bias)
        _, self.out_channels, kh, kw = weight.shape
        self.taps = [[weight[:, :, a, b].contiguous() for b in range(kw)] for a in range(kh)]  # (in, out) each
        self.stride, self.kernel = tuple(conv.stride), (kh, kw)
        # The layer crops its output columns by (kw - 1) // 2 when it is down-shifted (centred), else 0.
        self.left = (kw - 1) // 2 if isinstance(conv, DownShiftedConvTranspose2d) else 0

    def region(self, src: Plane, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        (sh, sw), (kh, kw) = self.stride, self.kernel
        out = self.bias.expand(src.batch, r1 - r0, c1 - c0, self.out_channels).clone()
        for a in range(kh):
            first_r = r0 + (a - r0) % sh  # the first output row that tap row a reaches: r = s·I + a
            if first_r >= r1:
                continue
            i0, ni = (first_r - a) // sh, (r1 - 1 - first_r) // sh + 1
            for b in range(kw):
                first_c = c0 + (b - self.left - c0) % sw  # c + left = s·J + b
                if first_c >= c1:
                    continue
                j0, nj = (first_c + self.left - b) // sw, (c1 - 1 - first_c) // sw + 1
                out[:, first_r - r0::sh, first_c - c0::sw] += src.window(i0, i0 + ni, j0, j0 + nj) @ self.taps[a][b]
        return out


class CachedGatedResnet:
    """A :class:`~pixelzoo.layers.GatedResnet` (eval mode: no dropout) on planes, with a cache for its hidden layer.

    Args:
        block: the module.
        x: the plane of its input; aux: the planes concatenated into its auxiliary input (all three kinds
            of plane must keep activations: the block reads their concat_elu).
        make_plane: ``make_plane(channels, values=True) -> Plane`` at this block's resolution, keeping
            activations.
        cond: (B, num_classes) one-hot conditioning, a :class:`~pixelzoo.layers.Conditioning`, or None.

    Attributes:
        out: the plane of block outputs; ``hidden``: the plane of first-convolution outputs (the
            second convolution reads them around each position).

    It is a :class:`~pixelzoo.cached.steps.Step`: ``run`` fills ``out`` on a region.

    Shape:
        run(r0, r1, c0, c1): x holds (B, H, W, F); writes ``out`` (B, H, W, F) on the region.
    """

    def __init__(self, block: GatedResnet, x: Plane, aux: Sequence[Plane], make_plane: Callable[..., Plane],
                 cond: torch.Tensor | None) -> None:
        channels = block.conv_in.out_channels
        self.x, self.aux = x, list(aux)
        self.conv_in, self.conv_out = CachedConv(block.conv_in), CachedConv(block.conv_out)
        self.aux_matrices: list[torch.Tensor] = []
        if block.nin_aux is None and self.aux:
            raise ValueError(f"{len(self.aux)} aux planes given to a GatedResnet without an auxiliary input")
        if block.nin_aux is not None:
            nin = CachedConv(block.nin_aux)
            # nin sees concat_elu(cat(aux)) = [a_1 .. a_k, -a_1 .. -a_k]; split its columns per aux plane,
            # each reading that plane's cached [a_p, -a_p].
            sizes = [p.channels for p in self.aux]
            if sum(sizes) * 2 != nin.matrix.shape[1]:
                raise ValueError(f"aux planes with {sizes} channels do not match {block.nin_aux}")
            total, start = sum(sizes), 0
            for size in sizes:
                self.aux_matrices.append(torch.cat([nin.matrix[:, start:start + size],
                                                    nin.matrix[:, total + start:total + start + size]], dim=1))
                start += size
            self.aux_bias = nin.bias
        onehot, spatial = split_conditioning(cond)
        self.cond_term = self.map_term = None
        if block.cond_bias is not None:
            if onehot is None:
                raise ValueError("this GatedResnet is class-conditional; pass cond=")
            with torch.no_grad():
                self.cond_term = (onehot @ block.cond_bias.to(onehot.dtype))[:, None, None, :]
        self.hidden = make_plane(channels, values=False)  # only its concat_elu is ever read
        self.out = make_plane(channels)
        if block.map_proj is not None:
            if spatial is None:
                raise ValueError("this GatedResnet conditions on a spatial map; pass cond=Conditioning(map=...)")
            with torch.no_grad():  # the whole (B, H, W, 2F) term at this resolution, sliced per region
                m = spatial.map_at(self.out.height, self.out.width)
                self.map_term = torch.einsum("bdhw,dk->bhwk", m.to(block.map_proj.dtype), block.map_proj)

    def run(self, r0: int, r1: int, c0: int, c1: int) -> None:
        hidden = self.conv_in.region(self.x.activated, r0, r1, c0, c1)
        for k, (plane, matrix) in enumerate(zip(self.aux, self.aux_matrices)):
            bias = self.aux_bias if k == 0 else None
            hidden = hidden + F.linear(plane.activated.window(r0, r1, c0, c1), matrix, bias)
        self.hidden.write(r0, c0, hidden)
        gate_in = self.conv_out.region(self.hidden.activated, r0, r1, c0, c1)
        if self.cond_term is not None:
            gate_in = gate_in + self.cond_term
        if self.map_term is not None:
            gate_in = gate_in + self.map_term[:, r0:r1, c0:c1]
        a, b = gate_in.chunk(2, dim=-1)
        self.out.write(r0, c0, self.x.window(r0, r1, c0, c1) + a * torch.sigmoid(b))
