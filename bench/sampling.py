"""Sampling speed: seconds per image for naive and cached sampling, and the speed-up.

    .venv/bin/python bench/sampling.py --threads 1                   # CPU: the small preset
    .venv/bin/python bench/sampling.py --device cuda                 # GPU: the small and the paper preset

Rows: ``pixelcnnpp_small`` (3x32x32, 32 filters, 1 resnet per block) at batch 1, 8 and 64, and on a GPU also
``pixelcnnpp_cifar10`` (the paper's 160 filters, 5 resnets). Weights are the random initialisation: the
cost of a pass does not depend on them. Both samplers run in eval mode in float32.

The cached sampler samples whole images. The naive sampler costs the same for every pixel (one full
forward pass and one head draw), so it is timed on the last ``--naive-pixels`` pixels of the image
(``sample_naive(..., canvas=, start=)``) and extrapolated to all ``H·W`` pixels; the table marks it "~".
``--naive-pixels 0`` times whole naive images instead. CUDA is synchronised before every clock reading.
On a shared CPU, ``--clock process`` counts this process's CPU time instead of wall time (with one thread,
what an idle machine would show).
"""
from __future__ import annotations

import argparse
import time

import torch

import pixelzoo
from pixelzoo.sampling import sample_cached, sample_naive


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def seconds_per_image(model, batch: int, naive_pixels: int, device: torch.device,
                      now=time.perf_counter) -> tuple[float, float, bool]:
    """(naive s/image, cached s/image, whether naive was extrapolated)."""
    C, H, W = model.image_shape
    pixels = H * W
    gen = torch.Generator(device=device).manual_seed(0)
    canvas = torch.zeros((batch, C, H, W), dtype=torch.int64, device=device)
    # Warm-up: one pixel of each (first-call allocations, kernel selection).
    sample_naive(model, batch, canvas=canvas, start=pixels - 1, generator=gen)
    sample_cached(model, batch, canvas=canvas, start=pixels - 1, generator=gen)

    def clock(fn) -> float:
        sync(device)
        t0 = now()
        fn()
        sync(device)
        return now() - t0

    cached = clock(lambda: sample_cached(model, batch, generator=gen))
    extrapolated = 0 < naive_pixels < pixels
    if extrapolated:
        start = pixels - naive_pixels
        part = clock(lambda: sample_naive(model, batch, canvas=canvas, start=start, generator=gen))
        naive = part * pixels / naive_pixels
    else:
        naive = clock(lambda: sample_naive(model, batch, generator=gen))
    return naive / batch, cached / batch, extrapolated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--presets", nargs="+", default=None,
                        help="default: pixelcnnpp_small, plus pixelcnnpp_cifar10 on a GPU")
    parser.add_argument("--naive-pixels", type=int, default=32,
                        help="pixels of naive sampling to time and extrapolate from (0: whole images)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall time, or this process's CPU time (for a shared CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    presets = args.presets or (["pixelcnnpp_small"] + (["pixelcnnpp_cifar10"] if device.type == "cuda" else []))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name}), threads {torch.get_num_threads()}, "
          f"clock {args.clock}")
    print(f"{'preset':20s} {'image':>9s} {'batch':>5s} {'naive s/img':>12s} {'cached s/img':>13s} {'speed-up':>9s}")
    for preset in presets:
        torch.manual_seed(0)
        model = pixelzoo.create_model(preset).to(device).eval()
        image = "x".join(map(str, model.image_shape))
        for batch in args.batches:
            naive, cached, extrapolated = seconds_per_image(model, batch, args.naive_pixels, device,
                                                            CLOCKS[args.clock])
            mark = "~" if extrapolated else " "
            print(f"{preset:20s} {image:>9s} {batch:5d} {mark}{naive:11.3f} {cached:13.4f} {naive / cached:8.0f}x",
                  flush=True)


if __name__ == "__main__":
    main()
