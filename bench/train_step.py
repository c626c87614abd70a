"""Training-step throughput (images/s) of the trainer's step: loss, backward, Adam, EMA update.

    .venv/bin/python bench/train_step.py                          # CPU, torch's default threads
    .venv/bin/python bench/train_step.py --threads 1 --only small
    .venv/bin/python bench/train_step.py --device cuda --bf16      # GPU: bf16 autocast as the trainer does

Rows: the small preset (32 filters, 1 resnet per block, 5 mixtures) on 3x32x32 and on 1x28x28 at batch 32,
and the paper preset ``pixelcnnpp_cifar10`` (160 filters, 5 resnets, 10 mixtures, 53.6M parameters) at
batch 8. Each row times ``--steps`` steps after ``--warmup`` steps and prints the median (the paper preset
takes about 10 s per step on a CPU, so it runs fewer steps there). Images are random levels: the cost of a
step does not depend on them. CUDA is synchronised before every clock reading.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from timm.utils import ModelEmaV3

import pixelzoo
from pixelzoo.train import BatchBitsPerDim, compile_for_training

ROWS = {
    "small": [("pixelcnnpp_small", dict(), 32), ("pixelcnnpp_small", dict(image_shape=(1, 28, 28)), 32)],
    "paper": [("pixelcnnpp_cifar10", dict(), 8)],
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(preset: str, overrides: dict, batch: int, device: torch.device, bf16: bool, compile_: bool,
               warmup: int, steps: int) -> tuple[float, int]:
    """Median seconds of one training step, and the parameter count."""
    torch.manual_seed(0)
    model = pixelzoo.create_model(preset, **overrides).to(device).train()
    x = torch.randint(0, 2**model.bits, (batch, *model.image_shape), dtype=torch.uint8, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.95, 0.9995))
    ema = ModelEmaV3(model, decay=0.9995)
    loss_fn = BatchBitsPerDim(model)
    step_fn = compile_for_training(loss_fn) if compile_ else loss_fn
    times = []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = step_fn(x)
        loss.backward()
        optimizer.step()
        ema.update(model, step=i + 1)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the trainer's default on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss")
    parser.add_argument("--only", choices=sorted(ROWS), default=None, help="run one group of rows")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (the paper row on CPU: 2)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name}), threads {torch.get_num_threads()}, "
          f"bf16 {args.bf16}, compile {args.compile}")
    print(f"{'preset':20s} {'image':>9s} {'batch':>5s} {'params':>8s} {'s/step':>8s} {'images/s':>9s}")
    for group, rows in ROWS.items():
        if args.only not in (None, group):
            continue
        for preset, overrides, batch in rows:
            slow = preset == "pixelcnnpp_cifar10" and device.type == "cpu"
            warmup, steps = (1, min(args.steps, 2)) if slow else (args.warmup, args.steps)
            seconds, params = time_steps(preset, overrides, batch, device, args.bf16, args.compile, warmup, steps)
            shape = "x".join(map(str, overrides.get("image_shape", pixelzoo.get_preset(preset).image_shape)))
            print(f"{preset:20s} {shape:>9s} {batch:5d} {params / 1e6:7.2f}M {seconds:8.3f} {batch / seconds:9.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
