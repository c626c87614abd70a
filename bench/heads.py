"""Likelihood heads: forward+backward time and peak memory of the NLL, and the same inside a small model.

    .venv/bin/python bench/heads.py                 # every registered head, 8 bits, (16, P, 32, 32)
    .venv/bin/python bench/heads.py --threads 2 --reps 9 --model-filters 32

Head rows time ``head.nll(params, x).mean().backward()`` on random parameters (B, P, 32, 32) for RGB data
at 8 bits, P being each head's parameter count (dlogistic/clogistic 100 with 10 mixtures, softmax256 1536).
Memory is measured two ways, both on CPU. "peak alloc" is the largest total of live allocations made
between the start of the forward and the end of the backward, from the torch profiler's allocation events
(``profile_memory=True``); it counts the parameter gradient but not the parameters. "saved" is the size
of the distinct tensors autograd keeps for the backward besides the parameters (``saved_tensors_hooks``).
"+proj" times the head behind the model's 1x1 projection from F backbone features (F=160 as in the paper's
code): the whole per-step difference between two models sharing a backbone. Model rows time one training
step's forward+backward of ``pixelcnnpp`` at the given width with each head, so the head's share shows. The paper reports that its softmax model ran slower per epoch; the
ratios printed at the end say by how much here.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import pixelzoo
from pixelzoo.layers import NIN
from pixelzoo.registry import get_head_class


def interleaved_medians(runs: dict, reps: int, warmup: int = 2) -> dict:
    """Median and min seconds of each callable, timed round-robin so that load changes on a shared
    machine hit every entry alike."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in runs}
    for _ in range(reps):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def peak_alloc_bytes(fn):
    """Peak of the running sum of allocation/free events recorded by the profiler during ``fn``."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    running = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        running += e.nbytes()
        peak = max(peak, running)
    return peak


def saved_bytes(head, params, x, gen):
    """Bytes of the distinct tensors autograd saves for the backward of the NLL, besides the parameters."""
    seen = {}
    own = params.untyped_storage().data_ptr()

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr != own:  # views of the parameter tensor cost nothing extra
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = head.nll(params, x, generator=gen).mean()
    loss.backward()
    params.grad = None
    return sum(seen.values())


def head_case(name, args):
    """A head at 8 bits with random parameters and data, its fwd+bwd callable and its memory figures."""
    head = get_head_class(name)(3, 8)
    gen = torch.Generator().manual_seed(0)
    P = head.num_params()
    params = (0.5 * torch.randn(args.batch, P, args.size, args.size, generator=gen)).requires_grad_(True)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), generator=gen)

    def run():
        head.nll(params, x, generator=gen).mean().backward()
        params.grad = None

    # The same behind the model's 1x1 projection from F backbone features: everything that differs between
    # two models that share a backbone.
    proj = NIN(args.proj_filters, P)
    feats = torch.randn(args.batch, args.proj_filters, args.size, args.size, generator=gen).requires_grad_(True)

    def run_with_proj():
        proj.zero_grad(set_to_none=True)
        head.nll(proj(feats), x, generator=gen).mean().backward()
        feats.grad = None

    return run, run_with_proj, dict(P=P, peak=peak_alloc_bytes(run), saved=saved_bytes(head, params, x, gen),
                                    input=params.numel() * params.element_size())


def model_step(name, args):
    """One training step's forward+backward of a pixelcnnpp model with this head."""
    torch.manual_seed(0)
    m = pixelzoo.create_model(backbone="pixelcnnpp", head=name, image_shape=(3, args.size, args.size),
                              nr_filters=args.model_filters, nr_resnet=args.model_resnet)
    m.train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), generator=gen).to(torch.uint8)

    def step():
        m.zero_grad(set_to_none=True)
        m.nll(x, generator=gen).mean().backward()

    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--proj-filters", type=int, default=160, help="backbone width F feeding the 1x1 projection")
    p.add_argument("--model-filters", type=int, default=32, help="pixelcnnpp width for the model rows (0: skip)")
    p.add_argument("--model-resnet", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = pixelzoo.list_heads()
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, RGB {args.size}x{args.size}, "
          f"8 bits, median of {args.reps}")
    cases = {name: head_case(name, args) for name in names}
    timed = interleaved_medians({name: run for name, (run, _, _) in cases.items()}, args.reps)
    with_proj = interleaved_medians({name: run for name, (_, run, _) in cases.items()}, args.reps)
    print(f"{'head':<11} {'P':>5} {'fwd+bwd ms':>11} {'(min)':>7} {f'+proj{args.proj_filters} ms':>13} "
          f"{'peak alloc MiB':>15} {'saved MiB':>10} {'params MiB':>11}")
    for name, (_, _, r) in cases.items():
        (med, low), proj_med = timed[name], with_proj[name][0]
        print(f"{name:<11} {r['P']:>5} {1e3 * med:>11.1f} {1e3 * low:>7.1f} {1e3 * proj_med:>13.1f} "
              f"{r['peak'] / 2**20:>15.1f} {r['saved'] / 2**20:>10.1f} {r['input'] / 2**20:>11.1f}")
    if "softmax256" in cases and "dlogistic" in cases:
        s, d = cases["softmax256"][2], cases["dlogistic"][2]
        print(f"softmax256 / dlogistic: head time x{timed['softmax256'][0] / timed['dlogistic'][0]:.2f}, "
              f"head + projection time x{with_proj['softmax256'][0] / with_proj['dlogistic'][0]:.2f}, "
              f"head peak alloc x{s['peak'] / d['peak']:.2f}")
    if args.model_filters:
        steps = interleaved_medians({name: model_step(name, args) for name in names}, max(3, args.reps // 2),
                                    warmup=1)
        print(f"\nmodel step (pixelcnnpp nr_filters={args.model_filters}, nr_resnet={args.model_resnet}), "
              f"forward+backward ms (median, min):")
        for name, (med, low) in steps.items():
            print(f"{name:<11} {1e3 * med:>11.1f} {1e3 * low:>7.1f}")
        if "softmax256" in steps and "dlogistic" in steps:
            print(f"model step: softmax256 / dlogistic x{steps['softmax256'][0] / steps['dlogistic'][0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
