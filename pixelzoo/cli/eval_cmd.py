"""``pixelzoo eval MODEL``: bits/dim of a model on every image of a dataset split.

MODEL is a training run (its directory or ``checkpoint.pt``: the EMA weights by default), a local model
folder, a Hub repo id, or a preset name (fresh, untrained weights).
"""
from __future__ import annotations

import argparse
import json

import torch

from .common import add_model_argument, apply_threads, load_model, pick_device


def load_model_or_checkpoint(spec: str, device: torch.device, weights: str = "ema"):
    """A training checkpoint (run directory or ``.pt``; its ``weights``: "ema" or "model") or what
    ``load_model`` takes (preset, model folder, Hub id); in eval mode on ``device``."""
    from ..checkpoint import is_checkpoint_spec, model_from_checkpoint

    if is_checkpoint_spec(spec):
        return model_from_checkpoint(spec, weights, device)
    return load_model(spec, device)


def add_weights_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default="ema", choices=["ema", "model"],
                   help="for a training checkpoint: the EMA weights (default) or the raw ones")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="bits/dim of a model on a dataset split")
    add_model_argument(p)
    add_weights_argument(p)
    p.add_argument("--data", default="bundled", help="dataset (default: the bundled MNIST subset)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..evaluation import evaluate

    apply_threads(args)
    model = load_model_or_checkpoint(args.model, pick_device(args.device), args.weights)
    data = load_dataset(args.data, args.split)
    if args.limit is not None:
        data = data.subset(args.limit)
    result = evaluate(model, data, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
    else:
        rel = "=" if result["exact"] else "≤"
        print(f"{args.model}: bits/dim {rel} {result['bits_per_dim']:.4f} on {result['num_images']} images "
              f"of {data.name}")
    return 0
