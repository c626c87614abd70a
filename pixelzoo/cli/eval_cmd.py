"""``pixelzoo eval MODEL``: bits/dim of a model on every image of a dataset split."""
from __future__ import annotations

import argparse
import json

from .common import add_model_argument, apply_threads, load_model, pick_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="bits/dim of a model on a dataset split")
    add_model_argument(p)
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
    model = load_model(args.model, pick_device(args.device))
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
