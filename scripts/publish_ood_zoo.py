"""Publish a finished training run as one of the zoo's Fashion-MNIST model repos (the OOD study's models).

Evaluates the run's exported EMA weights (and, for the record, its raw weights) on every Fashion-MNIST test image
and on the first 500 (shipped in tests/data for the regression test), writes the repo folder (config, safetensors,
model card) and ``eval.json``.

    python scripts/publish_ood_zoo.py --run runs/fmnist --name pixelcnnpp-fashion-mnist \\
        --test ../shared/data/fashion_mnist_test.npz --command "pixelzoo train ..." --role foreground
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import pixelzoo
from pixelzoo.checkpoint import load_checkpoint, model_from_checkpoint
from pixelzoo.data import ImageDataset, load_dataset
from pixelzoo.evaluation import evaluate
from pixelzoo.images import atomic_write_bytes

SUBSET = Path(__file__).resolve().parents[1] / "tests" / "data" / "fashion_mnist_test_500.npz"
ROLES = {
    "foreground": "The foreground model of pixelzoo's OOD study: its likelihood, and the numerator of the "
                  "likelihood ratios (`pixelzoo ood --model`).",
    "local": "The local model of pixelzoo's OOD study (Zhang, Zhang & McDonagh, NeurIPS 2021): a 5x3 receptive "
             "field that explains pixel-level statistics; `pixelzoo ood --local`.",
    "background": "The background model of pixelzoo's OOD study (Ren et al., NeurIPS 2019): the foreground's "
                  "architecture trained on mutated Fashion-MNIST; `pixelzoo ood --background`. At CPU scale its "
                  "ratio is weaker than the local one: see the README section 'Out-of-distribution detection' "
                  "and docs/ood_study.json.",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="training run directory (model/, checkpoint.pt, metrics.jsonl)")
    p.add_argument("--name", required=True, help="hub/ folder name, e.g. pixelcnnpp-fashion-mnist")
    p.add_argument("--test", required=True, help="the full Fashion-MNIST test set (10,000 images)")
    p.add_argument("--command", required=True, help="the command that reproduces the run")
    p.add_argument("--role", required=True, choices=sorted(ROLES))
    p.add_argument("--hardware", default="2-core x86-64 CPU VM, 1 torch thread (sharing the machine with other runs)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    run = Path(args.run)
    model = pixelzoo.from_pretrained(str(run / "model"))
    raw = model_from_checkpoint(run, "model", torch.device("cpu"))
    state = load_checkpoint(run)
    config = json.loads((run / "train_config.json").read_text())
    test = load_dataset(args.test, "test")
    full, full_raw = evaluate(model, test, batch_size=500), evaluate(raw, test, batch_size=500)
    if not SUBSET.exists():
        np.savez_compressed(SUBSET, images=test.images[:500, 0].numpy(), labels=test.labels[:500].numpy())
    sub = load_dataset(SUBSET)
    assert torch.equal(sub.images, test.images[:500])
    small = evaluate(model, ImageDataset(sub.images, None, 8, "first 500"), batch_size=500)
    out = Path("hub") / args.name
    card = dict(dataset="fashion_mnist", dataset_id="zalando-datasets/fashion_mnist", split="test",
                num_images=full["num_images"], bits_per_dim=full["bits_per_dim"],
                nats_per_image=full["nats_per_image"], steps=int(state["step"]),
                wall_time=float(state["elapsed_seconds"]), hardware=args.hardware, command=args.command,
                ema_decay=config.get("ema_decay"), description=ROLES[args.role] + (
                    f" Trained with mutation rate {config['mutation_rate']} and weight decay "
                    f"{config['weight_decay']} (on the weight-norm gains)." if config.get("mutation_rate") else ""))
    # ema=model: the run exported its EMA weights, and the card should say so
    model.save_pretrained(out, ema=model, card=card, repo_id=f"pixelzoo/{args.name}", overwrite_card=True)
    record = {
        "fashion_mnist_test": {k: full[k] for k in ("bits_per_dim", "nats_per_image", "num_images", "exact")},
        "fashion_mnist_test_raw_weights": full_raw["bits_per_dim"],
        "fashion_mnist_test_first_500": {k: small[k] for k in ("bits_per_dim", "num_images")},
        "steps": int(state["step"]), "train_seconds": float(state["elapsed_seconds"]), "command": args.command,
        "mutation_rate": config.get("mutation_rate", 0.0), "weight_decay": config.get("weight_decay", 0.0),
        "torch": torch.__version__,
    }
    atomic_write_bytes(out / "eval.json", (json.dumps(record, indent=2) + "\n").encode())
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
