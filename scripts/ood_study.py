"""What each OOD score needs: AUROC against the foreground's training steps and against the mutation rate, and
where the likelihood ratios get their signal (background vs stroke pixels, from ``nll_map``).

Reads the foreground snapshots that scripts/train_with_snapshots.py left (``RUN/snapshots/step*``), the local
model, the background candidates of scripts/background_study.py and the published background model; scores the
first ``--limit`` images of the in-distribution and OOD test sets; writes ``docs/ood_study.json`` and
``docs/ood_study.png``.

    python scripts/ood_study.py --snapshots runs/fmnist/snapshots --local hub/pixelcnnpp-fashion-mnist-local \\
        --background hub/pixelcnnpp-fashion-mnist-background --candidates runs/bg_study \\
        --in-data ../shared/data/fashion_mnist_test.npz --ood-data ../shared/data/mnist_test.npz --limit 2000
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import torch


def step_of(path: Path) -> int:
    return int(re.search(r"step(\d+)", path.name).group(1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--snapshots", type=Path, required=True)
    p.add_argument("--local", required=True)
    p.add_argument("--background", required=True)
    p.add_argument("--candidates", type=Path, default=None, help="background_study.py's folder (study.json)")
    p.add_argument("--in-data", required=True)
    p.add_argument("--ood-data", required=True)
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--docs", type=Path, default=Path("docs"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    import pixelzoo
    from pixelzoo.data import load_dataset
    from pixelzoo.ood import complexity_score, nll_bits_per_dim, ood_metrics

    sets = {k: load_dataset(v, "test").subset(args.limit).images for k, v in (("in", args.in_data),
                                                                              ("out", args.ood_data))}
    local = pixelzoo.from_pretrained(args.local).eval()
    background = pixelzoo.from_pretrained(args.background).eval()
    ref = {name: {k: nll_bits_per_dim(m, x, progress=True, desc=f"{name} {k}") for k, x in sets.items()}
           for name, m in (("local", local), ("background", background))}
    auroc = lambda s: ood_metrics(s["in"], s["out"])["auroc"]  # noqa: E731
    results = {"limit": args.limit, "in_data": args.in_data, "ood_data": args.ood_data, "by_step": []}
    snapshots = sorted(args.snapshots.glob("step*"), key=step_of)
    for snap in snapshots:
        fg = pixelzoo.from_pretrained(snap).eval()
        nll = {k: nll_bits_per_dim(fg, x, progress=True, desc=f"{snap.name} {k}") for k, x in sets.items()}
        row = {"step": step_of(snap), "fg_bpd_in": float(nll["in"].mean()), "fg_bpd_out": float(nll["out"].mean()),
               "likelihood": auroc(nll),
               "local_ratio": auroc({k: nll[k] - ref["local"][k] for k in nll}),
               "background_ratio": auroc({k: nll[k] - ref["background"][k] for k in nll}),
               "complexity_png": auroc({k: complexity_score(fg, sets[k], nll_bpd=nll[k]) for k in nll})}
        results["by_step"].append(row)
        print(json.dumps(row), flush=True)
    last = pixelzoo.from_pretrained(snapshots[-1]).eval()
    fg_last = {k: nll_bits_per_dim(last, x) for k, x in sets.items()}
    if args.candidates is not None and (args.candidates / "study.json").exists():
        study = json.loads((args.candidates / "study.json").read_text())
        results["by_mutation_rate"] = []
        for c in study["candidates"]:
            bg = pixelzoo.from_pretrained(Path(c["run"]) / "model").eval()
            bg_nll = {k: nll_bits_per_dim(bg, x) for k, x in sets.items()}
            results["by_mutation_rate"].append({
                "mutation_rate": c["mutation_rate"], "weight_decay": c["weight_decay"],
                "val_auroc": c["val_auroc"], "background_ratio": auroc({k: fg_last[k] - bg_nll[k] for k in sets})})
            print(json.dumps(results["by_mutation_rate"][-1]), flush=True)
    # Where the ratios' signal sits: mean (fg - reference) bits on background (level 0) and on stroke pixels.
    results["per_pixel"] = {}
    with torch.no_grad():
        for name, m in (("local", local), ("background", background)):
            part = {}
            for k, x in sets.items():
                d = torch.cat([(last.nll_map(x[i:i + 500]) - m.nll_map(x[i:i + 500])).sum(1)
                               for i in range(0, len(x), 500)]) / math.log(2)
                dark = x[:, 0] == 0
                part[k] = {"background_pixels": float(d[dark].mean()), "stroke_pixels": float(d[~dark].mean()),
                           "share_of_background_pixels": float(dark.float().mean())}
            results["per_pixel"][name] = part
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "ood_study.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.docs / "ood_study.png")
    print(json.dumps(results["per_pixel"], indent=2))
    return 0


def _finish(ax, xlabel: str, ylabel: str, fontsize: int) -> None:
    ax.axhline(0.5, color="grey", lw=0.5)  # chance
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=fontsize)
    ax.grid(alpha=0.3)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if results.get("by_mutation_rate") else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.6), squeeze=False)
    ax = axes[0][0]
    steps = [r["step"] for r in results["by_step"]]
    for key in ("likelihood", "local_ratio", "background_ratio", "complexity_png"):
        ax.plot(steps, [r[key] for r in results["by_step"]], "o-", label=key, ms=3)
    _finish(ax, "foreground training steps", "AUROC (Fashion-MNIST vs MNIST)", 8)
    if panels == 2:
        ax = axes[0][1]
        rows = results["by_mutation_rate"]
        for wd in sorted({r["weight_decay"] for r in rows}):
            sel = sorted((r for r in rows if r["weight_decay"] == wd), key=lambda r: r["mutation_rate"])
            ax.plot([r["mutation_rate"] for r in sel], [r["background_ratio"] for r in sel], "o-",
                    label=f"test, weight decay {wd:g}")
            ax.plot([r["mutation_rate"] for r in sel], [r["val_auroc"] for r in sel], "x--",
                    label=f"validation (digits 8x8), wd {wd:g}")
        _finish(ax, "mutation rate of the background model", "background-ratio AUROC", 7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
