"""A K-way softmax per position for discrete codes (VQ-VAE / VQ-GAN latents): categories, not intensities."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..registry import register_head
from .base import Head, inverse_cdf_sample
from .dlogistic import coupling_pairs

__all__ = ["Categorical"]

MAX_CODES = 65536


@register_head("categorical")
class Categorical(Head):
    """``p(x_c = k | past) = softmax_k(logits_c)`` over ``num_codes`` unordered categories per sub-position.

    The network gives a ``embed_dim``-vector ``h_c`` per channel and position; the logits are low rank,
    ``logits_c = W_c · (h_c + Σ_{j<c} E_{c←j}[x_j]) + b_c`` with a learned output table ``W_c`` (K x D) and bias
    ``b_c`` per channel, so the network's output layer has C·D outputs whatever K is (65,536 codes need no
    65,536-wide projection). With C > 1 channels the channels are autoregressive at the same position: channel
    c sees the codes of channels < c through the learned embeddings ``E_{c←j}`` (K x D each), so the likelihood
    stays exact. There is no order between codes.

    Sampling draws each channel by inverse CDF from one uniform per position; ``temperature`` T divides the
    logits (T -> 0 gives each conditional's argmax).

    Args:
        channels: code maps per position (C).
        num_codes: K, 2..65,536.
        embed_dim: D, the rank of the logits.

    Shape:
        params: (B, C·D, H, W); x: (B, C, H, W) integer codes in [0, K).
    """

    max_bits = 16
    models_codes = True

    def __init__(self, channels: int = 1, num_codes: int = 512, embed_dim: int = 64) -> None:
        if isinstance(num_codes, bool) or not isinstance(num_codes, int) or not 2 <= num_codes <= MAX_CODES:
            raise ValueError(f"num_codes must be an int in [2, {MAX_CODES}], got {num_codes!r}")
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise ValueError(f"embed_dim must be a positive int, got {embed_dim!r}")
        super().__init__(channels, bits=max(1, math.ceil(math.log2(num_codes))))
        self.num_codes, self.embed_dim = num_codes, embed_dim
        self.out_weight = nn.Parameter(torch.randn(channels, num_codes, embed_dim) / math.sqrt(embed_dim))
        self.out_bias = nn.Parameter(torch.zeros(channels, num_codes))
        pairs = coupling_pairs(channels)
        self.coupling = nn.Parameter(torch.randn(len(pairs), num_codes, embed_dim) * 0.05) if pairs else None

    @property
    def levels(self) -> int:
        return self.num_codes

    def num_params(self, channels: int | None = None) -> int:
        return (self.channels if channels is None else channels) * self.embed_dim

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_codes={self.num_codes}, embed_dim={self.embed_dim}"

    def _hidden(self, params: torch.Tensor, codes: torch.Tensor | None, upto: int | None = None) -> torch.Tensor:
        """``h_c + Σ_{j<c} E_{c←j}[x_j]`` for every channel (B, C, D, H, W); channel c reads codes[:, j < c] only."""
        h = rearrange(params, "b (c d) h w -> b c d h w", c=self.channels)
        if self.coupling is None or codes is None:
            return h
        channels = list(h.unbind(dim=1))
        for q, (c, j) in enumerate(coupling_pairs(self.channels)):
            if upto is not None and c != upto:
                continue
            emb = F.embedding(codes[:, j].long(), self.coupling[q].to(params.dtype))  # (B, H, W, D)
            channels[c] = channels[c] + emb.permute(0, 3, 1, 2)
        return torch.stack(channels, dim=1)

    def logits(self, params: torch.Tensor, codes: torch.Tensor | None) -> torch.Tensor:
        """Every channel's logits given the earlier channels' codes. Shape: -> (B, K, C, H, W)"""
        h = self._hidden(params, codes)
        w, b = self.out_weight.to(params.dtype), self.out_bias.to(params.dtype)
        return torch.einsum("bcdhw,ckd->bkchw", h, w) + b.t()[None, :, :, None, None]

    def _nll_map(self, params, x, *, generator):
        return F.cross_entropy(self.logits(params, x), x.long(), reduction="none")

    def _nll(self, params, x, *, generator):
        return self._nll_map(params, x, generator=generator).sum(dim=1)

    def _sample(self, params, *, generator, temperature=1.0):
        B, _, H, W = params.shape
        codes = torch.zeros((B, self.channels, H, W), dtype=torch.int64, device=params.device)
        w, b = self.out_weight.to(params.dtype), self.out_bias.to(params.dtype)
        for c in range(self.channels):
            h = self._hidden(params, codes, upto=c)[:, c]
            logits = torch.einsum("bdhw,kd->bkhw", h, w[c]) + b[c][None, :, None, None]
            codes[:, c] = inverse_cdf_sample(logits, generator, temperature)
        return codes
