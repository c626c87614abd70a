"""``pixelzoo train [MODEL]``: train a preset or a backbone + head on a dataset; resumable.

Examples:
    pixelzoo train pixelcnnpp_mnist --steps 2000 --batch-size 32 --out runs/mnist
    pixelzoo train --backbone pixelcnnpp --head dlogistic --set image_shape=[1,28,28] --set nr_filters=16 ...
    pixelzoo train --out runs/mnist --resume --steps 4000      # continue (the saved settings are reused)
    torchrun --nproc_per_node 8 -m pixelzoo train pixelcnnpp_cifar10 --data cifar-10-batches-py --epochs 100
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


# TrainConfig fields set by a flag of the same name (--out sets out_dir).
_FIELDS = ("init_from", "dtype", "data", "split", "eval_data", "eval_split", "eval_limit", "steps", "epochs",
           "max_minutes", "batch_size", "lr", "lr_decay", "eps", "grad_clip", "ema_decay", "ema_warmup",
           "init_batch_size", "seed", "weight_decay", "mutation_rate", "checkpoint_every", "eval_every",
           "eval_batch_size", "sample_every", "num_samples", "log_every", "device", "bf16", "compile", "compile_kernels",
           "num_workers", "reuse_cpu_memory", "threads")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (resumable; torchrun for many GPUs)",
                       description="Train a preset, or any --backbone + --head, on a dataset. Writes checkpoint.pt, "
                       "metrics.jsonl, sample grids and the EMA model (model/) into --out.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    m = p.add_argument_group("model")
    m.add_argument("model", nargs="?", default=None, help="preset name (pixelzoo list; default pixelcnnpp_mnist)")
    m.add_argument("--backbone", default=None, help="registered backbone (with --head, instead of a preset)")
    m.add_argument("--head", default=None, help="registered head (with a preset: swap the preset's head)")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model argument; VALUE is JSON or a string (e.g. nr_filters=64, dropout=0.5, "
                   "image_shape=[1,28,28]); repeatable")
    m.add_argument("--init-from", default=None, help="start from these weights (model folder, Hub id or checkpoint) "
                   "instead of a fresh initialisation")
    m.add_argument("--dtype", default=None, choices=["float32", "float64"])
    d = p.add_argument_group("data")
    d.add_argument("--data", default=None, nargs="+", help="training data: a path, several paths (joined in order into "
                   "one training set, e.g. the five CIFAR-10 batch files), a folder of .npz batches, or 'bundled' "
                   "(default: the bundled MNIST subset)")
    d.add_argument("--split", default=None, help="split of --data to train on (default train)")
    d.add_argument("--eval-data", default=None, help="evaluation data (default: --data)")
    d.add_argument("--eval-split", default=None, help="split of the evaluation data (default test)")
    d.add_argument("--eval-limit", type=int, default=None, help="evaluate on the first N images only")
    n = p.add_argument_group("length")
    length = n.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help="optimizer steps in total")
    length.add_argument("--epochs", type=int, default=None, help="passes over the training data in total")
    n.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes (checkpoint, evaluate and export first); resume later")
    o = p.add_argument_group("optimisation")
    o.add_argument("--batch-size", type=int, default=None, help="images per process and step (default 16)")
    o.add_argument("--lr", type=float, default=None, help="initial learning rate (default 1e-3)")
    o.add_argument("--lr-decay", type=float, default=None, help="per-step learning-rate factor (default 0.999995)")
    o.add_argument("--eps", type=float, default=None, help="Adam epsilon (default 1e-8)")
    o.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this")
    o.add_argument("--ema-decay", type=float, default=None, help="EMA decay of the weights (default 0.9995)")
    o.add_argument("--ema-warmup", default=None, action=argparse.BooleanOptionalAction,
                   help="ramp the EMA decay up as 1 - (1 + step)^(-2/3), capped at --ema-decay (timm): the EMA then "
                   "tracks short runs (a few thousand steps) instead of averaging in their early weights")
    o.add_argument("--init-batch-size", type=int, default=None, help="images for the data-dependent init "
                   "(default 16; 0 skips it)")
    o.add_argument("--seed", type=int, default=None)
    o.add_argument("--mutation-rate", type=float, default=None, metavar="MU",
                   help="background-model training (Ren et al. 2019): replace each sub-pixel of every training image, "
                   "independently with probability MU, by a uniformly drawn level; fresh draws every step, seeded by "
                   "(seed, step, rank) so resume stays exact (default 0)")
    o.add_argument("--weight-decay", type=float, default=None, metavar="L",
                   help="L2 on the effective weights: Adam's weight decay on the weight-norm gains g (sum g^2 = sum "
                   "||W||^2; decaying the directions v would not change W), none on biases (default 0)")
    r = p.add_argument_group("run directory")
    r.add_argument("--out", default=None, help="run directory (default runs/pixelzoo)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint; without a "
                   "model argument the saved settings are reused (flags given here override the changeable ones)")
    r.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default 500)")
    r.add_argument("--eval-every", type=int, default=None, help="steps between evaluations of the EMA weights "
                   "(default 0: at the end only; -1: never)")
    r.add_argument("--eval-batch-size", type=int, default=None)
    r.add_argument("--sample-every", type=int, default=None, help="steps between sample grids (default 0: at the "
                   "end only; -1: never)")
    r.add_argument("--num-samples", type=int, default=None, help="images per sample grid (default 16)")
    r.add_argument("--log-every", type=int, default=None, help="steps between metrics.jsonl lines (default 10)")
    h = p.add_argument_group("hardware")
    h.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    h.add_argument("--bf16", default=None, action=argparse.BooleanOptionalAction,
                   help="bf16 autocast (default: on for CUDA); the likelihood stays float32")
    h.add_argument("--compile", default=None, action=argparse.BooleanOptionalAction, help="torch.compile the step")
    h.add_argument("--compile-kernels", default=None, action=argparse.BooleanOptionalAction,
                   help="compile single-pass elementwise kernels for the gated resnets (CPU: about 10%% faster steps; "
                   "the first step compiles them, about a minute)")
    h.add_argument("--num-workers", type=int, default=None, help="DataLoader workers (default 0)")
    h.add_argument("--reuse-cpu-memory", default=None, action=argparse.BooleanOptionalAction,
                   help="on the CPU, keep freed tensor memory for reuse instead of page-faulting it in anew each step "
                   "(default on)")
    h.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice; on --resume "
                   "the run's own count, which keeps the resumed run bit-exact)")
    h.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["nr_filters=64", "image_shape=[1,28,28]", "head_kind=x"]`` -> dict; values are JSON, else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.isidentifier():
            raise ValueError(f"--set expects KEY=VALUE with KEY a model argument name, got {item!r} "
                             f"(e.g. --set nr_filters=64)")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def build_config(args: argparse.Namespace):
    """The TrainConfig for these arguments (on ``--resume`` without a model: the saved one, updated)."""
    from ..train import TrainConfig

    given = {field: getattr(args, field) for field in _FIELDS if getattr(args, field) is not None}
    if isinstance(given.get("data"), list):  # several sources: one comma-separated string (JSON-able, comparable)
        given["data"] = ",".join(given["data"])
    if args.out is not None:
        given["out_dir"] = args.out
    if args.no_progress:
        given["progress"] = False
    names_model = args.model or args.backbone or args.head or args.set or args.init_from
    if args.resume and not names_model:
        out = Path(given.get("out_dir", TrainConfig.out_dir))
        saved = out / "train_config.json"
        if not saved.is_file():
            raise ValueError(f"cannot resume: {str(out)!r} holds no train_config.json / checkpoint.pt; run without "
                             f"--resume to start a new run there")
        base = json.loads(saved.read_text())
        base.pop("threads", None)  # the checkpoint's own thread count applies unless --threads is given
        if "steps" in given:
            base["epochs"] = None
        if "epochs" in given:
            base["steps"] = None
        return TrainConfig.from_dict({**base, **given, "resume": True})
    if "steps" not in given and "epochs" not in given:
        raise ValueError("say how long to train: pass --steps N or --epochs N")
    model = args.model if args.model is not None else (None if (args.backbone or args.init_from) else
                                                       TrainConfig.model)
    return TrainConfig(model=model, backbone=args.backbone, head=args.head, model_args=parse_overrides(args.set),
                       resume=args.resume, **given)


def run(args: argparse.Namespace) -> int:
    from ..train import train

    config = build_config(args)  # train() applies config.threads (on resume: the count the run was started with)
    result = train(config)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    parts = [f"step {result.step}"]
    if result.loss is not None:
        parts.append(f"train bits/dim {result.loss:.4f}")
    if result.eval is not None:
        rel = "=" if result.eval["exact"] else "≤"
        parts.append(f"EMA eval bits/dim {rel} {result.eval['bits_per_dim']:.4f} on {result.eval['num_images']} "
                     f"images")
    print("; ".join(parts))
    if result.model_dir is not None:
        print(f"EMA model: {result.model_dir}  (pixelzoo sample {result.model_dir})")
    print(f"checkpoint: {result.checkpoint}")
    if result.stopped == "time_limit":
        print(f"stopped at the time limit; continue with: pixelzoo train --out {result.out_dir} --resume",
              file=sys.stderr)
    return 0
