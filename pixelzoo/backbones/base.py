"""The contract every backbone keeps."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

__all__ = ["Backbone", "add_ones_channel"]


def add_ones_channel(x: torch.Tensor) -> torch.Tensor:
    """Append a channel of ones, built per call (never cached), so zero padding differs from image content.

    Shape:
        (B, C, H, W) -> (B, C + 1, H, W)
    """
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


class Backbone(nn.Module):
    """A causal feature extractor: feature (i, j) depends only on pixels strictly before (i, j) in raster order.

    Subclasses take ``in_channels`` and ``num_classes`` (0: unconditional) plus their own arguments, set
    ``out_features``, and implement ``forward(x, cond=None)``.

    Shape:
        x: (B, in_channels, H, W) float in [-1, 1]; cond: (B, num_classes) float (one-hot labels) or None
        -> (B, out_features, H, W)
    """

    registry_name: ClassVar[str] = ""
    out_features: int

    def __init__(self, in_channels: int, num_classes: int = 0) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0, got {num_classes!r}")
        self.in_channels = in_channels
        self.num_classes = num_classes

    def check_image_size(self, height: int, width: int) -> None:
        """Raise ``ValueError`` if this backbone cannot process ``height x width`` images."""
        if height < 1 or width < 1:
            raise ValueError(f"image size must be positive, got {height}x{width}")
