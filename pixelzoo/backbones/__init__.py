"""Causal backbones. Importing this package registers every built-in backbone and its presets."""
from .base import Backbone
from .pixelcnnpp import PixelCNNPP

__all__ = ["Backbone", "PixelCNNPP"]
