"""Continuous logistic mixture on dequantized data: a variational upper bound on the discrete NLL.

The PixelCNN++ ablation that models uniformly dequantized pixels with a continuous density (arXiv:1701.05517
v1 §3.4.2; REFERENCE §1.4). Read as a VAE whose "encoder" is the uniform noise, with a reconstruction
term of zero, ``E_u[-log(p(y) · bin width)] >= -log P(k)`` for the discrete distribution ``P`` that the
density induces on the bins (Jensen), so the reported bits/dim is an upper bound (REFERENCE pitfall 9).

Convention (pitfall 9, "y = (k+u)/128 - 1" at 8 bits): level k and noise ``u ~ U(0, 1)`` become
``y = 2(k + u)/2**bits - 1``, so the ``2**bits`` bins of width ``w = 2/2**bits`` tile [-1, 1] exactly and
level k owns ``[-1 + k·w, -1 + (k+1)·w]``. The bound is ``-log p(y) - C·log w`` nats per pixel, i.e. the
density's bits/dim + ``log2(2**bits / 2)`` (+7 at 8 bits).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import register_head
from .base import _no_autocast, float_params, levels_to_unit, log1mexp, uniform
from .dlogistic import _U_EPS, DiscretizedLogisticMixture, coupling_pairs

__all__ = ["ContinuousLogisticMixture", "dequantize", "continuous_to_levels"]


def dequantize(x: torch.Tensor, u: torch.Tensor, bits: int) -> torch.Tensor:
    """Map levels ``k`` and noise ``u ∈ [0, 1)`` to ``y = 2(k + u)/2**bits - 1``, inside level k's bin.

    Shape:
        x: (...) integer levels; u: (...) float -> (...) float, u's dtype
    """
    return (x.to(u.dtype) + u) * (2.0 / 2**bits) - 1.0


def continuous_to_levels(y: torch.Tensor, bits: int) -> torch.Tensor:
    """The level whose bin contains ``y``: ``floor((y + 1)/2 · 2**bits)``, clamped into ``[0, 2**bits)``.

    Values below -1 or above +1 (the logistic tails) go to the edge levels, matching the density, which
    folds the tails into the edge bins. Returns int64.
    """
    top = 2**bits - 1
    return torch.floor((y + 1.0) * (2**bits / 2.0)).clamp_(0, top).to(torch.int64)


@register_head("clogistic")
class ContinuousLogisticMixture(DiscretizedLogisticMixture):
    """Mixture of logistics as a density on dequantized data in [-1, 1]; ``nll`` is an upper bound.

    Parameters, their layout, the log-scale clamps, the ``tanh`` coupling coefficients and the shared
    mixture indicator are exactly those of ``dlogistic`` (so the two heads are interchangeable on one
    backbone). Per component m and channel c the density of ``y_c`` is a logistic with mean
    ``μ_mc + Σ_{j<c} tanh(coeff) · x_j`` and scale ``exp(log_s_mc)``, where ``x_j = 2k_j/(2**bits - 1) - 1``
    is the *level* of earlier sub-pixel j mapped as the network input (the same coupling as ``dlogistic``;
    in sampling, the level of the sampled value). The logistic mass below -1 (above +1) is spread
    uniformly over the first (last) bin, so the density integrates to exactly 1 over ``[-1, 1]^C`` and
    induces on the bins the discretized logistic mixture with edges ``-1 + k·w`` (:meth:`log_prob_components`),
    the distribution :meth:`sample` draws from.

    Args:
        channels, bits, num_mixtures, log_scale_min, log_scale_max: as for ``dlogistic``.
        num_draws: dequantization draws averaged by :meth:`nll` (K; 1 as in training). The average of K
            bounds has the same expectation and K times less variance; it is not a tighter bound.

    Shape:
        params: as for ``dlogistic``; x: (B, C, H, W) integer levels.
    """

    exact = False

    def __init__(self, channels: int = 3, bits: int = 8, num_mixtures: int = 10,
                 log_scale_min: float | None = None, log_scale_max: float = 20.0, num_draws: int = 1) -> None:
        super().__init__(channels, bits, num_mixtures, log_scale_min, log_scale_max)
        if not isinstance(num_draws, int) or num_draws < 1:
            raise ValueError(f"num_draws must be a positive int, got {num_draws!r}")
        self.num_draws = num_draws

    @property
    def bin_width(self) -> float:
        """Width of one level's bin in model units: ``2 / 2**bits``."""
        return 2.0 / self.levels

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_draws={self.num_draws}"

    # ----------------------------------------------------------------- density
    def _components(self, params: torch.Tensor, x: torch.Tensor):
        """Mixture log-weights (B, M, H, W), coupled means and log-scales (B, C, M, H, W)."""
        logits, means, log_scales, coeffs = self._unpack(params)
        means = self._coupled_means(means, coeffs, levels_to_unit(x, self.bits, params.dtype))
        return F.log_softmax(logits, dim=1), means, log_scales

    def _log_density(self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Joint log-density of y (B, C, H, W) lying in the bins of the levels x -> (B, H, W)."""
        log_w, means, log_s = self._components(params, x)
        inv_s = torch.exp(-log_s)
        z = (y[:, :, None] - means) * inv_s
        log_pdf = -z - log_s - 2.0 * F.softplus(-z)
        # Tail masses beyond ±1, spread over the edge bin: log F(-1) - log w and log(1 - F(1)) - log w.
        k = x[:, :, None]
        log_bin = math.log(self.bin_width)
        tail = torch.where(k == 0, -F.softplus((means + 1.0) * inv_s), -F.softplus((1.0 - means) * inv_s))
        edge = (k == 0) | (k == self.levels - 1)
        log_p = torch.where(edge, torch.logaddexp(log_pdf, tail - log_bin), log_pdf)
        return torch.logsumexp(log_w + log_p.sum(dim=1), dim=1)

    def log_density(self, params: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Log-density of continuous values ``y ∈ [-1, 1]^C`` (each sub-pixel's bin found by flooring).

        Shape:
            params: (B, P, H, W); y: (B, C, H, W) float -> (B, H, W)
        """
        x = continuous_to_levels(y, self.bits)
        self._check(params, x)
        with _no_autocast(params.device.type):
            params = float_params(params)
            return self._log_density(params, x, y.to(params.dtype))

    def dequantized_nll(self, params: torch.Tensor, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The bound for given noise: ``-log p(dequantize(x, u)) - C·log(bin width)`` nats per pixel.

        Shape:
            params: (B, P, H, W); x: (B, C, H, W) integer levels; u: (B, C, H, W) in [0, 1) -> (B, H, W)
        """
        self._check(params, x)
        if tuple(u.shape) != tuple(x.shape):
            raise ValueError(f"u must have the shape of x, {tuple(x.shape)}, got {tuple(u.shape)}")
        with _no_autocast(params.device.type):
            params = float_params(params)
            return self._dequantized_nll(params, x, u.to(params.dtype))

    def _dequantized_nll(self, params: torch.Tensor, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        y = dequantize(x, u, self.bits)
        return -self._log_density(params, x, y) - self.channels * math.log(self.bin_width)

    def _nll(self, params, x, *, generator):
        # One U(0, 1) tensor of x's shape per draw, in draw order.
        total = 0.0
        for _ in range(self.num_draws):
            total = total + self._dequantized_nll(params, x, uniform(tuple(x.shape), params, generator))
        return total / self.num_draws

    # -------------------------------------------------- induced discrete model
    def log_prob_components(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-component joint log-probability of each pixel's bins under the induced discrete distribution.

        ``P(k) = ∫_bins p(y) dy``: the logistic mass of ``[-1 + k·w, -1 + (k+1)·w]``, the edge bins
        extended to ``∓∞`` (the folded tails). This is the distribution :meth:`sample` draws from, and
        ``E_u[nll] >= -log Σ_m exp(components)``.

        Shape:
            params: (B, P, H, W) float32/64; x: (B, C, H, W) integer levels -> (B, M, H, W)
        """
        log_w, means, log_s = self._components(params, x)
        inv_s = torch.exp(-log_s)
        k = x[:, :, None]
        lower = k.to(params.dtype) * self.bin_width - 1.0
        plus = inv_s * (lower + self.bin_width - means)
        minus = inv_s * (lower - means)
        log_cdf_plus = torch.where(k < self.levels - 1, -F.softplus(-plus), 0.0)
        log_sf_minus = torch.where(k > 0, -F.softplus(minus), 0.0)
        interior = torch.where((k > 0) & (k < self.levels - 1), log1mexp(self.bin_width * inv_s), 0.0)
        return (log_cdf_plus + log_sf_minus + interior).sum(dim=1) + log_w

    def discrete_nll(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact NLL (nats, channels summed) of the induced discrete distribution; ``nll`` bounds it above.

        Shape:
            params: (B, P, H, W); x: (B, C, H, W) integer levels -> (B, H, W)
        """
        self._check(params, x)
        with _no_autocast(params.device.type):
            return -torch.logsumexp(self.log_prob_components(float_params(params), x), dim=1)

    # ---------------------------------------------------------------- sampling
    def _sample(self, params, *, generator):
        # Draw order as dlogistic: Gumbel noise for the shared indicator, then one logistic draw per
        # sub-pixel. Each continuous draw is snapped to its bin's level, and that level (mapped like the
        # network input) feeds the coupling of the later channels, as in nll. The uniforms stay inside
        # (1e-5, 1 - 1e-5) like the reference sampler's, which moves at most 1e-5 of each logistic's mass.
        logits, means, log_scales, coeffs = self._unpack(params)
        B, M, H, W = logits.shape
        gumbel = -torch.log(-torch.log(uniform((B, M, H, W), logits, generator, _U_EPS, 1 - _U_EPS)))
        index = torch.argmax(logits + gumbel, dim=1)[:, None, None].expand(-1, self.channels, 1, -1, -1)
        mu, log_s = means.gather(2, index).squeeze(2), log_scales.gather(2, index).squeeze(2)
        u = uniform((B, self.channels, H, W), logits, generator, _U_EPS, 1 - _U_EPS)
        noisy = mu + torch.exp(log_s) * (torch.log(u) - torch.log1p(-u))
        coef = {pair: coeffs[:, q].gather(1, index[:, 0]).squeeze(1)
                for q, pair in enumerate(coupling_pairs(self.channels))}
        levels, values = [], []
        for c in range(self.channels):
            y = noisy[:, c]
            for j in range(c):
                y = y + coef[(c, j)] * values[j]
            levels.append(continuous_to_levels(y, self.bits))
            values.append(levels_to_unit(levels[-1], self.bits, params.dtype))
        return torch.stack(levels, dim=1)
