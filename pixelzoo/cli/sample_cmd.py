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
    p.add_argument("--temperature", type=float, default=1.0,
                   help="T > 0: categorical/softmax logits / T; logistic mixtures: mixture logits / T and scales x T "
                   "(default 1: the model itself)")
    p.add_argument("--cond-map", default=None, help="conditioning maps (n, D, h, w) in a .npy, for models with "
                   "cond_channels")
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
    if model.num_codes and not args.npy:
        raise ValueError("this model samples maps of discrete codes, not images: pass --npy PATH to save them (decode "
                         "them with the codebook or VQ-VAE they came from)")
    cond_map = None
    if args.cond_map is not None:
        cond_map = torch.from_numpy(np.load(args.cond_map, allow_pickle=False)).float()
    gen = torch.Generator(device=device).manual_seed(args.seed)
    images = model.sample(args.num, labels, cond_map=cond_map, method=args.method, generator=gen,
                          temperature=args.temperature).cpu()
    if args.npy:
        np.save(args.npy, images.numpy())
    if model.num_codes:
        print(f"wrote {images.shape[0]} code maps of shape {tuple(images.shape[1:])} to {args.npy}")
        return 0
    path = save_grid(images, args.out, bits=model.bits, scale=args.scale)
    print(f"wrote {images.shape[0]} samples of shape {tuple(images.shape[1:])} to {path}")
    return 0
