"""A prior over discrete codes, end to end: k-means codebook -> code maps -> pixelzoo prior -> decoded samples.

1. ``quantize``: cut every MNIST image (28x28) into 49 non-overlapping 4x4 patches and learn a codebook of
   K = 512 patches with k-means (Lloyd's algorithm in torch, k-means++ seeding on a subsample); each image
   becomes a 7x7 map of codes. Writes ``OUT/codes.npz`` (``train_images``/``test_images``: (N, 7, 7) codes,
   ``bits`` = 9) and ``OUT/codebook.npy`` (512, 16).
2. Train the prior with the ordinary trainer (printed command; ``pixelzoo train`` reads ``codes.npz`` as any
   dataset): ``pixelcnnpp_dilated`` (full resolution: 7x7 is not a multiple of 4) + ``categorical``.
3. ``report``: bits per code on the test maps for the prior and for two baselines that need no network: the
   code frequencies' entropy (one categorical for every position; its cross-entropy on the test maps) and a
   prior without spatial context (an independent categorical per position, 49 of them). Samples at T = 1 and
   T = 0.7, decoded through the codebook, go to ``docs/code_prior_samples.png``; figures to
   ``docs/code_prior.json``.

    python scripts/code_prior_demo.py quantize --data-dir ../shared/data --out runs/codes
    pixelzoo train --backbone pixelcnnpp_dilated --head categorical --set image_shape=[1,7,7] --set num_codes=512 \\
        --set nr_filters=64 --set nr_resnet=2 --set dilations=[1,2,4] --set dropout=0.0 --data runs/codes/codes.npz \\
        --batch-size 64 --steps 3000 --ema-decay 0.999 --ema-warmup --out runs/code_prior
    python scripts/code_prior_demo.py report --codes runs/codes --model runs/code_prior/model
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

PATCH, K = 4, 512


def patches_of(images: np.ndarray) -> torch.Tensor:
    """(N, 28, 28) uint8 -> (N, 7, 7, 16) float patches in [0, 1]."""
    x = torch.from_numpy(images).float() / 255.0
    n, h, w = x.shape
    x = x.view(n, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 1, 3, 2, 4)
    return x.reshape(n, h // PATCH, w // PATCH, PATCH * PATCH)


def nearest(points: torch.Tensor, centres: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index of the nearest centre of every point (squared Euclidean), in chunks."""
    out = torch.empty(len(points), dtype=torch.int64)
    c2 = (centres ** 2).sum(1)
    for s in range(0, len(points), chunk):
        p = points[s:s + chunk]
        out[s:s + chunk] = (c2[None] - 2 * p @ centres.T).argmin(1)
    return out


def kmeans(points: torch.Tensor, k: int, iters: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    sub = points[torch.randperm(len(points), generator=g)[:50000]]
    centres = [sub[torch.randint(len(sub), (1,), generator=g)].squeeze(0)]
    d2 = ((sub - centres[0]) ** 2).sum(1)
    for _ in range(k - 1):  # k-means++ seeding
        nxt = sub[torch.multinomial(d2 / d2.sum(), 1, generator=g)].squeeze(0)
        centres.append(nxt)
        d2 = torch.minimum(d2, ((sub - nxt) ** 2).sum(1))
    centres = torch.stack(centres)
    for it in range(iters):
        idx = nearest(points, centres)
        sums = torch.zeros_like(centres).index_add_(0, idx, points)
        counts = torch.bincount(idx, minlength=k).float()
        empty = counts == 0
        centres = torch.where(empty[:, None], centres, sums / counts.clamp(min=1)[:, None])
        if empty.any():  # re-seed empty clusters on random points
            centres[empty] = points[torch.randint(len(points), (int(empty.sum()),), generator=g)]
        print(f"k-means iteration {it + 1}/{iters}: {int(empty.sum())} empty clusters", flush=True)
    return centres


def quantize(args) -> None:
    train = np.load(args.data_dir / "mnist_train.npz")["images"]
    test = np.load(args.data_dir / "mnist_test.npz")["images"]
    t0 = time.time()
    pts = patches_of(train).reshape(-1, PATCH * PATCH)
    codebook = kmeans(pts, K, args.iters)
    codes = {name: nearest(patches_of(x).reshape(-1, PATCH * PATCH), codebook).view(len(x), 7, 7).numpy()
             for name, x in (("train", train), ("test", test))}
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "codes.npz", train_images=codes["train"].astype(np.int16),
                        test_images=codes["test"].astype(np.int16), bits=np.int64(9))
    np.save(args.out / "codebook.npy", codebook.numpy())
    err = float(((decode(codes["test"], codebook.numpy()) - test / 255.0) ** 2).mean())
    print(f"codebook of {K} 4x4 patches in {time.time() - t0:.0f} s; test reconstruction MSE {err:.5f} "
          f"(pixels in [0, 1]); used codes: {len(np.unique(codes['train']))}")


