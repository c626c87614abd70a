"""Fused training kernels of the gated resnet: fewer passes over the activations and less memory, same math.

Profiling a training step of the plain gated resnet on the CPU (concat_elu by ``cat`` + ``elu``, ``F.pad``,
``nn.Dropout``, ``x + a·σ(b)``) showed, besides the convolutions: ``bernoulli_`` for the dropout mask
(a quarter of the step with dropout 0.5), ``elu`` (its ``expm1`` is evaluated for every one of the 2C
outputs), the copies made by ``cat`` and ``pad``, and four 2C-channel tensors kept per convolution for the
backward pass. This module replaces that chain:

* :func:`concat_elu_conv2d` computes ``conv2d(pad(dropout(concat_elu(x))))``, writing ``concat_elu`` (one
  ``expm1`` per input element) and the zero padding straight into the convolution's input buffer, in
  channels-last layout by default, and folding dropout's ``1 / (1 - p)`` into the weight. It keeps that
  buffer (or, with ``recompute=True``, only ``x``) plus the 1-byte dropout mask for its closed-form backward.
* :func:`gated_residual` computes ``x + a·σ(b)`` for ``[a, b] = c``, keeping only ``c``.
* :func:`dropout_keep` draws the dropout mask from 64-bit draws of the generator (one bit per element at
  p = 0.5, 16 otherwise), several times cheaper than ``bernoulli_`` on the CPU.

With :func:`pixelzoo.compiled_kernels.use_compiled_kernels` on, the elementwise parts of these Functions
(the concat_elu prologue and its gradient, the gate and its gradient) run as single-pass loops compiled by
``torch.compile`` instead of the eager passes below; the convolutions and autograd stay here.

Gradients are checked against autograd of the plain chain and by ``torch.autograd.gradcheck`` in float64
(tests/test_speed_equivalence.py). Under autocast the convolution runs in the autocast dtype, as the
unfused ``F.conv2d`` would, and the gradients come back in the inputs' dtypes.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import compiled_kernels as compiled

__all__ = ["dropout_bits", "keep_threshold", "dropout_keep", "concat_elu_padded", "concat_elu_conv2d",
           "gated_residual"]

Pad = tuple[int, int, int, int]  # (left, right, top, bottom), F.pad's order for the last two dims


def dropout_bits(shape: tuple[int, ...], device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform random int16 values, four per 64-bit draw of ``generator`` (default: the global one).

    A 4-d ``(B, C, H, W)`` shape is filled in (B, H, W, C) order, the layout of the channels-last buffers
    the bits mask (a mask read in its own memory order is several times faster to apply); the values at
    each logical position do not depend on any memory format. ``torch.manual_seed`` and checkpointing's RNG
    replay apply.

    Shape:
        -> ``shape``, dtype int16
    """
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-2**63, None, generator=generator)  # the full 64-bit range
    return _in_nhwc_order(words.view(torch.int16)[:n], shape)


