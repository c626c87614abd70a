"""Exact import of checkpoints saved by the pclucas14/pixel-cnn-pp PyTorch port.

The port's ``PixelCNN`` is the same network as pixelzoo's ``pixelcnnpp`` backbone followed by its 1x1
output layer (``nin_out``) and the reference parameter layout of the ``dlogistic`` head (10·M channels for
RGB, 3·M for one channel), so a checkpoint maps onto a pixelzoo model layer by layer:

==========================================  ==================================================
port key (prefix)                            pixelzoo key (prefix)
==========================================  ==================================================
``u_init.conv``                              ``backbone.u_init``
``ul_init.0.conv`` / ``ul_init.1.conv``      ``backbone.ul_init_down`` / ``backbone.ul_init_right``
``{up,down}_layers.i.{u,ul}_stream.j``       ``backbone.{up,down}_layers.i.{u,ul}_stream.j``
  ``.conv_input.conv`` / ``.conv_out.conv``    ``.conv_in`` / ``.conv_out``
  ``.nin_skip.lin_a`` (a Linear)               ``.nin_aux`` (a 1x1 convolution)
``downsize_{u,ul}_stream.i.conv``            ``backbone.downsize_{u,ul}.i``
``upsize_{u,ul}_stream.i.deconv``            ``backbone.upsize_{u,ul}.i``
``nin_out.lin_a``                            ``proj``
==========================================  ==================================================

Weight norm: the port uses torch's hook-based ``weight_norm`` (``weight_g`` / ``weight_v``), normalised over
dim 0 of every weight. For convolutions and linear layers that is the output channel, as in pixelzoo, so
g and v are copied as they are. For the transposed convolutions dim 0 of the (in, out, kh, kw) weight is the
*input* channel, while pixelzoo (like the TF original) normalises per output channel: those layers go
through the effective weight ``W = g·v/‖v‖``, computed in float64 from the file's tensors, and are stored
as ``v = W``, ``g = ‖W‖`` per output channel. Files whose layers hold a plain ``weight`` (weight norm
removed) or torch's newer ``parametrizations.weight.original0/1`` load the same way.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

__all__ = ["from_pclucas14", "read_pclucas14_state_dict", "infer_pclucas14_architecture", "CheckpointError",
           "DEFAULT_IMAGE_SHAPES"]

# The port's data: CIFAR-10 for RGB, MNIST for one channel (its main.py).
DEFAULT_IMAGE_SHAPES = {3: (3, 32, 32), 1: (1, 28, 28)}
_OUTPUTS_PER_MIXTURE = {3: 10, 1: 3}  # the port's loss layouts: RGB (coupled) and 1-channel

_DTYPES = {"float32": torch.float32, "float64": torch.float64, torch.float32: torch.float32,
           torch.float64: torch.float64}


class CheckpointError(ValueError):
    """A file or state dict that is not a loadable pclucas14/pixel-cnn-pp checkpoint."""


# ------------------------------------------------------------------------------------------ reading
def read_pclucas14_state_dict(source: str | os.PathLike | Mapping[str, Any], *,
                              map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The port's state dict from a file (zip or legacy serialization) or a mapping, prefixes removed.

    Reads with ``torch.load(weights_only=True)``: no code in the file runs. Tensors saved from CUDA load onto
    ``map_location`` (torch maps every storage there while unpickling, so a CPU-only machine reads them).
    Accepts a plain state dict, one wrapped under ``"state_dict"`` / ``"model_state_dict"`` / ``"model"``, and
    keys prefixed ``module.`` (DataParallel / DistributedDataParallel).
    """
    if isinstance(source, Mapping):
        obj: Any = source
        where = "the given state dict"
    else:
        path = Path(source)
        where = str(path)
        if not path.exists():
            raise CheckpointError(f"no checkpoint file at {where}")
        if path.is_dir():
            raise CheckpointError(f"{where} is a folder; pass the .pth file saved by the port's main.py")
        obj = _load_file(path, map_location)
    obj = _unwrap(obj, where)
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where} is not a state dict: entry {key!r} holds a {type(value).__name__}, not "
                                  f"a tensor")
        key = re.sub(r"^(module\.)+", "", key)
        if key in out:
            raise CheckpointError(f"{where} holds {key!r} twice (with and without a 'module.' prefix)")
        out[key] = value.to(map_location) if map_location is not None else value
    if not out:
        raise CheckpointError(f"{where} holds an empty state dict")
    return out


