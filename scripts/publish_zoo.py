"""Publish a finished training run as one of the zoo's model repos (hub/NAME).

Evaluates the run's exported EMA weights (and, for the record, its raw weights) on every test image and on the
first N (shipped in tests/data for the regression test), writes the repo folder (config, safetensors, model
card) and ``eval.json``.

    python scripts/publish_zoo.py --run runs/fmnist --name pixelcnnpp-fashion-mnist --dataset fashion_mnist \\
        --test ../shared/data/fashion_mnist_test.npz --command "pixelzoo train ..." --role ood-foreground
    python scripts/publish_zoo.py --run runs/cifar10_small --name pixelcnnpp-cifar10-small --dataset cifar10 \\
        --test cifar10/cifar10_test.npz --command "pixelzoo train ..." --role cifar10 --threads 2
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

TESTS_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
# dataset -> (Hub dataset id, how many test images tests/data holds, the file that holds them)
DATASETS = {
    "fashion_mnist": ("zalando-datasets/fashion_mnist", 500, "fashion_mnist_test_500.npz"),
    "cifar10": ("uoft-cs/cifar10", 100, "cifar10_test_100.npz"),
}
ROLES = {
    "ood-foreground": "The foreground model of pixelzoo's OOD study: its likelihood, and the numerator of the "
                      "likelihood ratios (`pixelzoo ood --model`).",
    "ood-local": "The local model of pixelzoo's OOD study (Zhang, Zhang & McDonagh, NeurIPS 2021): a 5x3 receptive "
                 "field that explains pixel-level statistics; `pixelzoo ood --local`.",
    "ood-background": "The background model of pixelzoo's OOD study (Ren et al., NeurIPS 2019): the foreground's "
                      "architecture trained on mutated Fashion-MNIST; `pixelzoo ood --background`. At CPU scale its "
                      "ratio is weaker than the local one: see the README section 'Out-of-distribution detection' "
                      "and docs/ood_study.json.",
    "cifar10": "A small PixelCNN++ (U-net, discretized logistic mixture) trained on all 50,000 CIFAR-10 training "
               "images on a 2-core CPU in about two hours: the best CIFAR-10 model that budget allows, not the "
               "paper's 2.92 bits/dim (`pixelcnnpp_cifar10`, which needs a GPU).",
}


def epochs_of(run: Path, steps: int) -> float:
    """Passes over the training set after ``steps`` steps, from the images-per-step ratio the run logged."""
    last = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in line][-1]
    return steps * last["epoch"] / last["step"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="training run directory (model/, checkpoint.pt, metrics.jsonl)")
    p.add_argument("--name", required=True, help="hub/ folder name, e.g. pixelcnnpp-fashion-mnist")
    p.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    p.add_argument("--test", required=True, help="the dataset's full test set")
    p.add_argument("--command", required=True, help="the command that reproduces the run")
    p.add_argument("--role", required=True, choices=sorted(ROLES))
    p.add_argument("--hardware", default="2-core x86-64 CPU VM, 1 torch thread (sharing the machine with other runs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dataset_id, n_sub, sub_name = DATASETS[args.dataset]

    run = Path(args.run)
    model = pixelzoo.from_pretrained(str(run / "model"))
    raw = model_from_checkpoint(run, "model", torch.device("cpu"))
    state = load_checkpoint(run)
    config = json.loads((run / "train_config.json").read_text())
    test = load_dataset(args.test, "test")
    full, full_raw = (evaluate(m, test, batch_size=args.batch_size) for m in (model, raw))
    subset = TESTS_DATA / sub_name
    if not subset.exists():
        np.savez_compressed(subset, images=test.images[:n_sub].permute(0, 2, 3, 1).numpy()
                            if test.images.shape[1] == 3 else test.images[:n_sub, 0].numpy(),
                            labels=test.labels[:n_sub].numpy())
    sub = load_dataset(subset)
    assert torch.equal(sub.images, test.images[:n_sub])
    small = evaluate(model, ImageDataset(sub.images, None, 8, f"first {n_sub}"), batch_size=args.batch_size)
    steps = int(state["step"])
    epochs = epochs_of(run, steps)
    out = Path("hub") / args.name
    card = dict(dataset=args.dataset, dataset_id=dataset_id, split="test",
                num_images=full["num_images"], bits_per_dim=full["bits_per_dim"],
                nats_per_image=full["nats_per_image"], steps=steps, epochs=epochs,
                wall_time=float(state["elapsed_seconds"]), hardware=args.hardware, command=args.command,
                ema_decay=config.get("ema_decay"), description=ROLES[args.role] + (
                    f" Trained with mutation rate {config['mutation_rate']} and weight decay "
                    f"{config['weight_decay']} (on the weight-norm gains)." if config.get("mutation_rate") else ""))
    # ema=model: the run exported its EMA weights, and the card should say so
    model.save_pretrained(out, ema=model, card=card, repo_id=f"pixelzoo/{args.name}", overwrite_card=True)
    test_key = f"{args.dataset}_test"
    record = {
        test_key: {k: full[k] for k in ("bits_per_dim", "nats_per_image", "num_images", "exact")},
        f"{test_key}_raw_weights": full_raw["bits_per_dim"],
        f"{test_key}_first_{n_sub}": {k: small[k] for k in ("bits_per_dim", "num_images")},
        "steps": steps, "epochs": epochs, "train_seconds": float(state["elapsed_seconds"]), "command": args.command,
        "mutation_rate": config.get("mutation_rate", 0.0), "weight_decay": config.get("weight_decay", 0.0),
        "torch": torch.__version__,
    }
    atomic_write_bytes(out / "eval.json", (json.dumps(record, indent=2) + "\n").encode())
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
