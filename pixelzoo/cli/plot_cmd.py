"""``pixelzoo plot RUN_DIR --out curve.png``: training and evaluation bits/dim against steps (metrics.jsonl).

Needs matplotlib (``pip install 'pixelzoo[plot]'``), imported only here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="plot a run's train and eval bits/dim against steps (matplotlib)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run directory (holding metrics.jsonl) or a metrics.jsonl file")
    p.add_argument("--out", default="curve.png", help="PNG to write (default curve.png)")
    p.add_argument("--title", default=None)
    p.add_argument("--ymax", type=float, default=None,
                   help="top of the bits/dim axis (default: the highest point; the first steps' losses, near 8 "
                        "bits/dim, flatten the rest of a long run)")
    p.set_defaults(func=run)


def read_curves(path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train bits/dim) and (step, eval bits/dim) pairs from a metrics.jsonl, in file order."""
    train, evals = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {n} is not JSON ({e})") from None
        if record.get("kind") == "train" and record.get("loss_bpd") is not None:
            train.append((int(record["step"]), float(record["loss_bpd"])))
        elif record.get("kind") == "eval":
            evals.append((int(record["step"]), float(record["bits_per_dim"])))
    return train, evals


def run(args: argparse.Namespace) -> int:
    path = Path(args.run)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"no metrics.jsonl at {path}: pass a run directory written by pixelzoo train")
    if args.ymax is not None and not args.ymax > 0:
        raise ValueError(f"--ymax must be a positive number of bits/dim, got {args.ymax}")
    train, evals = read_curves(path)
    if not train and not evals:
        raise ValueError(f"{path} holds no train or eval records to plot")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("pixelzoo plot needs matplotlib: pip install 'pixelzoo[plot]'") from None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if train:
        ax.plot(*zip(*train), lw=0.8, alpha=0.8, label="train (batch mean)")
    if evals:
        ax.plot(*zip(*evals), "o-", lw=1.5, label="eval (EMA weights)")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    ax.set_title(args.title or str(path.parent.name))
    if args.ymax is not None:
        lowest = min(v for _, v in train + evals)
        ax.set_ylim(min(lowest, args.ymax) - 0.05 * max(args.ymax - lowest, 0.1), args.ymax)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out} ({len(train)} train and {len(evals)} eval points)")
    return 0
