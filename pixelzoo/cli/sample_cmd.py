"""``pixelzoo sample MODEL``: draw images and write them as a PNG grid (and optionally .npy).

MODEL is a training run (its directory or ``checkpoint.pt``: the EMA weights by default), a local model
folder, a Hub repo id, or a preset name (fresh, untrained weights).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from .common import add_model_argument, apply_threads, pick_device
from .eval_cmd import add_weights_argument, load_model_or_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample images into a PNG grid")
    add_model_argument(p)
    add_weights_argument(p)
    p.add_argument("-n", "--num", type=int, default=16, help="number of images (default 16)")
    p.add_argument("--out", default="samples.png", help="PNG grid to write (default samples.png)")
    p.add_argument("--npy", default=None, help="also save the integer images (N, C, H, W) to this .npy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, default=None, help="class label for class-conditional models "
                   "(default: cycle through the classes)")
    p.add_argument("--method", default="auto", help="auto | naive | cached")
    p.add_argument("--scale", type=int, default=2, help="integer upscaling of the grid (default 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..images import save_grid

    apply_threads(args)
    device = pick_device(args.device)
    model = load_model_or_checkpoint(args.model, device, args.weights)
    labels = None
    if model.num_classes:
        labels = (torch.full((args.num,), args.label) if args.label is not None
                  else torch.arange(args.num) % model.num_classes)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    images = model.sample(args.num, labels, method=args.method, generator=gen).cpu()
    path = save_grid(images, args.out, bits=model.bits, scale=args.scale)
    if args.npy:
        np.save(args.npy, images.numpy())
    print(f"wrote {images.shape[0]} samples of shape {tuple(images.shape[1:])} to {path}")
    return 0
