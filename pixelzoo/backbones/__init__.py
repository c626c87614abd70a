"""Causal backbones. Importing this package registers every built-in backbone and its presets."""
from .base import Backbone
from .pixelcnnpp import PixelCNNPP
from .dilated import PixelCNNPPDilated
from .small import SmallARChannel, SmallNIN, SmallPixelCNN

__all__ = ["Backbone", "PixelCNNPP", "PixelCNNPPDilated", "SmallARChannel", "SmallNIN", "SmallPixelCNN"]
