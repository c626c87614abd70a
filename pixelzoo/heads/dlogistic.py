"""Discretized logistic mixture likelihood (PixelCNN++ §2.1-2.2, Salimans et al. 2017, arXiv:1701.05517).

Origin: openai/pixel-cnn ``discretized_mix_logistic_loss`` (parameter layout, coupling, sampler); the
interior bin mass uses the cancellation-free identity of the flax PixelCNN++ example:
``log(σ(b) - σ(a)) = log σ(b) + log(1 - σ(a)) + log1mexp(b - a)``.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange

from ..registry import register_head
from .base import Head, levels_to_unit, log1mexp, uniform, unit_to_levels
from .dlogistic_fused import DLogisticSpec, dlogistic_nll

__all__ = ["DiscretizedLogisticMixture", "coupling_pairs", "unpack_mixture_params", "sub_pixel_terms"]

# Uniform noise for the Gumbel-max indicator and the logistic draw stays inside (1e-5, 1 - 1e-5) so that
# log(-log u) and log(u) - log(1 - u) stay finite (the reference sampler's bounds).
_U_EPS = 1e-5


def coupling_pairs(channels: int) -> list[tuple[int, int]]:
    """Linear-coupling pairs ``(c, j)``, j < c, in slot order: for RGB ``[(G,R), (B,R), (B,G)]`` = α, β, γ."""
    return [(c, j) for c in range(1, channels) for j in range(c)]


def unpack_mixture_params(params: torch.Tensor, channels: int, num_mixtures: int):
    """Split network outputs into mixture logits, means, raw log-scales and raw coupling coefficients.

    Layout (legend: m = mixture component, c = channel, p = part, q = coupling slot):
      * ``params[:, :M]`` are the mixture logits, shared by all channels.
      * RGB (the reference layout, so reference weights import): ``params[:, M:]`` is ``(c p m)`` with
        c = 3 channels and p = (means, log_scales, coeffs); the coefficient block of channel slot q holds
        α (G←R), β (B←R), γ (B←G) for q = 0, 1, 2.
      * other channel counts: ``(c p m)`` with p = (means, log_scales), then ``(q m)`` for the
        ``C(C-1)/2`` coupling slots of :func:`coupling_pairs`. One channel gives the 1-D reference layout
        (logits, means, log_scales).

    Shape:
        params: (B, P, H, W) -> logits (B, M, H, W), means / log_scales (B, C, M, H, W),
        coeffs (B, Q, M, H, W) before tanh
    """
    M = num_mixtures
    logits = params[:, :M]
    if channels == 3:
        means, log_scales, coeffs = rearrange(params[:, M:], "b (c p m) h w -> p b c m h w", c=3, p=3, m=M)
        return logits, means, log_scales, coeffs
    n = 2 * channels * M
    means, log_scales = rearrange(params[:, M:M + n], "b (c p m) h w -> p b c m h w", c=channels, p=2, m=M)
    coeffs = rearrange(params[:, M + n:], "b (q m) h w -> b q m h w", m=M)
    return logits, means, log_scales, coeffs


def sub_pixel_terms(logits: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """Negative log of each sub-pixel's conditional under a mixture whose indicator the channels share.

    With ``L_c = logsumexp_m(log π_m + Σ_{c' <= c} log p_m(x_c' | x_<c'))`` (the log-probability of the first
    c + 1 channels, the mixture marginalised), channel c's term is ``L_{c-1} - L_c`` (``L_{-1} = 0``): the nats
    of ``x_c`` given the earlier channels. The terms sum to ``-L_{C-1}``, the pixel's NLL.

    Shape:
        logits: (B, M, H, W); log_p: (B, C, M, H, W) -> (B, C, H, W)
    """
    joint = torch.logsumexp(F.log_softmax(logits, dim=1)[:, None] + log_p.cumsum(dim=1), dim=2)  # L_c
    return torch.cat([-joint[:, :1], joint[:, :-1] - joint[:, 1:]], dim=1)


@register_head("dlogistic")
class DiscretizedLogisticMixture(Head):
    """Mixture of ``num_mixtures`` logistics discretized onto ``2**bits`` levels, with R→G→B linear coupling.

    Level k lives at ``x = 2k/(2**bits - 1) - 1``; its bin is ``x ± 1/(2**bits - 1)``, with the first and
    last bins extended to ``∓∞``. The mixture indicator is shared by the channels of a pixel; the mean of
    channel c is shifted by ``Σ_j tanh(coeff_cj) · x_j`` over earlier channels j of the same pixel.

    Args:
        channels: sub-pixels per pixel (1 and 3 follow the reference layouts; any C works).
        bits: bit depth, 1..16.
        num_mixtures: mixture components M (the reference code's 10; the paper's "say 5" also works).
        log_scale_min: floor of the log-scale. ``None`` gives the reference's -7 at 8 bits, shifted by
            ``log(255 / (2**bits - 1))`` at other depths so that the narrowest logistic covers the same
            fraction of a bin (higher depths need lower floors; REFERENCE §6).
        log_scale_max: ceiling of the log-scale. Past ``e**20`` a logistic is flat over [-1, 1] at float32
            precision; the ceiling keeps ``exp(-log_scale)`` from underflowing to 0, where the bin mass
            ``log1mexp`` would become -inf.

    Shape:
        params: (B, M + 3CM, H, W) for C = 3 (10M), (B, 3M, H, W) for C = 1, (B, M + 2CM + M·C(C-1)/2, H, W)
        in general; x: (B, C, H, W) integer levels.
    """

    def __init__(self, channels: int = 3, bits: int = 8, num_mixtures: int = 10,
                 log_scale_min: float | None = None, log_scale_max: float = 20.0) -> None:
        super().__init__(channels, bits)
        if not isinstance(num_mixtures, int) or num_mixtures < 1:
            raise ValueError(f"num_mixtures must be a positive int, got {num_mixtures!r}")
        self.num_mixtures = num_mixtures
        if log_scale_min is None:
            log_scale_min = -7.0 + math.log(255.0 / (2**bits - 1))
        if not log_scale_min < log_scale_max:
            raise ValueError(f"log_scale_min ({log_scale_min}) must be below log_scale_max ({log_scale_max})")
        self.log_scale_min = float(log_scale_min)
        self.log_scale_max = float(log_scale_max)

    def num_params(self, channels: int | None = None) -> int:
        C = self.channels if channels is None else channels
        M = self.num_mixtures
        return M + 2 * C * M + M * (C * (C - 1) // 2) if C != 3 else 10 * M

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_mixtures={self.num_mixtures}"

    def _unpack(self, params: torch.Tensor):
        logits, means, log_scales, coeffs = unpack_mixture_params(params, self.channels, self.num_mixtures)
        # The clamp bounds the sharpest and the widest component (see the class docstring).
        log_scales = log_scales.clamp(self.log_scale_min, self.log_scale_max)
        return logits, means, log_scales, torch.tanh(coeffs)

    def _coupled_means(self, means: torch.Tensor, coeffs: torch.Tensor, xu: torch.Tensor) -> torch.Tensor:
        """means (B, C, M, H, W) shifted by the coupling on the observed values xu (B, C, H, W)."""
        shifts = [torch.zeros_like(means[:, 0]) for _ in range(self.channels)]
        for q, (c, j) in enumerate(coupling_pairs(self.channels)):
            shifts[c] = shifts[c] + coeffs[:, q] * xu[:, j, None]
        return means + torch.stack(shifts, dim=1)

    def log_prob_components(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-component joint log-probability of each pixel, mixture weights included.

        Shape:
            params: (B, P, H, W) float32/64; x: (B, C, H, W) integer levels -> (B, M, H, W)
        """
        logits, log_p = self.channel_component_log_probs(params, x)
        return log_p.sum(dim=1) + F.log_softmax(logits, dim=1)

    def channel_component_log_probs(self, params: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixture logits and ``log P_m(x_c | x_<c)`` of every sub-pixel under every component m.

        Shape:
            params: (B, P, H, W) float32/64; x: (B, C, H, W) integer levels -> logits (B, M, H, W),
            log-probabilities (B, C, M, H, W)
        """
        logits, means, log_scales, coeffs = self._unpack(params)
        xu = levels_to_unit(x, self.bits, params.dtype)
        centered = xu[:, :, None] - self._coupled_means(means, coeffs, xu)
        inv_s = torch.exp(-log_scales)
        half_bin = 1.0 / (self.levels - 1)
        plus = inv_s * (centered + half_bin)
        minus = inv_s * (centered - half_bin)
        k = x[:, :, None]
        # log P(bin) = log σ(plus) [unless top bin] + log(1 - σ(minus)) [unless bottom bin]
        #              + log1mexp(plus - minus) [interior bins only]; every branch is finite, so the
        #              gradients of the untaken ones through torch.where are exact zeros, never NaN.
        log_cdf_plus = torch.where(k < self.levels - 1, -F.softplus(-plus), 0.0)
        log_sf_minus = torch.where(k > 0, -F.softplus(minus), 0.0)
        interior = torch.where((k > 0) & (k < self.levels - 1), log1mexp(2.0 * half_bin * inv_s), 0.0)
        return logits, log_cdf_plus + log_sf_minus + interior

    def _nll_map(self, params, x, *, generator):
        logits, log_p = self.channel_component_log_probs(params, x)
        return sub_pixel_terms(logits, log_p)

    def _nll(self, params, x, *, generator):
        if torch.compiler.is_compiling():  # inductor fuses the plain formula itself
            return -torch.logsumexp(self.log_prob_components(params, x), dim=1)
        # The same value as -logsumexp(log_prob_components(params, x)), with a closed-form backward that keeps
        # 2 instead of about 12 (B, C, M, H, W) tensors (pixelzoo/heads/dlogistic_fused.py).
        return dlogistic_nll(params, x, self._fused_spec())

    def _fused_spec(self) -> DLogisticSpec:
        return DLogisticSpec(self.bits, self.log_scale_min, self.log_scale_max, coupling_pairs(self.channels),
                             partial(unpack_mixture_params, channels=self.channels, num_mixtures=self.num_mixtures))

    def _sample(self, params, *, generator, temperature=1.0):
        logits, means, log_scales, coeffs = self._unpack(params)
        if temperature != 1.0:
            # Mixture logits / T and every scale × T, after the log-scale clamp (a clamp applied later would stop
            # the concentration). As T -> 0 a draw goes to the mean of the most probable component, which is
            # the conditional's mode only approximately (the components overlap).
            logits, log_scales = logits / temperature, log_scales + math.log(temperature)
        B, M, H, W = logits.shape
        C = self.channels
        gumbel = -torch.log(-torch.log(uniform((B, M, H, W), logits, generator, _U_EPS, 1 - _U_EPS)))
        index = torch.argmax(logits + gumbel, dim=1, keepdim=True)  # (B, 1, H, W), shared by the channels

        def pick(t: torch.Tensor) -> torch.Tensor:  # (B, K, M, H, W) -> (B, K, H, W) at the chosen component
            return t.gather(2, index[:, None].expand(-1, t.shape[1], 1, -1, -1)).squeeze(2)

        mu, log_s, coef = pick(means), pick(log_scales), pick(coeffs)
        u = uniform((B, C, H, W), logits, generator, _U_EPS, 1 - _U_EPS)
        noisy = mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))
        pairs = coupling_pairs(C)
        levels, values = [], []
        for c in range(C):
            y = noisy[:, c]
            for q, (cc, j) in enumerate(pairs):
                if cc == c:
                    y = y + coef[:, q] * values[j]
            k = unit_to_levels(y, self.bits)  # clip to [-1, 1] and snap to the level grid
            levels.append(k)
            values.append(levels_to_unit(k, self.bits, params.dtype))
        return torch.stack(levels, dim=1)
