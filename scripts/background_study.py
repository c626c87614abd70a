"""Choose the background model's mutation rate and weight decay on validation data (not the MNIST test set).

Trains one background model per (mutation rate, weight decay) for ``--steps`` steps with ``pixelzoo train``,
then scores the likelihood ratio (foreground bits/dim minus background bits/dim) on a validation pair:

* in-distribution: the last ``--val-in`` Fashion-MNIST test images (the foreground never trained on them);
* OOD: the 1,797 UCI optdigits 8x8 digits (``digits_8x8.npz``), levels 0..16 scaled to 0..255 and upsampled
  3x (nearest) into the middle of a 28x28 black canvas: blocky digits, a stand-in for MNIST as NotMNIST was in
  Ren et al. (2019).

Writes ``--out/study.json`` with the validation AUROC of every candidate; the best one is continued with
``pixelzoo train --out RUN --resume --steps N`` to become the published background model.

    python scripts/background_study.py --data-dir ../shared/data --foreground runs/fmnist/snapshots/step1000 \\
        --rates 0.1 0.2 0.3 --weight-decays 0 --steps 600 --out runs/bg_study
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch


def digits_as_28x28(path: Path) -> torch.Tensor:
    """UCI optdigits (N, 8, 8) with levels 0..16 -> (N, 1, 28, 28) uint8: 3x nearest upsampling, centred."""
    d = np.load(path)["images"].astype(np.float64)
    x = np.round(d * 255.0 / 16.0).astype(np.uint8).repeat(3, axis=1).repeat(3, axis=2)
    out = np.zeros((len(x), 28, 28), np.uint8)
    out[:, 2:26, 2:26] = x
    return torch.from_numpy(out)[:, None]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with fashion_mnist_{train,test}.npz, "
                   "digits_8x8.npz")
    p.add_argument("--foreground", required=True, help="the foreground model folder the ratio uses")
    p.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    p.add_argument("--weight-decays", type=float, nargs="+", default=[0.0])
    p.add_argument("--pairs", nargs="+", default=None, metavar="RATE:DECAY",
                   help="explicit (rate, weight decay) candidates instead of the grid, e.g. 0.1:0 0.2:1e-3")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--val-in", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("runs/bg_study"))
    args = p.parse_args(argv)

    import pixelzoo
    from pixelzoo.data import load_dataset
    from pixelzoo.ood import nll_bits_per_dim, ood_metrics

    torch.set_num_threads(args.threads)
    fashion_test = load_dataset(args.data_dir / "fashion_mnist_test.npz", "test")
    val_in = fashion_test.images[-args.val_in:]
    val_out = digits_as_28x28(args.data_dir / "digits_8x8.npz")
    fg = pixelzoo.from_pretrained(args.foreground).eval()
    fg_in, fg_out = nll_bits_per_dim(fg, val_in), nll_bits_per_dim(fg, val_out)
    results = {"foreground": str(args.foreground), "val_in": f"last {args.val_in} Fashion-MNIST test images",
               "val_out": "1,797 UCI optdigits, 3x upsampled into 28x28", "steps": args.steps,
               "likelihood_auroc": ood_metrics(fg_in, fg_out)["auroc"], "candidates": []}
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = ([tuple(float(v) for v in pair.split(":")) for pair in args.pairs] if args.pairs else
             [(rate, wd) for rate in args.rates for wd in args.weight_decays])
    for rate, wd in pairs:
        run = args.out / f"rate{rate:g}_wd{wd:g}"
        if not (run / "model" / "model.safetensors").exists():
            cmd = [sys.executable, "-m", "pixelzoo", "train", "pixelcnnpp_fashion_mnist_background",
                   "--data", str(args.data_dir / "fashion_mnist_train.npz"), "--mutation-rate", str(rate),
                   "--weight-decay", str(wd), "--steps", str(args.steps), "--batch-size", "32",
                   "--ema-decay", "0.999", "--ema-warmup", "--threads", str(args.threads),
                   "--eval-every", "-1", "--sample-every", "-1", "--no-progress", "--out", str(run)]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        bg = pixelzoo.from_pretrained(run / "model").eval()
        bg_in, bg_out = nll_bits_per_dim(bg, val_in), nll_bits_per_dim(bg, val_out)
        m = ood_metrics(fg_in - bg_in, fg_out - bg_out)
        row = {"mutation_rate": rate, "weight_decay": wd, "run": str(run), "val_auroc": m["auroc"],
               "bg_bpd_in": float(bg_in.mean()), "bg_bpd_out": float(bg_out.mean())}
        results["candidates"].append(row)
        print(json.dumps(row), flush=True)
        (args.out / "study.json").write_text(json.dumps(results, indent=2) + "\n")
    best = max(results["candidates"], key=lambda r: r["val_auroc"])
    results["best"] = best
    (args.out / "study.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"best: mutation rate {best['mutation_rate']}, weight decay {best['weight_decay']} "
          f"(validation AUROC {best['val_auroc']:.3f}); continue it with: pixelzoo train --out {best['run']} "
          f"--resume --steps N")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
