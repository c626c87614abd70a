"""``pixelzoo list [PATTERN]``: registered presets, backbones and heads."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered presets, backbones and heads")
    p.add_argument("pattern", nargs="?", default="", help="fnmatch filter, e.g. '*cifar*'")
    p.add_argument("--kind", choices=["models", "backbones", "heads", "all"], default="all")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import registry

    if args.kind in ("models", "all"):
        for name in registry.list_models(args.pattern):
            preset = registry.get_preset(name)
            bpd = preset.metadata.get("paper_bits_per_dim")
            extra = f"  paper: {bpd} bits/dim" if bpd else ""
            hub = f"  hub: {preset.hub_id}" if preset.hub_id else ""
            print(f"model     {name:32s} {preset.backbone} + {preset.head} {tuple(preset.image_shape)}{extra}{hub}")
    if args.kind in ("backbones", "all"):
        for name in registry.list_backbones(args.pattern):
            print(f"backbone  {name}")
    if args.kind in ("heads", "all"):
        for name in registry.list_heads(args.pattern):
            print(f"head      {name}")
    return 0