def _load_file(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"{path} holds pickled Python objects (a whole model, not only its tensors), which pixelzoo does "
                f"not unpickle because unpickling runs code. Re-save it as a state dict where you trust it, with "
                f"the port's code importable: torch.save(torch.load({path.name!r}, weights_only=False)"
                f".state_dict(), 'state_dict.pth'), then import that file") from None
        raise CheckpointError(f"cannot read {path}: {type(e).__name__}: {e}. Is it a complete .pth file?") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError) as e:
        size = path.stat().st_size
        raise CheckpointError(f"cannot read {path} ({size} bytes) as a torch checkpoint: {type(e).__name__}: "
                              f"{_first_line(e)}. The file may be truncated or corrupt (compare its size and "
                              f"sha256 with the original)") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else ""


def _unwrap(obj: Any, where: str) -> Mapping[str, Any]:
    if isinstance(obj, torch.nn.Module):  # only reachable for a mapping argument
        return obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} holds a {type(obj).__name__}, not a state dict (a mapping of parameter "
                              f"names to tensors); save one with torch.save(model.state_dict(), path)")
    if obj and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
        raise CheckpointError(f"{where} holds no tensors; its keys are {sorted(map(str, obj))[:8]}: expected the "
                              f"port's state dict (or one under 'state_dict' / 'model_state_dict' / 'model')")
    return obj


# ------------------------------------------------------------------------------------------ layers
def _layer_weights(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor] | None:
    """The weight-norm pair (g, v) or the plain weight of one layer, and its bias; None if absent."""
    forms = {"weight_g": "g", "weight_v": "v", "parametrizations.weight.original0": "g",
             "parametrizations.weight.original1": "v", "weight": "w", "bias": "b"}
    found = {short: sd[f"{prefix}.{name}"] for name, short in forms.items() if f"{prefix}.{name}" in sd}
    return found or None


