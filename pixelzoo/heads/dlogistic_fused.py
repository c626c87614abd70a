"""The discretized logistic mixture NLL as one autograd node with a closed-form gradient.

:meth:`DiscretizedLogisticMixture.log_prob_components` written with plain tensor ops leaves about a dozen
(B, C, M, H, W) tensors to autograd (centred values, the two scaled bin edges, three softplus/log1mexp
branches, masks, their sums). :func:`dlogistic_nll` computes the same value and, in the same pass, the two
per-element partial derivatives the gradient needs, and keeps only those: ``∂ log p / ∂ centred`` and
``∂ log p / ∂ log_scale``, plus the (B, M, H, W) component log-probabilities. Its backward pass is a few
products with the mixture responsibilities.

Math, per sub-pixel, with ``u = x - μ'`` (μ' the coupled mean), ``s = exp(-log_scale)``, half bin ``h``,
``p = s·(u + h)``, ``n = s·(u - h)``, ``d = 2h·s``::

    log P = [k < top]·log σ(p) + [k > 0]·log(1 - σ(n)) + [0 < k < top]·log(1 - e^{-d})
    ∂ log P / ∂u         = s·([k < top]·σ(-p) - [k > 0]·σ(n))
    ∂ log P / ∂log_scale = [k > 0]·σ(n)·n - [k < top]·σ(-p)·p - [0 < k < top]·d / expm1(d)

and ``nll = -logsumexp_m(Σ_c log P_cm + log_softmax(logits)_m)``, so ``∂ nll / ∂(·)_cm`` is ``-w_m`` times
the above, ``w`` the posterior responsibilities. The forward value uses the same expressions as
``log_prob_components``; tests check value and gradient against a float64 brute force and gradcheck.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F

from .base import levels_to_unit, log1mexp

__all__ = ["DLogisticSpec", "dlogistic_nll"]


class DLogisticSpec(NamedTuple):
    """What the fused NLL needs to know about a :class:`~pixelzoo.heads.dlogistic.DiscretizedLogisticMixture`.

    ``unpack(params) -> (logits, means, log_scales, coeffs)`` must return views of ``params`` when
    ``params`` is contiguous (the backward pass writes the gradient through them).
    """

    bits: int
    log_scale_min: float
    log_scale_max: float
    pairs: Sequence[tuple[int, int]]  # coupling slot q -> (channel c, earlier channel j)
    unpack: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]


class _DLogisticNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, params: torch.Tensor, x: torch.Tensor, spec: DLogisticSpec) -> torch.Tensor:
        logits, means, raw_log_s, raw_coeffs = spec.unpack(params)
        top = 2**spec.bits - 1
        half_bin = 1.0 / top
        log_s = raw_log_s.clamp(spec.log_scale_min, spec.log_scale_max)
        # Like torch.clamp's backward, the gradient passes strictly inside (min, max) only (0 at the bounds and
        # for NaN).
        inside = ((raw_log_s > spec.log_scale_min) & (raw_log_s < spec.log_scale_max)).to(params.dtype)
        inv_s = log_s.neg_().exp_()
        xu = levels_to_unit(x, spec.bits, params.dtype)
        centred = xu[:, :, None] - means  # (B, C, M, H, W)
        if spec.pairs:
            coeffs = torch.tanh(raw_coeffs)
            for q, (c, j) in enumerate(spec.pairs):
                centred[:, c].addcmul_(coeffs[:, q], xu[:, j, None], value=-1.0)
        plus = (centred + half_bin).mul_(inv_s)
        minus = centred.sub_(half_bin).mul_(inv_s)
        del centred  # now minus
        # Branch masks as 0/1 factors (B, C, 1, H, W): multiplying is several times faster than masked_fill_.
        k = x[:, :, None]
        not_top, not_bottom = (k < top).to(params.dtype), (k > 0).to(params.dtype)
        interior = not_top * not_bottom
        width = inv_s.mul(2.0 * half_bin)  # d

        log_p = F.softplus(-plus).mul_(not_top).neg_()
        log_p.addcmul_(F.softplus(minus), not_bottom, value=-1.0)
        log_p.addcmul_(log1mexp(width), interior)
        comp = log_p.sum(dim=1).add_(F.log_softmax(logits, dim=1))  # (B, M, H, W)
        lse = torch.logsumexp(comp, dim=1)

        # Partial derivatives of log P, computed now so that only they are kept for the backward pass.
        sig_plus = torch.sigmoid(-plus).mul_(not_top)  # d log σ(p) / dp
        sig_minus = torch.sigmoid(minus).mul_(not_bottom)  # -d log(1 - σ(n)) / dn
        d_log_s = sig_minus * minus
        d_log_s.sub_(sig_plus * plus)
        d_log_s.addcmul_(width.div_(torch.expm1(width)), interior, value=-1.0).mul_(inside)
        d_centred = sig_plus.sub_(sig_minus).mul_(inv_s)

        ctx.spec = spec
        ctx.save_for_backward(params, x, d_centred, d_log_s, comp, lse)
        return lse.neg()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        params, x, d_centred, d_log_s, comp, lse = ctx.saved_tensors
        spec: DLogisticSpec = ctx.spec
        if not ctx.needs_input_grad[0]:
            return None, None, None
        # d nll / d comp_m = -w_m (the posterior responsibility of component m).
        gw = torch.exp(comp - lse[:, None]).mul_(grad[:, None])  # (B, M, H, W)
        g_params = torch.empty(params.shape, dtype=params.dtype, device=params.device)  # contiguous: views
        g_logits, g_means, g_log_s, g_coeffs = spec.unpack(g_params)
        logits = spec.unpack(params)[0]
        # d nll / d logits_j = π_j Σ_m gw_m - gw_j
        torch.mul(torch.softmax(logits, dim=1), gw.sum(dim=1, keepdim=True), out=g_logits)
        g_logits.sub_(gw)
        torch.mul(d_centred, gw[:, None], out=g_means)  # d centred / d mean = -1
        torch.mul(d_log_s, gw[:, None], out=g_log_s).neg_()
        if spec.pairs:
            raw_coeffs = spec.unpack(params)[3]
            xu = levels_to_unit(x, spec.bits, params.dtype)
            # d centred_c / d raw_q = -(1 - tanh²)·x_j for slot q = (c, j)
            slope = 1.0 - torch.tanh(raw_coeffs).square_()
            for q, (c, j) in enumerate(spec.pairs):
                torch.mul(g_means[:, c], slope[:, q], out=g_coeffs[:, q]).mul_(xu[:, j, None])
        return g_params, None, None


def dlogistic_nll(params: torch.Tensor, x: torch.Tensor, spec: DLogisticSpec) -> torch.Tensor:
    """Negative log-likelihood in nats per pixel (channels summed) of integer levels ``x``.

    Equals ``-logsumexp(log_prob_components(params, x), dim=1)`` of the dlogistic head, with a hand-written
    backward that keeps two (B, C, M, H, W) tensors instead of the dozen autograd would keep.

    Shape:
        params: (B, P, H, W) float32/64; x: (B, C, H, W) integer levels -> (B, H, W)
    """
    # Its (B, C, M, H, W) views of a channels-last ``params`` (a convolution's output) have a 1-element
    # innermost stride only over M: every pass then runs 1.6x slower than on contiguous views.
    return _DLogisticNLL.apply(params.contiguous(), x, spec)
