"""Receptive fields: what each output position of a backbone depends on, measured and declared.

Two independent computations of the same set, so that one can check the other:

* :func:`receptive_field` **measures** it with autograd: a float64 copy of the network in eval mode
  (dropout off), random input, and the input gradient of a random combination of the outputs at each
  position. A pixel is in the field iff some channel of its gradient is non-zero.
* :func:`declared_receptive_field` returns what the backbone **declares**, computed without autograd:
  each backbone either defines ``declared_receptive_field(height, width)`` (analytically, or by walking
  its layer graph with the boolean dependency maps below), or has a graph walk registered here.

Dependency maps (the "deps" helpers) hold, for each position ``(i, j)`` of an ``h x w`` feature map, the
set of pixels of the ``H x W`` image it depends on, as bitsets (``(h, w, K)`` int64, see
:func:`identity_deps`; :func:`unpack_deps` turns them into ``(h, w, H, W)`` bool). A convolution ORs the
sets under its kernel footprint (with its padding, stride and dilation), a transposed convolution
scatters them, a 1x1 layer, an elementwise nonlinearity, a sum or a channel concatenation keeps or ORs
them. Channels are not tracked separately: every layer here mixes all channels.

Shape:
    receptive_field(..., position=(i, j)) -> (H, W) bool;  position=None -> (H, W, H, W) bool
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DownShiftedConvTranspose2d, GatedResnet

__all__ = [
    "receptive_field",
    "declared_receptive_field",
    "causal_past",
    "register_declared_field",
    "identity_deps",
    "unpack_deps",
    "shift_deps",
    "conv_deps",
    "conv_transpose_deps",
    "gated_resnet_deps",
    "stem_deps",
    "two_stream_unet_deps",
]


# ---------------------------------------------------------------------------------- dependency maps
def identity_deps(height: int, width: int) -> torch.Tensor:
    """The input image: pixel (i, j) depends on itself only, as a packed dependency map.

    Dependency sets are packed 64 pixels to an int64 word (pixel ``p·W + q`` is bit ``(p·W + q) % 64`` of
    word ``(p·W + q) // 64``), so a map of a 32x32 image is 16 words per position: small enough that
    every OR stays a cheap single-threaded op.

    Shape:
        -> (H, W, K) int64, K = ceil(H·W / 64)
    """
    n = height * width
    flat = torch.arange(n)
    words = torch.zeros(n, (n + 63) // 64, dtype=torch.int64)
    words[flat, flat // 64] = torch.ones(n, dtype=torch.int64) << (flat % 64)
    return words.reshape(height, width, -1)


def unpack_deps(deps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Packed dependency map -> bool sets. Shape: (h, w, K) int64 -> (h, w, H, W) bool."""
    bits = (deps[..., None] >> torch.arange(64)) & 1  # arithmetic shift: bit 63 still reads as 1
    return bits.flatten(-2)[..., : height * width].bool().reshape(deps.shape[:2] + (height, width))


def _padded(deps: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    h, w = deps.shape[:2]
    out = deps.new_zeros((h + top + bottom, w + left + right) + tuple(deps.shape[2:]))
    out[top:top + h, left:left + w] = deps
    return out


def shift_deps(deps: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``down_shift`` (rows=1) / ``right_shift`` (cols=1) of a dependency map; shape kept."""
    h, w = deps.shape[:2]
    return _padded(deps, cols, 0, rows, 0)[:h, :w]


def conv_deps(deps: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Dependencies after a (causally padded) convolution: OR over the kernel footprint.

    Reads the layer's ``kernel_size``, ``stride``, ``dilation``, ``padding`` and its ``causal_pad``
    (``F.pad`` order: left, right, top, bottom; absent for plain convolutions).

    Shape:
        (h, w, K) -> (h_out, w_out, K)
    """
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    ph, pw = conv.padding
    left, right, top, bottom = getattr(conv, "causal_pad", (0, 0, 0, 0))
    padded = _padded(deps, left + pw, right + pw, top + ph, bottom + ph)
    h_out = (padded.shape[0] - dh * (kh - 1) - 1) // sh + 1
    w_out = (padded.shape[1] - dw * (kw - 1) - 1) // sw + 1
    out = deps.new_zeros((h_out, w_out) + tuple(deps.shape[2:]))
    for a in range(kh):
        for b in range(kw):
            out |= padded[a * dh: a * dh + (h_out - 1) * sh + 1: sh, b * dw: b * dw + (w_out - 1) * sw + 1: sw]
    return out


def conv_transpose_deps(deps: torch.Tensor, conv: nn.ConvTranspose2d) -> torch.Tensor:
    """Dependencies after a shifted, cropped stride-s transposed convolution (``layers.*ConvTranspose2d``).

    Input (p, q) reaches the uncropped output ``(p·s + a, q·s + b)`` for every kernel tap (a, b); the
    result is cropped to rows ``[0, s·h)`` and columns ``[c, c + s·w)``, c = (kw - 1) / 2 for the
    down-shifted kind and 0 for the down-right-shifted one.

    Shape:
        (h, w, K) -> (s·h, s·w, K)
    """
    kh, kw = conv.kernel_size
    s = conv.stride[0]
    h, w = deps.shape[:2]
    full = deps.new_zeros(((h - 1) * s + kh + s - 1, (w - 1) * s + kw + s - 1) + tuple(deps.shape[2:]))
    for a in range(kh):
        for b in range(kw):
            full[a: a + (h - 1) * s + 1: s, b: b + (w - 1) * s + 1: s] |= deps
    left = (kw - 1) // 2 if isinstance(conv, DownShiftedConvTranspose2d) else 0
    return full[: s * h, left: left + s * w]


def gated_resnet_deps(x: torch.Tensor, block: GatedResnet, a: torch.Tensor | None = None) -> torch.Tensor:
    """``x + gate(conv_out(conv_in(x) + nin(a)))``: the aux input joins after the first convolution."""
    c1 = conv_deps(x, block.conv_in)
    if a is not None:
        c1 = c1 | a
    return x | conv_deps(c1, block.conv_out)


def causal_past(height: int, width: int) -> torch.Tensor:
    """The full causal context: ``[i, j, p, q]`` is True iff (p, q) comes strictly before (i, j) in raster order.

    Shape:
        -> (H, W, H, W) bool
    """
    flat = torch.arange(height * width)
    return (flat[None, :] < flat[:, None]).reshape(height, width, height, width)


# ------------------------------------------------------------------------------- declared fields
_DECLARED: dict[type, Callable[[nn.Module, int, int], torch.Tensor]] = {}


def register_declared_field(cls: type) -> Callable:
    """Decorator: register ``fn(backbone, height, width) -> (H, W, H, W)`` as the declared field of ``cls``
    (for backbone classes that do not define a ``declared_receptive_field`` method themselves)."""

    def deco(fn: Callable[[nn.Module, int, int], torch.Tensor]) -> Callable:
        _DECLARED[cls] = fn
        return fn

    return deco


def _backbone_of(module: nn.Module) -> nn.Module:
    return module.backbone if hasattr(module, "params_from_unit") else module


def declared_receptive_field(model_or_backbone: nn.Module, height: int, width: int) -> torch.Tensor:
    """The field a backbone declares (computed without autograd): output (i, j) -> the input pixels it sees.

    Args:
        model_or_backbone: a ``PixelZooModel`` (its backbone is used: the 1x1 projection adds nothing)
            or a backbone.
        height, width: image size.

    Shape:
        -> (H, W, H, W) bool
    """
    backbone = _backbone_of(model_or_backbone)
    backbone.check_image_size(height, width)
    method = getattr(backbone, "declared_receptive_field", None)
    if callable(method):
        return method(height, width)
    _ensure_builtin_walks()
    for cls in type(backbone).__mro__:
        if cls in _DECLARED:
            return _DECLARED[cls](backbone, height, width)
    raise NotImplementedError(f"backbone {type(backbone).__name__} declares no receptive field: define "
                              f"declared_receptive_field(height, width) or use register_declared_field")


def _ensure_builtin_walks() -> None:
    # Imported lazily: the backbones package imports this module, so a top-level import would be a cycle.
    from .backbones.pixelcnnpp import PixelCNNPP

    if PixelCNNPP not in _DECLARED:
        register_declared_field(PixelCNNPP)(_pixelcnnpp_field)


def stem_deps(x: torch.Tensor, u_init: nn.Conv2d, ul_init_down: nn.Conv2d,
              ul_init_right: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The PixelCNN++ stem: ``u = down_shift(u_init(x))``, ``ul = down_shift(ul_init_down(x)) +
    right_shift(ul_init_right(x))``, as dependency maps."""
    u = shift_deps(conv_deps(x, u_init), 1, 0)
    return u, shift_deps(conv_deps(x, ul_init_down), 1, 0) | shift_deps(conv_deps(x, ul_init_right), 0, 1)


Link = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def two_stream_unet_deps(u: torch.Tensor, ul: torch.Tensor, up_layers: nn.ModuleList, up_links: Sequence[Link],
                         down_layers: nn.ModuleList, down_links: Sequence[Link], shortcuts: bool) -> torch.Tensor:
    """Walk the PixelCNN++ U-net graph (``PixelCNNPP.forward``) with dependency maps: up pass pushing every
    intermediate, down pass popping them as aux inputs (u: the u skip; ul: ``[u, ul skip]``) when
    ``shortcuts``. Each level has ``u_stream`` / ``ul_stream`` blocks; ``*_links[k]`` maps (u, ul) between
    levels k and k + 1. Returns the ul stream's dependencies."""
    u_list, ul_list = [u], [ul]
    for level, layer in enumerate(up_layers):
        for u_block, ul_block in zip(layer.u_stream, layer.ul_stream):
            u = gated_resnet_deps(u, u_block)
            ul = gated_resnet_deps(ul, ul_block, u)
            u_list.append(u)
            ul_list.append(ul)
        if level < len(up_links):
            u, ul = up_links[level](u, ul)
            u_list.append(u)
            ul_list.append(ul)
    u, ul = u_list.pop(), ul_list.pop()
    for level, layer in enumerate(down_layers):
        for u_block, ul_block in zip(layer.u_stream, layer.ul_stream):
            u = gated_resnet_deps(u, u_block, u_list.pop() if shortcuts else None)
            ul = gated_resnet_deps(ul, ul_block, (u | ul_list.pop()) if shortcuts else u)
        if level < len(down_links):
            u, ul = down_links[level](u, ul)
    return ul


def _pixelcnnpp_field(net: nn.Module, height: int, width: int) -> torch.Tensor:
    """The PixelCNN++ U-net's declared field: its layer graph walked with dependency maps."""
    u, ul = stem_deps(identity_deps(height, width), net.u_init, net.ul_init_down, net.ul_init_right)
    down = [lambda u, ul, k=k: (conv_deps(u, net.downsize_u[k]), conv_deps(ul, net.downsize_ul[k]))
            for k in range(len(net.downsize_u))]
    up = [lambda u, ul, k=k: (conv_transpose_deps(u, net.upsize_u[k]), conv_transpose_deps(ul, net.upsize_ul[k]))
          for k in range(len(net.upsize_u))]
    return unpack_deps(two_stream_unet_deps(u, ul, net.up_layers, down, net.down_layers, up, net.shortcuts),
                       height, width)


# ------------------------------------------------------------------------------- measured fields
def _resolve_shape(net: nn.Module, image_shape: Sequence[int] | None) -> tuple[int, int, int]:
    backbone = _backbone_of(net)
    channels = backbone.in_channels
    if image_shape is None:
        if not hasattr(net, "image_shape"):
            raise ValueError("receptive_field of a backbone needs image_shape=(H, W) or (C, H, W)")
        image_shape = net.image_shape
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 2:
        shape = (channels,) + shape
    if len(shape) != 3 or shape[0] != channels:
        raise ValueError(f"image_shape must be (H, W) or ({channels}, H, W) for this network, got {tuple(image_shape)}")
    backbone.check_image_size(shape[1], shape[2])
    return shape


@torch.no_grad()
def _copy_for_measuring(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).to(torch.float64).eval()


def receptive_field(model_or_backbone: nn.Module, image_shape: Sequence[int] | None = None,
                    position: tuple[int, int] | None = None, *, batch_size: int = 64,
                    seed: int = 0) -> torch.Tensor:
    """The measured dependence set: which input pixels each output position's features depend on.

    Runs a float64 copy of the network in eval mode (dropout off; the caller's module is not touched) on
    a random image and takes, per output position, the gradient of a random combination of all output
    channels at that position with respect to the input. Positions are measured ``batch_size`` at a
    time, one image copy per position in the batch, with a single backward pass per batch. Memory grows
    with ``batch_size`` times the network's activations; the field depends only on the layer graph, so
    a narrow copy (e.g. ``create_model(name, nr_filters=8)``) gives the same answer far faster.

    Args:
        model_or_backbone: a ``PixelZooModel`` (its head parameters are measured) or a backbone.
        image_shape: ``(H, W)`` or ``(C, H, W)``; defaults to the model's ``image_shape``.
        position: ``(i, j)`` for one output position; ``None`` for all of them.
        batch_size: output positions per backward pass (memory vs. speed).
        seed: seed of the random input and combination weights.

    Returns:
        bool tensor (H, W) for one position, or (H, W, H, W) with ``[i, j]`` the field of output (i, j).
        It includes any dependence on the current or later pixels, so a causal network has
        ``field & ~causal_past(H, W)`` all False.
    """
    C, H, W = _resolve_shape(model_or_backbone, image_shape)
    if position is not None:
        i, j = (int(p) for p in position)
        if not (0 <= i < H and 0 <= j < W):
            raise ValueError(f"position must lie in the {H}x{W} image, got {tuple(position)}")
        positions = [(i, j)]
    else:
        positions = [(i, j) for i in range(H) for j in range(W)]
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    net = _copy_for_measuring(model_or_backbone)
    num_classes = _backbone_of(net).num_classes
    run = net.params_from_unit if hasattr(net, "params_from_unit") else net
    param = next(net.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(seed)
    image = (torch.rand((1, C, H, W), generator=gen, dtype=torch.float64) * 2 - 1).to(device)

    fields = []
    weights = None
    for start in range(0, len(positions), batch_size):
        chunk = torch.tensor(positions[start:start + batch_size], device=device)
        B = chunk.shape[0]
        x = image.expand(B, C, H, W).clone().requires_grad_(True)
        cond = None
        if num_classes:
            cond = F.one_hot(torch.zeros(B, dtype=torch.long, device=device), num_classes).to(torch.float64)
        with torch.enable_grad():
            out = run(x, cond)  # (B, P, H, W); out[b] depends on x[b] only
            if weights is None:
                weights = torch.randn(out.shape[1], generator=gen, dtype=torch.float64).to(device)
            picked = out[torch.arange(B, device=device), :, chunk[:, 0], chunk[:, 1]]  # (B, P)
            (grad,) = torch.autograd.grad((picked * weights).sum(), x)
        fields.append((grad != 0).any(dim=1).cpu())  # (B, H, W)
    field = torch.cat(fields)
    return field[0] if position is not None else field.reshape(H, W, H, W)
