"""The README's CIFAR-10 figures: samples from a model, and completions of real test images.

    python scripts/cifar10_figures.py --model hub/pixelcnnpp-cifar10-small --test cifar10/cifar10_test.npz

Writes docs/cifar10_samples.png (an 8x8 grid) and docs/cifar10_completions.png: one column per test image (the
first test image of each of 8 classes); rows: the image, its top half with the bottom greyed out, then
``--completions`` samples of the bottom half given the top half.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import pixelzoo
from pixelzoo.data import load_dataset
from pixelzoo.images import atomic_write_bytes, save_grid


def first_of_each_class(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Indices of the first image of classes 0..classes-1, in class order."""
    return torch.stack([torch.nonzero(labels == k)[0, 0] for k in range(classes)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder or Hub id")
    p.add_argument("--test", required=True, help="CIFAR-10 test set (.npz)")
    p.add_argument("--out-dir", default="docs")
    p.add_argument("--num-samples", type=int, default=64)
    p.add_argument("--columns", type=int, default=8)
    p.add_argument("--completions", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    model = pixelzoo.from_pretrained(args.model)
    H = model.image_shape[1]

    t0 = time.perf_counter()
    samples = model.sample(args.num_samples, generator=torch.Generator().manual_seed(args.seed))
    t_samples = time.perf_counter() - t0
    save_grid(samples, out / "cifar10_samples.png", nrow=args.columns, scale=2)

    test = load_dataset(args.test, "test")
    idx = first_of_each_class(test.labels, args.columns)
    originals = test.images[idx]
    keep = H // 2
    greyed = originals.clone()
    greyed[:, :, keep:] = 128
    gen = torch.Generator().manual_seed(args.seed + 1)
    t0 = time.perf_counter()
    filled = [model.complete(originals, keep, generator=gen) for _ in range(args.completions)]
    t_complete = time.perf_counter() - t0
    rows = torch.cat([originals, greyed, *filled]).to(torch.uint8)
    save_grid(rows, out / "cifar10_completions.png", nrow=args.columns, scale=2)

    record = {"model": args.model, "seed": args.seed, "num_samples": args.num_samples,
              "sample_seconds": round(t_samples, 1), "test_indices": idx.tolist(), "rows_kept": keep,
              "completions_per_image": args.completions, "complete_seconds": round(t_complete, 1),
              "threads": args.threads}
    atomic_write_bytes(out / "cifar10_figures.json", (json.dumps(record, indent=2) + "\n").encode())
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
