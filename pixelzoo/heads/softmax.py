"""Categorical likelihood with linear sub-pixel coupling (the PixelCNN++ softmax ablation, §3.4 of
Salimans et al. 2017, arXiv:1701.05517).

The paper: "We allow the 256 logits for each sub-pixel to linearly depend on the observed value of
previous sub-pixels, with coefficients that are given as output by the model ... The model now outputs
1536 numbers per pixel". For RGB at 8 bits that is 3 x 256 logits + 3 x 256 coefficients (the coupling
pairs G←R, B←R, B←G; REFERENCE §1.4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from ..registry import register_head
from .base import Head, _no_autocast, float_params, levels_to_unit, uniform
from .dlogistic import coupling_pairs

__all__ = ["CoupledSoftmax"]


@register_head("softmax256")
class CoupledSoftmax(Head):
    """A ``2**bits``-way softmax per sub-pixel whose logits depend linearly on the earlier sub-pixels.

    For channel c with base logits ``a_c`` (a K-vector, K = 2**bits) and coefficient vectors ``w_{c←j}``::

        logits_c = a_c + Σ_{j<c} w_{c←j} · x_j,      x_j = 2 k_j / (2**bits - 1) - 1  ∈ [-1, 1]

    where ``k_j`` is the level of earlier sub-pixel j of the same pixel: the observed one in :meth:`nll`,
    the freshly sampled one in :meth:`sample`. ``x_j`` is scaled exactly as the network's input image
    (level 0 -> -1, top level -> +1), so the coupling sees what the backbone sees. Coefficients are used raw
    (no squashing): the softmax is normalised whatever their size.

    Parameter layout (legend: c = channel, k = level, q = coupling slot in :func:`coupling_pairs` order,
    for RGB q = (G←R, B←R, B←G))::

        params = [ (c k) base logits | (q k) coefficient vectors ]     along dim 1

    i.e. ``C·K + C(C-1)/2·K`` numbers per pixel: 1536 for RGB at 8 bits, 256 for one channel.

    Args:
        channels: sub-pixels per pixel (any C >= 1).
        bits: bit depth, 1..10. The parameter count grows as ``2**bits`` (6144 per RGB pixel at 10 bits),
            so deeper data is a job for the mixture heads.

    Shape:
        params: (B, C·K + C(C-1)/2·K, H, W); x: (B, C, H, W) integer levels.
    """

    max_bits = 10

    def num_params(self, channels: int | None = None) -> int:
        C = self.channels if channels is None else channels
        return (C + C * (C - 1) // 2) * self.levels

    def unpack(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split network outputs into base logits and coupling coefficient vectors.

        Shape:
            params: (B, P, H, W) -> logits (B, C, K, H, W), coeffs (B, Q, K, H, W) with Q = C(C-1)/2
        """
        n = self.channels * self.levels
        logits = rearrange(params[:, :n], "b (c k) h w -> b c k h w", k=self.levels)
        coeffs = rearrange(params[:, n:], "b (q k) h w -> b q k h w", k=self.levels)
        return logits, coeffs

    def _channel_logits(self, logits: torch.Tensor, coeffs: torch.Tensor, c: int,
                        values: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """Coupled logits of channel c given the model-space values ``values[j]`` (B, H, W) of channels j < c.

        Shape:
            -> (B, K, H, W)
        """
        out = logits[:, c]
        for q, (cc, j) in enumerate(coupling_pairs(self.channels)):
            if cc == c:
                out = out + coeffs[:, q] * values[j][:, None]
        return out

    def channel_log_probs(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_c | x_<c)`` of every sub-pixel, conditioned on the observed earlier sub-pixels.

        Shape:
            params: (B, P, H, W); x: (B, C, H, W) integer levels -> (B, C, H, W)
        """
        self._check(params, x)
        with _no_autocast(params.device.type):
            return self._channel_log_probs(float_params(params), x)

    def _channel_log_probs(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, coeffs = self.unpack(params)
        values = levels_to_unit(x, self.bits, params.dtype).unbind(dim=1)
        out = []
        for c in range(self.channels):
            log_p = F.log_softmax(self._channel_logits(logits, coeffs, c, values), dim=1)
            out.append(log_p.gather(1, x[:, c:c + 1].long()).squeeze(1))
        return torch.stack(out, dim=1)

    def _nll(self, params, x, *, generator):
        return -self._channel_log_probs(params, x).sum(dim=1)

    def _sample(self, params, *, generator):
        # Inverse-CDF sampling in float64, one uniform per sub-pixel, drawn channel by channel (R, G, B).
        logits, coeffs = self.unpack(params)
        B, _, _, H, W = logits.shape
        levels, values = [], []
        for c in range(self.channels):
            probs = torch.softmax(self._channel_logits(logits, coeffs, c, values).double(), dim=1)
            cdf = probs.cumsum(dim=1)
            u = uniform((B, H, W), cdf, generator)
            # Count the levels whose CDF lies below u·total: scaling by the total (≈ 1 up to rounding)
            # keeps the result < K and never picks a zero-probability level.
            k = (cdf < (u * cdf[:, -1])[:, None]).sum(dim=1)
            levels.append(k)
            values.append(levels_to_unit(k, self.bits, params.dtype))
        return torch.stack(levels, dim=1)
