"""``pixelzoo field MODEL``: print the receptive field of one output position as an ASCII map."""
from __future__ import annotations

import argparse

import torch

from .common import add_model_argument, apply_threads, load_model, pick_device

# A preset's field depends on its layer graph only, not on its widths: measure a narrow copy.
_NARROW = dict(nr_filters=8)

SEEN, UNSEEN, PIXEL, LEAK = "#", ".", "X", "!"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("field", help="show which earlier pixels one output position sees (causality check)",
                       description="Print the receptive field of output (i, j): '#' a pixel it sees, '.' one it "
                                   f"does not, '{PIXEL}' the pixel itself, '{LEAK}' a current-or-later pixel "
                                   "it sees (a causality bug).")
    add_model_argument(p)
    p.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help="image size (default: the model's)")
    p.add_argument("--position", nargs=2, type=int, metavar=("I", "J"), default=None,
                   help="output position (default: the centre)")
    p.add_argument("--measured", action="store_true",
                   help="also measure the field with autograd (float64) and compare it with the declared one")
    p.add_argument("--full-width", action="store_true",
                   help="for a preset, keep its real widths (default: a narrow copy; the field is the same)")
    p.set_defaults(func=run)


def field_map(field: torch.Tensor, position: tuple[int, int]) -> list[str]:
    """Rows of the ASCII map of a (H, W) bool field for output ``position``."""
    i0, j0 = position
    rows = []
    for i, row in enumerate(field.tolist()):
        chars = []
        for j, seen in enumerate(row):
            if (i, j) == (i0, j0):
                chars.append(LEAK if seen else PIXEL)
            elif (i, j) > (i0, j0):
                chars.append(LEAK if seen else UNSEEN)
            else:
                chars.append(SEEN if seen else UNSEEN)
        rows.append("".join(chars))
    return rows


def _summary(kind: str, field: torch.Tensor, position: tuple[int, int]) -> str:
    H, W = field.shape
    flat = position[0] * W + position[1]
    seen = field.flatten()
    past, future = int(seen[:flat].sum()), int(seen[flat:].sum())
    return (f"{kind} field of output {position} at {H}x{W}: sees {past} of the {flat} earlier pixels; "
            f"{future} current-or-later pixels seen")


def _build(args: argparse.Namespace, device: torch.device):
    from .. import registry
    from ..builder import create_model

    if args.model in registry.list_models():
        preset = registry.get_preset(args.model)
        C, H, W = preset.image_shape
        overrides = {}
        if not args.full_width:
            accepted = registry.accepted_args(registry.get_backbone_class(preset.backbone), ("in_channels",))
            overrides = {k: v for k, v in _NARROW.items() if accepted is None or k in accepted}
        if args.size:
            overrides["image_shape"] = (C, *args.size)
        return create_model(args.model, **overrides).to(device).eval()
    return load_model(args.model, device)


def run(args: argparse.Namespace) -> int:
    from ..receptive_field import declared_receptive_field, receptive_field

    apply_threads(args)
    model = _build(args, pick_device(args.device))
    _, H, W = model.image_shape
    if args.size:
        H, W = args.size
    position = tuple(args.position) if args.position else (H // 2, W // 2)
    if not (0 <= position[0] < H and 0 <= position[1] < W):
        raise ValueError(f"--position must lie in the {H}x{W} image, got {position}")
    try:
        declared = declared_receptive_field(model, H, W)[position]
    except NotImplementedError as e:
        declared = None
        print(f"note: {e}")
    if declared is not None:
        print(_summary("declared", declared, position))
        print("\n".join(field_map(declared, position)))
    if args.measured or declared is None:
        measured = receptive_field(model, (H, W), position=position)
        print(_summary("measured", measured, position))
        print("\n".join(field_map(measured, position)))
        if declared is not None:
            diff = int((measured ^ declared).sum())
            print("measured == declared" if diff == 0 else f"measured != declared: {diff} pixels differ")
            return 0 if diff == 0 else 1
    return 0
