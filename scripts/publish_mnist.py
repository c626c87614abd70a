"""Publish a finished MNIST training run as the zoo's model repo ``hub/pixelcnnpp-mnist``.

Evaluates the run's exported EMA model on every image of the MNIST test set and on the test images bundled
in the package, writes the repo folder (config, safetensors, model card) and ``eval.json`` with both figures,
and a sample grid for the README.

    python scripts/publish_mnist.py --run runs/mnist --test PATH/mnist_test.npz --command "pixelzoo train ..."
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import pixelzoo
from pixelzoo.data import load_bundled, load_dataset
from pixelzoo.evaluation import evaluate
from pixelzoo.images import atomic_write_bytes, save_grid

REPO_ID = "pixelzoo/pixelcnnpp-mnist"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/mnist", help="training run directory (with model/ and metrics.jsonl)")
    p.add_argument("--test", required=True, help="the full MNIST test set (10,000 images), e.g. an .npz")
    p.add_argument("--out", default="hub/pixelcnnpp-mnist")
    p.add_argument("--samples", default="docs/mnist_samples.png")
    p.add_argument("--command", required=True, help="the exact command that trained the run")
    p.add_argument("--hardware", default=f"2 CPU cores ({platform.processor() or platform.machine()}), 1 torch thread")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    run = Path(args.run)
    model = pixelzoo.from_pretrained(str(run / "model"))  # the EMA weights the trainer exported
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = [r for r in records if r.get("kind") == "train"][-1]

    full = evaluate(model, load_dataset(args.test, "test"), batch_size=250)
    bundled = evaluate(model, load_bundled("test"), batch_size=250)
    card = dict(dataset="mnist", dataset_id="ylecun/mnist", split="test", num_images=full["num_images"],
                bits_per_dim=full["bits_per_dim"], nats_per_image=full["nats_per_image"], steps=int(last["step"]),
                wall_time=float(last["elapsed_s"]), hardware=args.hardware, command=args.command,
                ema_decay=json.loads((run / "train_config.json").read_text()).get("ema_decay"))
    model.save_pretrained(args.out, card=card, repo_id=REPO_ID, overwrite_card=True)
    eval_record = {
        "mnist_test": {k: full[k] for k in ("bits_per_dim", "nats_per_image", "num_images", "exact")},
        "bundled_test": {k: bundled[k] for k in ("bits_per_dim", "nats_per_image", "num_images", "exact")},
        "steps": int(last["step"]), "train_seconds": float(last["elapsed_s"]), "command": args.command,
        "torch": torch.__version__,
    }
    atomic_write_bytes(Path(args.out) / "eval.json", (json.dumps(eval_record, indent=2) + "\n").encode())
    images = model.sample(64, generator=torch.Generator().manual_seed(0))
    save_grid(images, args.samples, nrow=8, scale=2)
    print(json.dumps(eval_record, indent=2))


if __name__ == "__main__":
    main()
