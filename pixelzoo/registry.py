"""Name -> component registries for backbones, heads and model presets (timm-style).

Backbones and heads register their classes with ``@register_backbone("name")`` / ``@register_head("name")``;
presets are plain data (:class:`Preset`) registered with ``register_model``. Construction lives in
:mod:`pixelzoo.builder` (``create_model``); this module imports nothing of pixelzoo's.
"""
from __future__ import annotations

import copy
import difflib
import fnmatch
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

__all__ = [
    "Preset",
    "register_backbone",
    "register_head",
    "register_model",
    "get_backbone_class",
    "get_head_class",
    "get_preset",
    "list_backbones",
    "list_heads",
    "list_models",
    "accepted_args",
]

T = TypeVar("T")

_BACKBONES: dict[str, type] = {}
_HEADS: dict[str, type] = {}
_PRESETS: dict[str, "Preset"] = {}


@dataclass(frozen=True)
class Preset:
    """A named model configuration: plain, JSON-able data.

    Attributes:
        name: registry name, e.g. ``"pixelcnnpp_cifar10"``.
        backbone: registered backbone name.
        head: registered head name.
        image_shape: ``(C, H, W)``.
        backbone_args: keyword arguments of the backbone (besides ``in_channels`` / ``num_classes``).
        head_args: keyword arguments of the head (besides ``channels`` / ``bits``).
        bits: bit depth of the data (levels ``0 .. 2**bits - 1``).
        num_classes: 0 for unconditional models, else the number of class labels.
        metadata: free-form facts (the paper's bits/dim, a Hub id, notes).
    """

    name: str
    backbone: str
    head: str
    image_shape: tuple[int, int, int]
    backbone_args: dict[str, Any] = field(default_factory=dict)
    head_args: dict[str, Any] = field(default_factory=dict)
    bits: int = 8
    num_classes: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def hub_id(self) -> str | None:
        return self.metadata.get("hub_id")


def _natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


def _unknown(kind: str, name: str, known: Iterable[str], lister: str) -> ValueError:
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} See pixelzoo.{lister}() for every registered name.")


def _register(table: dict[str, T], kind: str, name: str, obj: T) -> T:
    if not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"Invalid {kind} name {name!r}: use letters, digits, '_', '-' and '.'.")
    if name in table and table[name] is not obj:
        raise ValueError(f"A {kind} named {name!r} is already registered ({table[name]!r}).")
    table[name] = obj
    return obj


def register_backbone(name: str) -> Callable[[type], type]:
    """Class decorator: register a backbone ``cls(in_channels, num_classes=0, **args)`` under ``name``."""

    def deco(cls: type) -> type:
        cls.registry_name = name
        return _register(_BACKBONES, "backbone", name, cls)

    return deco


def register_head(name: str) -> Callable[[type], type]:
    """Class decorator: register a head ``cls(channels, bits=8, **args)`` under ``name``."""

    def deco(cls: type) -> type:
        cls.registry_name = name
        return _register(_HEADS, "head", name, cls)

    return deco


def register_model(preset: Preset) -> Preset:
    """Register a preset. The backbone and head it names must already be registered."""
    get_backbone_class(preset.backbone)
    get_head_class(preset.head)
    return _register(_PRESETS, "model", preset.name, preset)


def get_backbone_class(name: str) -> type:
    _ensure_builtins()
    if name not in _BACKBONES:
        raise _unknown("backbone", name, _BACKBONES, "list_backbones")
    return _BACKBONES[name]


def get_head_class(name: str) -> type:
    _ensure_builtins()
    if name not in _HEADS:
        raise _unknown("head", name, _HEADS, "list_heads")
    return _HEADS[name]


def get_preset(name: str) -> Preset:
    _ensure_builtins()
    if name not in _PRESETS:
        raise _unknown("model", name, _PRESETS, "list_models")
    return copy.deepcopy(_PRESETS[name])


def _filtered(names: Iterable[str], filter: str | Iterable[str], exclude: str | Iterable[str]) -> list[str]:
    includes = [filter] if isinstance(filter, str) else list(filter)
    excludes = [exclude] if isinstance(exclude, str) else list(exclude)
    out = [n for n in names if not any(includes) or any(fnmatch.fnmatchcase(n, p) for p in includes if p)]
    out = [n for n in out if not any(fnmatch.fnmatchcase(n, p) for p in excludes if p)]
    return sorted(out, key=_natural_key)


def list_backbones(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """Registered backbone names, filtered with fnmatch patterns, naturally sorted."""
    _ensure_builtins()
    return _filtered(_BACKBONES, filter, exclude_filters)


def list_heads(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """Registered head names, filtered with fnmatch patterns, naturally sorted."""
    _ensure_builtins()
    return _filtered(_HEADS, filter, exclude_filters)


def list_models(
    filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "", pretrained: bool = False
) -> list[str]:
    """Registered preset names (fnmatch filters); ``pretrained=True`` keeps those with a Hub id."""
    _ensure_builtins()
    names = _filtered(_PRESETS, filter, exclude_filters)
    if pretrained:
        names = [n for n in names if _PRESETS[n].hub_id]
    return names


def accepted_args(cls: type, managed: Iterable[str]) -> set[str] | None:
    """Keyword arguments of ``cls.__init__`` except the ``managed`` ones; ``None`` if it takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n, p in params.items() if n != "self" and n not in set(managed)
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


_BUILTINS_LOADED = False


def _ensure_builtins() -> None:
    # Importing the component packages registers them; done lazily so that registry.py has no import cycle.
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        import pixelzoo.heads  # noqa: F401  (heads first: backbone modules register presets naming them)
        import pixelzoo.backbones  # noqa: F401
