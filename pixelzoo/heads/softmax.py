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
from .base import Head, _no_autocast, float_params, inverse_cdf_sample, levels_to_unit
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
        """Split network outputs into base logits and coupling coefficient vectors (views, no copies).

        Both blocks are K-vectors, so the whole tensor is one grouped view ``b (g k) h w`` with the
        groups g = C logit vectors then Q coefficient vectors; one ``split`` separates them (its backward is
        a single cat, where slicing would zero-fill a parameter-sized gradient per slice).

        Shape:
            params: (B, P, H, W) -> logits (B, C, K, H, W), coeffs (B, Q, K, H, W) with Q = C(C-1)/2
        """
        grouped = rearrange(params, "b (g k) h w -> b g k h w", k=self.levels)
        logits, coeffs = torch.split(grouped, [self.channels, grouped.shape[1] - self.channels], dim=1)
        return logits, coeffs

    def coupled_logits(self, params: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``logits_c + Σ_{j<c} w_{c←j} · values_j`` for every channel at once.

        ``values`` holds the model-space values of the conditioning sub-pixels; channel c reads only
        ``values[:, j]`` for j < c, so entries of later channels may hold anything (sampling leaves zeros).

        Shape:
            params: (B, P, H, W); values: (B, C, H, W) float -> (B, C, K, H, W)
        """
        logits, coeffs = self.unpack(params)
        pairs = coupling_pairs(self.channels)
        if not pairs:
            return logits
        # One product for all slots, then per-channel sums and one stack: the fastest and leanest of the
        # forms tried (index_add keeps the products for its backward; einsum copies them).
        source = torch.tensor([j for _, j in pairs], device=params.device)
        terms = (coeffs * values.index_select(1, source)[:, :, None]).unbind(dim=1)  # w_{c←j} · x_j
        channels = list(logits.unbind(dim=1))
        for term, (c, _) in zip(terms, pairs):
            channels[c] = channels[c] + term
        return torch.stack(channels, dim=1)

    def channel_log_probs(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_c | x_<c)`` of every sub-pixel, conditioned on the observed earlier sub-pixels.

        Shape:
            params: (B, P, H, W); x: (B, C, H, W) integer levels -> (B, C, H, W)
        """
        self._check(params, x)
        with _no_autocast(params.device.type):
            return self._channel_log_probs(float_params(params), x)

    def _channel_log_probs(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits = self.coupled_logits(params, levels_to_unit(x, self.bits, params.dtype))
        return F.log_softmax(logits, dim=2).gather(2, x[:, :, None].long()).squeeze(2)

    def _nll(self, params, x, *, generator):
        return -self._channel_log_probs(params, x).sum(dim=1)

    def _nll_map(self, params, x, *, generator):
        return -self._channel_log_probs(params, x)

    def _sample(self, params, *, generator, temperature=1.0):
        # Inverse-CDF sampling in float64, one uniform per sub-pixel, drawn channel by channel (R, G, B);
        # each sampled level, mapped like the network input, conditions the later channels.
        B, _, H, W = params.shape
        values = torch.zeros((B, self.channels, H, W), dtype=params.dtype, device=params.device)
        levels = []
        for c in range(self.channels):
            k = inverse_cdf_sample(self.coupled_logits(params, values)[:, c], generator, temperature)
            levels.append(k)
            values[:, c] = levels_to_unit(k, self.bits, params.dtype)
        return torch.stack(levels, dim=1)
