"""pixelzoo: PixelCNN++ and its variants as interchangeable, tested parts.

    >>> import pixelzoo
    >>> m = pixelzoo.create_model("pixelcnnpp_small")
    >>> bpd = m.bits_per_dim(x)            # x: (B, 3, 32, 32) uint8
    >>> imgs = m.sample(4)                 # (4, 3, 32, 32) uint8
"""
from .builder import create_model
from .registry import (Preset, get_preset, list_backbones, list_heads, list_models,
                       register_backbone, register_head, register_model)
from .model import PixelZooModel
from .hub import from_pretrained
from .importers import from_pclucas14
from .receptive_field import declared_receptive_field, receptive_field
from .version import __version__
from . import heads as _heads  # noqa: F401  (registers the built-in heads)
from . import backbones as _backbones  # noqa: F401  (registers the built-in backbones and presets)

__all__ = [
    "PixelZooModel",
    "Preset",
    "create_model",
    "declared_receptive_field",
    "from_pclucas14",
    "from_pretrained",
    "get_preset",
    "list_backbones",
    "list_heads",
    "list_models",
    "receptive_field",
    "register_backbone",
    "register_head",
    "register_model",
    "__version__",
]