def _effective(layer: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """W = g·v/‖v‖ (norm over every dim but 0, as torch's weight_norm(dim=0)), in float64."""
    if "w" in layer:
        return layer["w"].double()
    g, v = layer["g"].double(), layer["v"].double()
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
    return g.view(-1, *([1] * (v.dim() - 1))) * v / norm


def _layer_keys(sd: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Every key of the file, to the layer prefix it belongs to."""
    suffix = re.compile(r"\.(weight_g|weight_v|parametrizations\.weight\.original[01]|weight|bias)$")
    return {k: suffix.sub("", k) for k in sd}


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in sd for m in [regex.match(k)] if m})


# ------------------------------------------------------------------------------------------ architecture
def infer_pclucas14_architecture(sd: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """``nr_resnet``, ``nr_filters``, ``num_mixtures`` and ``input_channels`` from the tensors alone.

    Raises:
        CheckpointError: the state dict is not the port's ``PixelCNN`` (names the missing keys) or its shapes
            are inconsistent.
    """
    stem = _layer_weights(sd, "u_init.conv")
    out = _layer_weights(sd, "nin_out.lin_a")
    if stem is None or out is None:
        missing = [k for k in ("u_init.conv.weight_v", "nin_out.lin_a.weight_v") if k not in sd]
        first = sorted(sd)[:5]
        raise CheckpointError(f"this is not a pclucas14/pixel-cnn-pp PixelCNN state dict: missing {missing}; its "
                              f"first keys are {first}")
    stem_w = stem.get("v", stem.get("w"))
    out_w = out.get("v", out.get("w"))
    if stem_w is None or stem_w.dim() != 4 or out_w is None or out_w.dim() != 2:
        raise CheckpointError("u_init.conv must hold a 4-d convolution weight and nin_out.lin_a a 2-d linear weight; "
                              f"got shapes {None if stem_w is None else tuple(stem_w.shape)} and "
                              f"{None if out_w is None else tuple(out_w.shape)}")
    nr_filters = int(stem_w.shape[0])
    channels = int(stem_w.shape[1]) - 1
    if channels not in _OUTPUTS_PER_MIXTURE:
        raise CheckpointError(f"u_init.conv takes {channels + 1} input channels, so the images would have {channels}; "
                              f"the port models 1-channel or RGB images (2 or 4 inputs with its ones channel)")
    per = _OUTPUTS_PER_MIXTURE[channels]
    rows = int(out_w.shape[0])
    if rows % per or rows == 0:
        raise CheckpointError(f"nin_out.lin_a has {rows} outputs, not a multiple of {per} (the port's "
                              f"{'RGB' if channels == 3 else '1-channel'} loss uses {per} per mixture component)")
    if int(out_w.shape[1]) != nr_filters:
        raise CheckpointError(f"nin_out.lin_a takes {int(out_w.shape[1])} features but u_init.conv makes "
                              f"{nr_filters}: the shapes are inconsistent")
    nr_resnet = _count(sd, r"up_layers\.0\.u_stream\.(\d+)\.")
    if nr_resnet == 0:
        raise CheckpointError("no up_layers.0.u_stream.* keys: this is not a pclucas14/pixel-cnn-pp PixelCNN "
                              "state dict")
    return {"nr_resnet": nr_resnet, "nr_filters": nr_filters, "num_mixtures": rows // per,
            "input_channels": channels}


def _key_map(arch: Mapping[str, int]) -> dict[str, tuple[str, bool]]:
    """port layer prefix -> (pixelzoo layer prefix, transposed?) for an architecture."""
    r = arch["nr_resnet"]
    pairs: dict[str, tuple[str, bool]] = {
        "u_init.conv": ("backbone.u_init", False),
        "ul_init.0.conv": ("backbone.ul_init_down", False),
        "ul_init.1.conv": ("backbone.ul_init_right", False),
        "nin_out.lin_a": ("proj", False),
    }
    for i in range(2):
        pairs[f"downsize_u_stream.{i}.conv"] = (f"backbone.downsize_u.{i}", False)
        pairs[f"downsize_ul_stream.{i}.conv"] = (f"backbone.downsize_ul.{i}", False)
        pairs[f"upsize_u_stream.{i}.deconv"] = (f"backbone.upsize_u.{i}", True)
        pairs[f"upsize_ul_stream.{i}.deconv"] = (f"backbone.upsize_ul.{i}", True)
    blocks = [("up_layers", i, r) for i in range(3)] + [("down_layers", i, r if i == 0 else r + 1) for i in range(3)]
    for name, i, count in blocks:
        for stream in ("u_stream", "ul_stream"):
            for j in range(count):
                port, ours = f"{name}.{i}.{stream}.{j}", f"backbone.{name}.{i}.{stream}.{j}"
                pairs[f"{port}.conv_input.conv"] = (f"{ours}.conv_in", False)
                pairs[f"{port}.conv_out.conv"] = (f"{ours}.conv_out", False)
                # up-pass u blocks have no skip input; every other block does
                if not (name == "up_layers" and stream == "u_stream"):
                    pairs[f"{port}.nin_skip.lin_a"] = (f"{ours}.nin_aux", False)
    return pairs


def convert_pclucas14_state_dict(sd: Mapping[str, torch.Tensor], model: torch.nn.Module,
                                 arch: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """The pixelzoo state dict (keys and dtypes of ``model``) equal to the port's weights ``sd``."""
    pairs = _key_map(arch)
    layer_of = _layer_keys(sd)
    extra = sorted(k for k, layer in layer_of.items() if layer not in pairs)
    missing = sorted(f"{p}.*" for p in pairs if _layer_weights(sd, p) is None)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} layer(s), first {missing[:4]}")
        if extra:
            parts.append(f"{len(extra)} unexpected key(s), first {extra[:4]}")
        raise CheckpointError(f"the state dict is not a pclucas14/pixel-cnn-pp PixelCNN with nr_resnet="
                              f"{arch['nr_resnet']}, nr_filters={arch['nr_filters']}: {'; '.join(parts)}")
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for port, (ours, transposed) in pairs.items():
        layer = _layer_weights(sd, port)
        g_key, v_key = f"{ours}.parametrizations.weight.original0", f"{ours}.parametrizations.weight.original1"
        g_ref, v_ref, b_ref = target[g_key], target[v_key], target[f"{ours}.bias"]
        if "b" not in layer:
            raise CheckpointError(f"layer {port} has no bias")
        if ("g" in layer) != ("v" in layer):
            raise CheckpointError(f"layer {port} holds only one of weight_g / weight_v")
        if transposed or "w" in layer:
            w = _effective(layer, port)
            dim = 1 if transposed else 0
            dims = [d for d in range(w.dim()) if d != dim]
            g, v = torch.linalg.vector_norm(w, dim=dims, keepdim=True), w
        else:
            g, v = layer["g"], layer["v"]
        if v.dim() == 2:  # Linear (out, in) -> 1x1 convolution (out, in, 1, 1)
            g, v = g.reshape(-1, 1, 1, 1), v[:, :, None, None]
        for key, value, ref in ((g_key, g, g_ref), (v_key, v, v_ref), (f"{ours}.bias", layer["b"], b_ref)):
            if tuple(value.shape) != tuple(ref.shape):
                raise CheckpointError(f"{port}: shape {tuple(value.shape)} where nr_filters={arch['nr_filters']}, "
                                      f"nr_resnet={arch['nr_resnet']}, {arch['num_mixtures']} mixtures need "
                                      f"{tuple(ref.shape)} ({key}); the file's shapes are inconsistent")
            if not value.dtype.is_floating_point:
                raise CheckpointError(f"{port}: {value.dtype} weights, expected floating point")
            out[key] = value.detach().to(device=ref.device, dtype=ref.dtype).clone()
    return out


# ------------------------------------------------------------------------------------------ the model
def from_pclucas14(source: str | os.PathLike | Mapping[str, Any], *, map_location: str | torch.device = "cpu",
                   image_shape: tuple[int, int, int] | list[int] | None = None,
                   dtype: str | torch.dtype = "float32"):
    """A pixelzoo model with the weights of a pclucas14/pixel-cnn-pp checkpoint, exactly.

    Args:
        source: the ``.pth`` file the port's ``main.py`` saved (``torch.save(model.state_dict(), ...)``; zip or
            legacy serialization, tensors from CUDA or CPU) or a state dict.
        map_location: where tensors load (``torch.load``'s argument).
        image_shape: ``(C, H, W)``; a checkpoint holds no image size. Default: the port's, 3x32x32 for RGB and
            1x28x28 for one channel. H and W must suit the U-net (see ``pixelzoo.create_model``).
        dtype: ``"float32"`` or ``"float64"``; the conversion itself is done in float64.

    Returns:
        a ``PixelZooModel`` (``pixelcnnpp`` + ``dlogistic``, dropout 0.5 as the port's default; call ``eval()``)
        whose ``forward`` gives the port's raw output in its channel layout and whose ``nll`` its loss per image.
    """
    from ..builder import create_model

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    sd = read_pclucas14_state_dict(source, map_location=map_location)
    arch = infer_pclucas14_architecture(sd)
    channels = arch["input_channels"]
    if image_shape is None:
        image_shape = DEFAULT_IMAGE_SHAPES[channels]
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or image_shape[0] != channels:
        raise ValueError(f"image_shape must be ({channels}, H, W) for this {channels}-channel checkpoint, got "
                         f"{image_shape}")
    model = create_model(backbone="pixelcnnpp", head="dlogistic", image_shape=image_shape,
                         nr_resnet=arch["nr_resnet"], nr_filters=arch["nr_filters"],
                         num_mixtures=arch["num_mixtures"], dropout=0.5)
    model = model.to(dtype=_DTYPES[dtype], device=map_location)
    model.load_state_dict(convert_pclucas14_state_dict(sd, model, arch), strict=True)
    return model


def sha256_of(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

