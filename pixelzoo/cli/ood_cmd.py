"""``pixelzoo ood``: how well likelihood-based scores tell an OOD set from the in-distribution set.

Scores (higher = more OOD): ``likelihood`` (the model's bits/dim), ``background_ratio`` (model minus
--background, Ren et al. 2019), ``local_ratio`` (model minus --local, Zhang et al. 2021) and ``complexity_<c>``
for each compressor c (bits/dim minus the compressed length per dim, Serrà et al. 2020). Metrics: AUROC,
AUPRC (OOD as positives), and FPR at 80% / 95% TPR.

Examples:
    pixelzoo ood --model hub/pixelcnnpp-fashion-mnist --local hub/pixelcnnpp-fashion-mnist-local \\
        --background hub/pixelcnnpp-fashion-mnist-background \\
        --in-data fashion_mnist_test.npz --ood-data mnist_test.npz --json ood.json --plot ood.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .common import apply_threads, pick_device
from .eval_cmd import load_model_or_checkpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ood", help="OOD detection scores and metrics (likelihood, ratios, input complexity)",
                       description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--model", required=True, help="the foreground model (folder, Hub id, run, or preset)")
    p.add_argument("--background", default=None, help="a background model (trained with --mutation-rate)")
    p.add_argument("--local", default=None, help="a local model (small receptive field, same data)")
    p.add_argument("--in-data", required=True, help="in-distribution data")
    p.add_argument("--ood-data", required=True, help="out-of-distribution data")
    p.add_argument("--in-split", default="test", choices=["train", "test"])
    p.add_argument("--ood-split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, default=None, help="the first N images of each set")
    p.add_argument("--compressors", default="png", help="comma-separated, from png, zlib, bz2, lzma (default png)")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--json", default=None, help="write the metrics (one object keyed by score) here")
    p.add_argument("--scores", default=None, help="write every image's scores here (.npz)")
    p.add_argument("--plot", default=None, help="write the in/out histograms of every score here (PNG; matplotlib)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _load_set(spec: str, split: str, limit: int | None, what: str, image_shape, bits: int):
    from ..data import load_dataset

    data = load_dataset(spec, split)
    if limit is not None:
        data = data.subset(limit)
    if len(data) == 0:
        raise ValueError(f"{what} {spec!r} holds no images")
    if tuple(data.image_shape) != tuple(image_shape):
        raise ValueError(f"{what} {spec!r} holds {tuple(data.image_shape)} images but the models take "
                         f"{tuple(image_shape)}")
    if data.bits != bits:
        raise ValueError(f"{what} {spec!r} holds {data.bits}-bit images but the models take {bits}-bit ones")
    return data


def compute_scores(model, images, labels, *, background=None, local=None, compressors=("png",),
                   batch_size: int = 200, progress: bool = True, tag: str = "") -> dict[str, torch.Tensor]:
    """Every score of every image. Shape: images (N, C, H, W) -> {score name: (N,)}"""
    from ..ood import complexity_score, nll_bits_per_dim

    kw = dict(batch_size=batch_size, progress=progress)
    nll = nll_bits_per_dim(model, images, labels, desc=f"model {tag}", **kw)
    scores = {"likelihood": nll}
    for name, other in (("background_ratio", background), ("local_ratio", local)):
        if other is not None:
            scores[name] = nll - nll_bits_per_dim(other, images, None, desc=f"{name.split('_')[0]} {tag}", **kw)
    for c in compressors:
        scores[f"complexity_{c}"] = complexity_score(model, images, compressor=c, nll_bpd=nll)
    return scores


def plot_histograms(in_scores: dict, out_scores: dict, metrics: dict, path: str | Path, *,
                    in_name: str = "in", out_name: str = "out") -> Path:
    """One panel per score: histograms of the in-distribution and OOD scores, AUROC in the title."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'pixelzoo[plot]'") from None
    names = list(in_scores)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        a, b = in_scores[name].numpy(), out_scores[name].numpy()
        lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
        bins = torch.linspace(float(lo), float(hi), 60).numpy()
        ax.hist(a, bins=bins, alpha=0.6, label=in_name, density=True)
        ax.hist(b, bins=bins, alpha=0.6, label=out_name, density=True)
        ax.set_title(f"{name}\nAUROC {metrics[name]['auroc']:.3f}", fontsize=10)
        ax.set_xlabel("score (higher = more OOD)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def format_table(metrics: dict) -> str:
    lines = [f"{'score':<20} {'AUROC':>7} {'AUPRC':>7} {'FPR80':>7} {'FPR95':>7}"]
    for name, m in metrics.items():
        lines.append(f"{name:<20} {m['auroc']:>7.4f} {m['auprc']:>7.4f} {m['fpr80']:>7.4f} {m['fpr95']:>7.4f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..ood import COMPRESSORS, ood_metrics
    from ..ood.scores import check_same_images

    apply_threads(args)
    compressors = [c.strip() for c in args.compressors.split(",") if c.strip()]
    unknown = [c for c in compressors if c not in COMPRESSORS]
    if unknown:
        raise ValueError(f"unknown compressor(s) {unknown}; supported: {sorted(COMPRESSORS)}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    device = pick_device(args.device)
    model = load_model_or_checkpoint(args.model, device)
    others = {}
    for name in ("background", "local"):
        spec = getattr(args, name)
        if spec is not None:
            others[name] = load_model_or_checkpoint(spec, device)
            if others[name].num_classes:
                raise ValueError(f"the --{name} model is class-conditional; a ratio needs an unconditional model")
            try:
                check_same_images(model, others[name])
            except ValueError as e:
                raise ValueError(f"--{name}: {e}") from None
    sets = {}
    for tag, spec, split in (("in", args.in_data, args.in_split), ("ood", args.ood_data, args.ood_split)):
        sets[tag] = _load_set(spec, split, args.limit, f"--{tag}-data", model.image_shape, model.bits)
    scores = {}
    for tag, data in sets.items():
        labels = data.labels if model.num_classes else None
        if model.num_classes and labels is None:
            raise ValueError(f"the model is class-conditional but --{tag}-data has no labels")
        scores[tag] = compute_scores(model, data.images, labels, background=others.get("background"),
                                     local=others.get("local"), compressors=compressors,
                                     batch_size=args.batch_size, progress=not args.no_progress, tag=tag)
    metrics = {name: ood_metrics(scores["in"][name], scores["ood"][name]) for name in scores["in"]}
    print(f"in: {len(sets['in'])} images of {sets['in'].name}; OOD: {len(sets['ood'])} images of {sets['ood'].name}")
    print(format_table(metrics))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    if args.scores:
        import numpy as np

        np.savez(args.scores, **{f"{tag}_{name}": v.numpy() for tag in scores for name, v in scores[tag].items()})
    if args.plot:
        # the legend names the files, not their whole paths
        path = plot_histograms(scores["in"], scores["ood"], metrics, args.plot, in_name=Path(sets["in"].name).name,
                               out_name=Path(sets["ood"].name).name)
        print(f"wrote {path}")
    return 0
