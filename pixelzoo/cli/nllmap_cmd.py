"""``pixelzoo nllmap MODEL --data DATA --out map.png``: images beside heat maps of their bits per pixel.

Each image stands beside its map of ``-log2 p(pixel | everything before it)`` (the channels of a pixel summed:
for RGB, R + G given R + B given R and G), from ``model.nll_map``. Bright is expensive. The colour scale is
shared by all rows, from 0 to the 99th percentile of the maps (or --vmax), and printed.

Examples:
    pixelzoo nllmap hub/pixelcnnpp-fashion-mnist --data mnist_test.npz --limit 8 --out mnist_map.png
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from .common import add_model_argument, apply_threads, pick_device
from .eval_cmd import add_weights_argument, load_model_or_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nllmap", help="images beside heat maps of their per-pixel bits (nll_map)",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=__doc__.split("\n", 2)[2])
    add_model_argument(p)
    add_weights_argument(p)
    p.add_argument("--data", default="bundled", help="dataset (default: the bundled MNIST subset)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, default=16, help="the first N images (default 16)")
    p.add_argument("--out", default="nllmap.png", help="PNG to write (default nllmap.png)")
    p.add_argument("--vmax", type=float, default=None, help="top of the colour scale in bits per pixel")
    p.add_argument("--scale", type=int, default=4, help="integer upscaling (default 4)")
    p.add_argument("--cols", type=int, default=4, help="(image, map) pairs per row (default 4)")
    p.add_argument("--no-progress", action="store_true", help="(accepted for symmetry; nothing long runs)")
    p.set_defaults(func=run)


def nll_map_picture(images: torch.Tensor, bits_map: torch.Tensor, *, bits: int, vmax: float,
                    scale: int = 4, padding: int = 2, cols: int = 4) -> np.ndarray:
    """Each image beside its heat map, ``cols`` such pairs per row, on a white canvas.

    Shape:
        images: (N, C, H, W) integer levels; bits_map: (N, H, W) bits per pixel -> (height, width, 3) uint8
    """
    from ..images import heat_colors

    N, C, H, W = images.shape
    pix = images.detach().cpu().double() * (255.0 / (2**bits - 1))
    pix = pix.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    if C == 1:
        pix = np.repeat(pix, 3, axis=-1)
    heat = heat_colors(bits_map, vmax)
    h, w = H * scale, W * scale
    cols = max(1, min(cols, N))
    rows = -(-N // cols)
    canvas = np.full((rows * (h + padding) + padding, 2 * cols * (w + padding) + padding, 3), 255, dtype=np.uint8)
    for n in range(N):
        top = padding + (n // cols) * (h + padding)
        for k, tile in enumerate((pix[n], heat[n])):
            left = padding + (2 * (n % cols) + k) * (w + padding)
            canvas[top:top + h, left:left + w] = tile.repeat(scale, 0).repeat(scale, 1)
    return canvas


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..images import save_png

    apply_threads(args)
    if args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    model = load_model_or_checkpoint(args.model, pick_device(args.device), args.weights)
    data = load_dataset(args.data, args.split).subset(args.limit)
    if tuple(data.image_shape) != tuple(model.image_shape):
        raise ValueError(f"the data holds {tuple(data.image_shape)} images but the model takes "
                         f"{tuple(model.image_shape)}")
    x = data.images.to(model.device)
    labels = data.labels[: len(x)].to(model.device) if model.num_classes else None
    with torch.no_grad():
        nats = model.nll_map(x, labels)
    bits_map = (nats.sum(dim=1) / math.log(2.0)).cpu()
    vmax = args.vmax if args.vmax is not None else float(torch.quantile(bits_map.flatten().double(), 0.99))
    picture = nll_map_picture(x.cpu(), bits_map, bits=model.bits, vmax=vmax, scale=args.scale, cols=args.cols)
    path = save_png(picture, args.out)
    per_dim = float(nats.sum()) / (nats.numel() * math.log(2.0))
    print(f"wrote {len(x)} images and their maps to {path}; colour scale 0 .. {vmax:.2f} bits per pixel; "
          f"mean {per_dim:.4f} bits per dim")
    return 0
