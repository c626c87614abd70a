"""Continuous logistic mixture on dequantized data: a variational upper bound on the discrete NLL.

The PixelCNN++ ablation that models uniformly dequantized pixels with a continuous density (arXiv:1701.05517
v1 §3.4.2; REFERENCE §1.4). Read as a VAE whose "encoder" is the uniform noise, with a reconstruction
term of zero, ``E_u[-log(p(y) · bin width)] >= -log P(k)`` for the discrete distribution ``P`` that the
density induces on the bins (Jensen), so the reported bits/dim is an upper bound, written "≤" in every
report (REFERENCE pitfall 9).

Convention: the bins are exactly ``dlogistic``'s. With ``K = 2**bits`` levels, level k sits at
``x_k = 2k/(K-1) - 1`` and owns ``[x_k - h, x_k + h)``, ``h = 1/(K-1)``; the bins tile the continuous range
``[-1 - h, 1 + h]``. Level k and noise ``u ~ U(0, 1)``, i.e. ``t = (k + u)/K ∈ [0, 1)`` mapped affinely onto
that range, give ``y = x_k + (2u - 1)·h = 2(k + u - 1/2)/(K-1) - 1``, which fills level k's bin exactly.
The bin width is ``w = 2/(K-1)``, so the bound is ``-log p(y) + C·log((K-1)/2)`` nats per pixel: the
density's bits/dim + ``log2((K-1)/2)`` (+log2(127.5) ≈ 6.994 at 8 bits, REFERENCE pitfall 9's first option).
Since the bins coincide and the density folds the logistic tails into the edge bins, the induced discrete
distribution *is* ``dlogistic``'s with the same parameters, so the bound is >= ``dlogistic``'s exact NLL.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import register_head
from .base import _no_autocast, float_params, levels_to_unit, uniform
from .dlogistic import DiscretizedLogisticMixture, sub_pixel_terms

__all__ = ["ContinuousLogisticMixture", "dequantize", "continuous_to_levels"]


def dequantize(x: torch.Tensor, u: torch.Tensor, bits: int) -> torch.Tensor:
    """Map levels ``k`` and noise ``u ∈ [0, 1)`` to ``y = x_k + (2u - 1)·h = 2(k + u - 1/2)/(2**bits - 1) - 1``.

    That is level k's bin, ``dlogistic``'s ``[x_k - h, x_k + h)`` around ``x_k = 2k/(2**bits - 1) - 1``,
    ``h = 1/(2**bits - 1)``, up to the rounding of u's dtype at its edges.

    Shape:
        x: (...) integer levels; u: (...) float -> (...) float, u's dtype
    """
    # x_k (exactly ∓1 at the edge levels, as the network input) plus the offset inside the bin.
    return levels_to_unit(x, bits, u.dtype) + (2.0 * u - 1.0) * (1.0 / (2**bits - 1))


def continuous_to_levels(y: torch.Tensor, bits: int) -> torch.Tensor:
    """The level whose bin ``[x_k - h, x_k + h)`` contains ``y``: ``floor((y + 1)(2**bits - 1)/2 + 1/2)``, clamped.

    Values beyond ``[-1 - h, 1 + h]`` go to the edge levels. Up to the bin boundaries (where this floors
    and ``unit_to_levels``, dlogistic's sampler rounding, rounds half to even) it is ``unit_to_levels``.
    Returns int64 in ``[0, 2**bits)``.
    """
    top = 2**bits - 1
    return torch.floor((y + 1.0) * (top / 2.0) + 0.5).clamp_(0, top).to(torch.int64)


@register_head("clogistic")
class ContinuousLogisticMixture(DiscretizedLogisticMixture):
    """Mixture of logistics as a density on dequantized data in ``[-1 - h, 1 + h]^C``; ``nll`` is an upper bound.

    Parameters, their layout, the log-scale clamps, the ``tanh`` coupling coefficients and the shared
    mixture indicator are exactly those of ``dlogistic`` (so the two heads are interchangeable on one
    backbone). Per component m and channel c the density of ``y_c`` is a logistic with mean
    ``μ_mc + Σ_{j<c} tanh(coeff) · x_j`` and scale ``exp(log_s_mc)``, where ``x_j = 2k_j/(2**bits - 1) - 1``
    is the *level* of earlier sub-pixel j mapped as the network input (the same coupling as ``dlogistic``;
    in sampling, the sampled level). The logistic mass below ``-1 - h`` (above ``1 + h``) is spread
    uniformly over the first (last) bin, ``h = 1/(2**bits - 1)``, so the density integrates to exactly 1
    over ``[-1 - h, 1 + h]^C``. Its bins are ``dlogistic``'s (see the module docstring), so the discrete
    distribution it induces is ``dlogistic``'s: :meth:`log_prob_components` and :meth:`sample` are
    inherited unchanged, and :meth:`discrete_nll` is ``dlogistic``'s ``nll``. Drawing ``y`` from the density
    and taking the level of its bin is the same as ``dlogistic``'s sampler (logistic draw, coupling on the
    sampled levels, round to the nearest level, clamp): samples are integer levels.

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
        """Width of one level's bin in model units, ``dlogistic``'s: ``2 / (2**bits - 1)``."""
        return 2.0 / (self.levels - 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_draws={self.num_draws}"

    # ----------------------------------------------------------------- density
    def _log_density(self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Joint log-density of y (B, C, H, W) lying in the bins of the levels x -> (B, H, W)."""
        logits, log_p = self._channel_component_log_density(params, x, y)
        return torch.logsumexp(F.log_softmax(logits, dim=1) + log_p.sum(dim=1), dim=1)

    def _channel_component_log_density(self, params: torch.Tensor, x: torch.Tensor,
                                       y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixture logits (B, M, H, W) and each sub-pixel's log-density under each component (B, C, M, H, W)."""
        logits, means, log_s, coeffs = self._unpack(params)
        means = self._coupled_means(means, coeffs, levels_to_unit(x, self.bits, params.dtype))
        inv_s = torch.exp(-log_s)
        z = (y[:, :, None] - means) * inv_s
        log_pdf = -z - log_s - 2.0 * F.softplus(-z)
        # Tail masses beyond the range, spread over the edge bin: log F(-1 - h) - log w, log(1 - F(1 + h)) - log w.
        edge_at = 1.0 + 0.5 * self.bin_width
        k = x[:, :, None]
        tail = torch.where(k == 0, -F.softplus((means + edge_at) * inv_s), -F.softplus((edge_at - means) * inv_s))
        edge = (k == 0) | (k == self.levels - 1)
        return logits, torch.where(edge, torch.logaddexp(log_pdf, tail - math.log(self.bin_width)), log_pdf)

    def log_density(self, params: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Log-density of continuous values ``y ∈ [-1 - h, 1 + h]^C`` (each sub-pixel's bin from
        :func:`continuous_to_levels`). Outside that range the density is 0; this formula does not check.

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

    def _nll_map(self, params, x, *, generator):
        # The same draws, in the same order, as _nll: the map sums to the bound nll reports.
        total = 0.0
        for _ in range(self.num_draws):
            y = dequantize(x, uniform(tuple(x.shape), params, generator), self.bits)
            logits, log_p = self._channel_component_log_density(params, x, y)
            total = total + sub_pixel_terms(logits, log_p) - math.log(self.bin_width)
        return total / self.num_draws

    # -------------------------------------------------- induced discrete model
    def discrete_nll(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Exact NLL (nats, channels summed) of the induced discrete distribution, which is ``dlogistic``'s
        with the same parameters; ``E_u[nll]`` bounds it above.

        Shape:
            params: (B, P, H, W); x: (B, C, H, W) integer levels -> (B, H, W)
        """
        self._check(params, x)
        with _no_autocast(params.device.type):
            return DiscretizedLogisticMixture._nll(self, float_params(params), x, generator=None)