def keep_threshold(p: float) -> int:
    """For p != 0.5, :func:`dropout_keep` keeps an element iff its :func:`dropout_bits` value is below this:
    probability ``1 - p`` rounded to a multiple of 2**-16 (exact for p = 0.25, 0.125, ...)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return round((1.0 - p) * 2**16) - 2**15


def dropout_keep(shape: tuple[int, ...], p: float, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Dropout's keep mask: uint8, 1 where an element is kept (probability ``1 - p``), 0 where it is dropped.

    p = 0.5 (the paper's) takes one random bit per element, 64 elements per 64-bit draw of ``generator``:
    the CPU generator is serial, and drawing 16 bits per element cost a few percent of a training step.
    Other p compare 16 random bits per element (:func:`dropout_bits`) with :func:`keep_threshold`. A 4-d
    ``(B, C, H, W)`` shape is filled in (B, H, W, C) order, like :func:`dropout_bits`; ``torch.manual_seed``
    and checkpointing's RNG replay apply.

    Shape:
        -> ``shape``, dtype uint8
    """
    threshold = keep_threshold(p)  # validates p
    if p == 0.0:
        return torch.ones(shape, dtype=torch.uint8, device=device)
    if p != 0.5:
        return torch.lt(dropout_bits(shape, device, generator), threshold).view(torch.uint8)
    n = math.prod(shape)
    words = torch.empty((n + 63) // 64, dtype=torch.int64, device=device)
    words.random_(-2**63, None, generator=generator)
    bit_values = torch.tensor([1 << i for i in range(8)], dtype=torch.uint8, device=device)
    # byte j's bit i decides element 8j + i
    keep = torch.bitwise_and(words.view(torch.uint8)[:, None], bit_values).clamp_max_(1)
    return _in_nhwc_order(keep.view(-1)[:n], shape)


def _in_nhwc_order(flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 4:
        B, C, H, W = shape
        return flat.view(B, H, W, C).permute(0, 3, 1, 2)
    return flat.view(shape)


def concat_elu_padded(x: torch.Tensor, pad: Pad = (0, 0, 0, 0), keep: torch.Tensor | None = None,
                      memory_format: torch.memory_format = torch.channels_last) -> torch.Tensor:
    """``F.pad(concat_elu(x) * keep, pad)`` in one new buffer; no autograd.

    ``keep`` (:func:`dropout_keep`, (B, 2C, H, W), 0/1) zeroes the dropped elements; the kept ones are *not*
    rescaled by ``1 / (1 - p)`` (:func:`concat_elu_conv2d` folds that into the weight).

    Shape:
        x: (B, C, H, W) -> (B, 2C, H + top + bottom, W + left + right)
    """
    B, C, H, W = x.shape
    left, right, top, bottom = pad
    x = x.contiguous(memory_format=memory_format)  # elementwise ops across layouts are several times slower
    shape = (B, 2 * C, H + top + bottom, W + left + right)
    if memory_format == torch.channels_last:
        # Only the border needs zeros: rows and columns of the (B, H, W, 2C) view, contiguous runs there.
        buf = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=memory_format)
        nhwc = buf.permute(0, 2, 3, 1)
        for rows, cols in [(slice(0, top), slice(None)), (slice(top + H, None), slice(None)),
                           (slice(top, top + H), slice(0, left)), (slice(top, top + H), slice(left + W, None))]:
            nhwc[:, rows, cols].zero_()
    else:  # one memset beats zeroing the strided border columns of an NCHW buffer
        buf = torch.zeros(shape, dtype=x.dtype, device=x.device)
    if _compiled_for(memory_format):
        compiled.concat_elu_into(buf, x, keep, top, left)
        return buf
    inner = buf[:, :, top:top + H, left:left + W]
    # With m = expm1(-|x|): elu(x) = max(x, m) and elu(-x) = max(-x, m) (expm1(v) >= v, with equality only
    # at 0): one expm1 per element of x instead of one per output (torch's elu may differ in the last bit).
    m = torch.copysign(x, -1.0).expm1_()
    torch.maximum(x, m, out=inner[:, :C])
    torch.neg(x, out=inner[:, C:])
    torch.maximum(inner[:, C:], m, out=inner[:, C:])
    if keep is not None:
        inner.mul_(keep)
    return buf


class _ConcatEluConv2d(torch.autograd.Function):
    """``conv2d(concat_elu_padded(x, pad, keep), weight / (1 - p), bias, stride, dilation)``."""

    @staticmethod
    def forward(ctx, x, weight, bias, keep, p, pad, stride, dilation, memory_format, recompute):
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        with torch.autocast(device, enabled=False):
            buf = concat_elu_padded(x.to(dtype), pad, keep, memory_format)
            out = F.conv2d(buf, _scaled(weight.to(dtype), p), None if bias is None else bias.to(dtype), stride, 0,
                           dilation)
        ctx.save_for_backward(x if recompute else buf, weight, keep)
        ctx.conf = (dtype, bias is not None, p, pad, stride, dilation, memory_format, recompute, x.shape, x.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        saved, weight, keep = ctx.saved_tensors
        dtype, has_bias, p, pad, stride, dilation, memory_format, recompute, x_shape, x_dtype = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        buf = concat_elu_padded(saved.to(dtype), pad, keep, memory_format) if recompute else saved
        g_buf, g_w, g_b = torch.ops.aten.convolution_backward(
            grad.to(dtype), buf, _scaled(weight.to(dtype), p), [weight.shape[0]] if has_bias else None,
            list(stride), [0, 0], list(dilation), False, [0, 0], 1, [need_x, need_w, need_b and has_bias])
        g_x = None
        if need_x:
            B, C, H, W = x_shape
            left, _, top, _ = pad
            if _compiled_for(memory_format):
                g_x = compiled.concat_elu_input_grad(g_buf, buf, keep, top, left, H, W).to(x_dtype)
            else:
                window = (slice(None), slice(None), slice(top, top + H), slice(left, left + W))
                # d elu(v)/dv from the output e = elu(v): 1 for e > 0, e + 1 otherwise (torch's elu_backward
                # with is_result=True); dropped elements get no gradient. Taken over the whole padded buffer,
                # then windowed: on the windows themselves elu_backward first copies them.
                g = torch.ops.aten.elu_backward(g_buf, 1.0, 1.0, 1.0, True, buf)[window]
                if keep is not None:
                    g.mul_(keep)
                g_x = (g[:, :C] - g[:, C:]).to(x_dtype)
        return (g_x, *_weight_grads(g_w, g_b, has_bias, p, weight), None, None, None, None, None, None, None)


def _compiled_for(memory_format: torch.memory_format) -> bool:
    """Whether the concat_elu kernels of :mod:`pixelzoo.compiled_kernels` serve this buffer layout now."""
    return memory_format == torch.channels_last and compiled.compiled_kernels_enabled()


def _weight_grads(g_w, g_b, has_bias: bool, p: float, weight: torch.Tensor):
    if g_w is not None:
        g_w = _scaled(g_w, p).to(weight.dtype)  # the convolution saw weight / (1 - p)
    g_b = None if g_b is None or not has_bias else g_b.to(weight.dtype)
    return g_w, g_b


def _scaled(w: torch.Tensor, p: float) -> torch.Tensor:
    return w if p == 0.0 else w * (1.0 / (1.0 - p))


def concat_elu_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pad: Pad = (0, 0, 0, 0),
                      stride: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
                      keep: torch.Tensor | None = None, p: float = 0.0,
                      memory_format: torch.memory_format = torch.channels_last, recompute: bool = False
                      ) -> torch.Tensor:
    """``F.conv2d(F.pad(dropout(concat_elu(x)), pad), weight, bias, stride, dilation=dilation)``, fused.

    Args:
        x: the input before the nonlinearity.
        weight, bias: of a convolution from 2C channels.
        pad: zero padding ``(left, right, top, bottom)`` (a shifted convolution's ``causal_pad``).
        keep: :func:`dropout_keep` mask (B, 2C, H, W) of dropout with probability ``p``, or None.
        p: the dropout probability (kept values are scaled by ``1 / (1 - p)``).
        memory_format: layout of the convolution's input buffer, and so of its output. channels_last (the
            default) is the faster one with oneDNN on the CPU (the padded buffer's windows stay nearly
            contiguous, 1x1 convolutions are plain matmuls) and with tensor cores on the GPU.
        recompute: keep only ``x`` (C channels) for the backward pass and rebuild the 2C-channel buffer
            there (less memory), instead of keeping the buffer (less time).

    Shape:
        x: (B, C, H, W) -> (B, out, (H + top + bottom - d(kh - 1) - 1) / s + 1, ...)
    """
    if keep is None:
        p = 0.0
    return _ConcatEluConv2d.apply(x, weight, bias, keep, float(p), tuple(pad), tuple(stride), tuple(dilation),
                                  memory_format, recompute)


class _GatedResidual(torch.autograd.Function):
    """``x + a · σ(b)`` for ``[a, b] = c.chunk(2, 1)``; saves c only (σ(b) is recomputed)."""

    @staticmethod
    def forward(ctx, x, c):
        ctx.save_for_backward(c)
        if compiled.compiled_kernels_enabled():
            return compiled.gated_residual(x, c)
        a, b = c.chunk(2, dim=1)
        return torch.addcmul(x, a, torch.sigmoid(b))  # two passes; under autocast it promotes like x + a σ(b)

    @staticmethod
    def backward(ctx, grad):
        (c,) = ctx.saved_tensors
        if compiled.compiled_kernels_enabled():
            return grad if ctx.needs_input_grad[0] else None, compiled.gated_residual_grad(grad, c)
        a, b = c.chunk(2, dim=1)
        F_ = a.shape[1]
        s = torch.sigmoid(b)
        g_c = torch.empty_like(c)
        g_a = torch.mul(grad, s, out=g_c[:, :F_])
        # d/db [a σ(b)] = a σ(b) (1 - σ(b)): with t = grad · a σ(b), that is t - t σ(b).
        t = g_a * a
        torch.addcmul(t, t, s, value=-1.0, out=g_c[:, F_:])
        return grad if ctx.needs_input_grad[0] else None, g_c


def gated_residual(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The gated resnet's output ``x + a · σ(b)`` with ``[a, b] = c.chunk(2, dim=1)``, saving only ``c``.

    Shape:
        x: (B, F, H, W); c: (B, 2F, H, W) -> (B, F, H, W)
    """
    return _GatedResidual.apply(x, c)