def decode(codes: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """(N, 7, 7) codes -> (N, 28, 28) images in [0, 1]."""
    n = len(codes)
    p = codebook[codes.reshape(-1)].reshape(n, 7, 7, PATCH, PATCH)
    return p.transpose(0, 1, 3, 2, 4).reshape(n, 7 * PATCH, 7 * PATCH)


def baselines(train: np.ndarray, test: np.ndarray) -> dict:
    """Test cross-entropy in bits per code of a global and of a per-position categorical (add-one smoothing)."""
    glob = np.bincount(train.reshape(-1), minlength=K) + 1.0
    glob /= glob.sum()
    unigram = float(-np.log2(glob[test.reshape(-1)]).mean())
    flat_train, flat_test = train.reshape(len(train), -1), test.reshape(len(test), -1)
    per_pos = []
    for j in range(flat_train.shape[1]):
        p = np.bincount(flat_train[:, j], minlength=K) + 1.0
        p /= p.sum()
        per_pos.append(-np.log2(p[flat_test[:, j]]))
    return {"code_frequencies_entropy": unigram, "per_position_prior": float(np.mean(per_pos)),
            "train_code_entropy": float(-(glob * np.log2(glob)).sum())}


def report(args) -> None:
    import pixelzoo
    from PIL import Image

    from pixelzoo.data import load_dataset
    from pixelzoo.evaluation import evaluate

    codes = np.load(args.codes / "codes.npz")
    codebook = np.load(args.codes / "codebook.npy")
    train, test = codes["train_images"].astype(np.int64), codes["test_images"].astype(np.int64)
    figures = baselines(train, test)
    model = pixelzoo.from_pretrained(args.model).eval()
    result = evaluate(model, load_dataset(args.codes / "codes.npz", "test"), batch_size=500)
    figures["prior_bits_per_code"] = result["bits_per_dim"]
    figures["test_maps"] = result["num_images"]
    rows = []
    for t in (1.0, 0.7):
        s = model.sample(args.n, generator=torch.Generator().manual_seed(0), temperature=t)[:, 0].numpy()
        rows.append(decode(s, codebook))
    real = decode(test[:args.n], codebook)
    pad = 2
    canvas = np.ones(((28 + pad) * 3 + pad, (28 + pad) * args.n + pad))
    for r, imgs in enumerate([real, *rows]):
        for i, im in enumerate(imgs):
            canvas[pad + r * (28 + pad):pad + r * (28 + pad) + 28, pad + i * (28 + pad):pad + i * (28 + pad) + 28] = im
    out = Path(args.docs)
    out.mkdir(parents=True, exist_ok=True)
    big = np.kron(np.clip(canvas, 0, 1), np.ones((2, 2)))
    Image.fromarray((big * 255).round().astype(np.uint8)).save(out / "code_prior_samples.png", optimize=True)
    figures["uniform_bits_per_code"] = math.log2(K)
    (out / "code_prior.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("--data-dir", type=Path, required=True)
    q.add_argument("--out", type=Path, default=Path("runs/codes"))
    q.add_argument("--iters", type=int, default=15)
    r = sub.add_parser("report")
    r.add_argument("--codes", type=Path, default=Path("runs/codes"))
    r.add_argument("--model", required=True)
    r.add_argument("--docs", default="docs")
    r.add_argument("-n", type=int, default=12)
    args = p.parse_args()
    torch.set_num_threads(1)
    quantize(args) if args.cmd == "quantize" else report(args)


if __name__ == "__main__":
    main()
