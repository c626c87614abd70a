"""Building models from registered parts: ``create_model`` (timm keeps the same split between its name tables,
``_registry.py``, and construction, ``_builder.py``; :mod:`pixelzoo.registry` imports nothing above it)."""
from __future__ import annotations

from typing import Any

from .registry import Preset, accepted_args, get_backbone_class, get_head_class, get_preset

__all__ = ["create_model"]


_MODEL_LEVEL = ("image_shape", "bits", "num_classes", "num_codes", "code_embedding_dim", "cond_channels")


def create_model(
    model_name: str | None = None,
    *,
    backbone: str | None = None,
    head: str | None = None,
    pretrained: bool = False,
    **kwargs: Any,
):
    """Build a model from a preset name, or from any registered ``backbone`` + ``head`` pair.

    Keyword arguments override the preset's: ``image_shape``, ``bits``, ``num_classes``, ``num_codes``,
    ``code_embedding_dim`` and ``cond_channels`` go to the model;
    every other keyword goes to the backbone or the head, whichever accepts it (both, if both do). A
    keyword that no part accepts is a ``ValueError``.

    Examples:
        >>> create_model("pixelcnnpp_cifar10", nr_filters=32, nr_resnet=1, num_mixtures=5)
        >>> create_model(backbone="pixelcnnpp", head="dlogistic", image_shape=(1, 28, 28))
        >>> create_model(backbone="pixelcnnpp", head="categorical", image_shape=(1, 32, 32), num_codes=512,
        ...              cond_channels=64)     # a VQ-VAE code prior with a conditioning map
    """
    from .model import PixelZooModel

    if model_name is not None and "/" in model_name:
        raise ValueError(f"{model_name!r} looks like a Hub repo id or a path; load it with "
                         f"pixelzoo.from_pretrained({model_name!r})")
    if model_name is None and (backbone is None or head is None):
        raise ValueError("create_model needs a preset name, or both backbone= and head=")
    if model_name is not None:
        preset = get_preset(model_name)
        if backbone is not None and backbone != preset.backbone:
            raise ValueError(f"preset {model_name!r} uses backbone {preset.backbone!r}; to use {backbone!r}, "
                             f"call create_model(backbone={backbone!r}, head=...) without a preset name")
        if head is not None and head != preset.head:
            # A preset with another head: keep the backbone settings, drop the head-specific ones.
            preset = Preset(preset.name, preset.backbone, head, preset.image_shape, preset.backbone_args, {},
                            preset.bits, preset.num_classes, preset.metadata)
    else:
        preset = Preset("", backbone, head, (3, 32, 32))
    model_kw: dict[str, Any] = dict(image_shape=preset.image_shape, bits=preset.bits, num_classes=preset.num_classes)
    backbone_args, head_args = dict(preset.backbone_args), dict(preset.head_args)
    for key in _MODEL_LEVEL:
        if kwargs.get(key) is not None:
            model_kw[key] = kwargs.pop(key)
    b_ok = accepted_args(get_backbone_class(preset.backbone), ("in_channels", "num_classes"))
    h_ok = accepted_args(get_head_class(preset.head), ("channels", "bits", "num_codes"))
    for key, value in kwargs.items():
        to_b, to_h = b_ok is None or key in b_ok, h_ok is None or key in h_ok
        if not (to_b or to_h):
            raise ValueError(
                f"no part of the model takes the argument {key!r}: backbone {preset.backbone!r} takes "
                f"{sorted(b_ok)}, head {preset.head!r} takes {sorted(h_ok)}, the model takes {list(_MODEL_LEVEL)}")
        if to_b:
            backbone_args[key] = value
        if to_h:
            head_args[key] = value
    model = PixelZooModel(preset.backbone, preset.head, backbone_args=backbone_args, head_args=head_args,
                          **model_kw)
    model.preset_name = preset.name or None
    if pretrained:
        from .hub import load_pretrained_weights

        load_pretrained_weights(model, preset)
    return model
