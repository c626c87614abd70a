"""Training speed and memory of PixelCNN++: pixelzoo's fused kernels against a plain implementation, side by side.

    .venv/bin/python bench/train_speed.py                        # CPU, 2 threads, all three configs
    .venv/bin/python bench/train_speed.py --configs mnist,small --reps 7 --clock process --threads 1
    .venv/bin/python bench/train_speed.py --bf16 --compile       # also bf16 autocast and torch.compile rows
    .venv/bin/python bench/train_speed.py --device cuda --configs paper --batch-paper 32 --bf16

Configs (the pclucas14 port's, REFERENCE §3): ``small`` = pixelcnnpp_small (F=32, 1 resnet, 5 mixtures,
dropout 0.5) on 3x32x32 at batch 32; ``mnist`` = the same net on 1x28x28 at batch 32; ``paper`` =
pixelcnnpp_cifar10 (F=160, 5 resnets, 10 mixtures) at batch 8. A step is forward, mean bits/dim, backward,
Adam. Variants, all from the same initial weights and timed round-robin (so load swings on a shared
machine hit all alike; medians):

* ``plain``: the straightforward implementation kept here as the baseline: ``concat_elu`` by ``cat`` + ``elu``,
  ``F.pad`` + conv, ``nn.Dropout``, ``x + a·σ(b)``, and the likelihood written with plain tensor ops
  (:func:`plain_dlogistic_nll`), all differentiated by autograd.
* ``fused``: pixelzoo as shipped (pixelzoo/fused.py, pixelzoo/heads/dlogistic_fused.py): channels-last
  convolution inputs, each 2F-channel activation kept for the backward.
* ``nchw``: the same with ``GatedResnet.memory_format = torch.contiguous_format``.
* ``recompute``: the same with ``GatedResnet.recompute = True`` (keep F channels, rebuild the 2F-channel
  activations in the backward pass).
* ``checkpoint``: ``create_model(..., checkpointing=True)`` (activation checkpointing of every block).
* ``kernels``: ``fused`` with :func:`pixelzoo.compiled_kernels.use_compiled_kernels` (single-pass elementwise
  kernels compiled by inductor; the first step compiles them and is excluded by the warm-up).
* ``bf16`` (``--bf16``): bf16 autocast of the network; the likelihood stays float32.
* ``compile`` (``--compile``): ``torch.compile`` of the loss (the first steps compile; excluded by warm-up).

Figures: s/step and images/s (median, and the best step: on a shared machine the best is the closest to an
idle one); GFLOP/s achieved (at the median) = the step's FLOPs (``torch.utils.flop_counter``, forward +
backward; the optimizer's elementwise work is not counted) / s/step, and its fraction of this machine's
dense float32 matmul rate (a 2048x2048 matmul at the same thread count, measured at the start of the same
run and printed again at its end); "peak MiB": on CPU the peak of the running sum of the torch profiler's
allocation events during one step after a warm-up step (activations, gradients and temporaries above the
resting model and Adam state), on CUDA ``max_memory_allocated`` above the same resting point; "saved MiB":
distinct non-parameter tensors autograd keeps for the backward (``saved_tensors_hooks``; under
checkpointing only what the checkpointed blocks keep outside themselves shows). The likelihood table times
the head's NLL forward+backward alone on random parameters: the fused Function against the plain formula.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import sys
import time
import warnings
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import pixelzoo
from pixelzoo.compiled_kernels import compiled_kernels
from pixelzoo.cpu_allocator import reuse_freed_memory
from pixelzoo.heads.base import levels_to_unit, log1mexp
from pixelzoo.heads.dlogistic import DiscretizedLogisticMixture, coupling_pairs, unpack_mixture_params
from pixelzoo.layers import GatedResnet

CONFIGS = {  # name: (preset, overrides, batch)
    "small": ("pixelcnnpp_small", {}, 32),
    "mnist": ("pixelcnnpp_small", {"image_shape": (1, 28, 28)}, 32),
    "paper": ("pixelcnnpp_cifar10", {}, 8),
}
PORT_SECONDS = {"small": 0.92, "mnist": 0.75, "paper": 9.6}  # pclucas14 port, 2 threads, idle (issue 10)


# ------------------------------------------------------------------------------- the plain baseline
def plain_gated_resnet_forward(self: GatedResnet, x, a=None, cond=None):
    """GatedResnet from plain ops (``cat`` + ``elu``, ``F.pad`` + conv, ``nn.Dropout``, ``x + a·σ(b)``), every
    intermediate left to autograd: the block's own composite path, which it otherwise runs only under
    torch.compile."""
    return self._forward_composite(x, a, cond)


def plain_dlogistic_nll(head: DiscretizedLogisticMixture, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The discretized logistic mixture NLL (B, H, W) written plainly with tensor ops, for autograd."""
    logits, means, log_scales, coeffs = unpack_mixture_params(params, head.channels, head.num_mixtures)
    log_scales = log_scales.clamp(head.log_scale_min, head.log_scale_max)
    coeffs = torch.tanh(coeffs)
    xu = levels_to_unit(x, head.bits, params.dtype)
    shifts = [torch.zeros_like(means[:, 0]) for _ in range(head.channels)]
    for q, (c, j) in enumerate(coupling_pairs(head.channels)):
        shifts[c] = shifts[c] + coeffs[:, q] * xu[:, j, None]
    centred = xu[:, :, None] - means - torch.stack(shifts, dim=1)
    inv_s = torch.exp(-log_scales)
    half_bin = 1.0 / (head.levels - 1)
    plus, minus = inv_s * (centred + half_bin), inv_s * (centred - half_bin)
    k, top = x[:, :, None], head.levels - 1
    log_cdf_plus = torch.where(k < top, -F.softplus(-plus), 0.0)
    log_sf_minus = torch.where(k > 0, -F.softplus(minus), 0.0)
    interior = torch.where((k > 0) & (k < top), log1mexp(2.0 * half_bin * inv_s), 0.0)
    log_p = (log_cdf_plus + log_sf_minus + interior).sum(dim=1) + F.log_softmax(logits, dim=1)
    return -torch.logsumexp(log_p, dim=1)


@contextlib.contextmanager
def plain_implementation() -> Iterator[None]:
    """Swap the plain gated resnet and likelihood in for the duration of the block."""
    saved = GatedResnet.forward, DiscretizedLogisticMixture._nll
    GatedResnet.forward = plain_gated_resnet_forward
    DiscretizedLogisticMixture._nll = lambda self, params, x, *, generator: plain_dlogistic_nll(self, params, x)
    try:
        yield
    finally:
        GatedResnet.forward, DiscretizedLogisticMixture._nll = saved


# ----------------------------------------------------------------------------------------- measuring
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(kind: str) -> float:
    return time.process_time() if kind == "process" else time.perf_counter()


def matmul_gflops(device: torch.device, reps: int = 7) -> float:
    """Dense float32 matmul rate (GFLOP/s): median of ``reps`` 2048x2048 products."""
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    times = []
    for i in range(reps + 2):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def peak_bytes(fn: Callable[[], None], device: torch.device) -> int:
    """Peak memory above the state before ``fn`` (CPU: the profiler's allocation events; CUDA: the allocator)."""
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    running = peak = 0
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    for e in sorted(events, key=lambda e: e.start_ns()):
        running += e.nbytes()
        peak = max(peak, running)
    return peak


def saved_bytes(fn: Callable[[], torch.Tensor], exclude: set[int]) -> int:
    """Bytes of the distinct storages autograd saves during ``fn()`` (a loss; its backward is run), less
    ``exclude`` (storage pointers)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    loss.backward()
    return sum(seen.values())


class Run:
    """One variant of one config: a model, its optimizer, a batch and a training step."""

    def __init__(self, config: str, variant: str, device: torch.device, batch: int | None) -> None:
        preset, overrides, default_batch = CONFIGS[config]
        torch.manual_seed(0)  # every variant starts from the same weights
        kwargs = dict(overrides, checkpointing=True) if variant == "checkpoint" else overrides
        self.model = pixelzoo.create_model(preset, **kwargs).to(device).train()
        for block in self.model.modules():
            if isinstance(block, GatedResnet):
                block.memory_format = torch.contiguous_format if variant == "nchw" else torch.channels_last
                block.recompute = variant == "recompute"
        self.batch = batch or default_batch
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randint(0, 2**self.model.bits, (self.batch, *self.model.image_shape), generator=gen).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.variant, self.device = variant, device
        self.loss_fn = self._loss
        if variant == "compile":
            self.loss_fn = torch.compile(self._loss)

    def _loss(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        params = m.params_from_unit(levels_to_unit(x, m.bits, torch.float32))
        return m.head.nll(params, x).sum() / (x.shape[0] * math.prod(m.image_shape) * math.log(2.0))

    def context(self):
        if self.variant == "plain":
            return plain_implementation()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.variant == "bf16")

    def loss(self) -> torch.Tensor:
        with self.context():
            return self.loss_fn(self.x)

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with compiled_kernels(self.variant == "kernels"):  # forward and backward
            self.loss().backward()
        self.optimizer.step()

    def flops(self) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            self.loss().backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


class PortRun:
    """The pclucas14/pixel-cnn-pp port's training step, from a clone of it (``--port-dir``), run side by side.

    Its model (``model.PixelCNN``) and loss (``utils.discretized_mix_logistic_loss[_1d]``, summed, as its
    ``main.py`` trains) at the config's sizes, Adam, inputs in [-1, 1]. Its loss builds a zeros tensor with
    ``.cuda()``; on the CPU that call is made a no-op for the duration of the step. Nothing of the port is
    part of pixelzoo: this only imports the clone the user points to.
    """

    def __init__(self, config: str, port_dir: str | None, device: torch.device, batch: int | None) -> None:
        if not port_dir:
            raise SystemExit("the 'port' variant needs --port-dir (a clone of github.com/pclucas14/pixel-cnn-pp)")
        import importlib
        sys.path.insert(0, port_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # its torch.nn.utils.weight_norm
            port_model, port_utils = importlib.import_module("model"), importlib.import_module("utils")
            preset, overrides, default_batch = CONFIGS[config]
            cfg = pixelzoo.get_preset(preset)
            C, H, W = overrides.get("image_shape", cfg.image_shape)
            args = cfg.backbone_args
            torch.manual_seed(0)
            self.model = port_model.PixelCNN(nr_resnet=args["nr_resnet"], nr_filters=args["nr_filters"],
                                             nr_logistic_mix=cfg.head_args["num_mixtures"],
                                             input_channels=C).to(device).train()
        self.loss_fn = port_utils.discretized_mix_logistic_loss if C == 3 else \
            port_utils.discretized_mix_logistic_loss_1d
        self.batch = batch or default_batch
        gen = torch.Generator().manual_seed(1)
        self.x = (torch.randint(0, 256, (self.batch, C, H, W), generator=gen).float() / 127.5 - 1.0).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.device = device

    def loss(self) -> torch.Tensor:
        cuda = torch.Tensor.cuda
        if self.device.type == "cpu":
            torch.Tensor.cuda = lambda t, *args, **kwargs: t
        try:
            return self.loss_fn(self.x, self.model(self.x))
        finally:
            torch.Tensor.cuda = cuda

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.loss().backward()
        self.optimizer.step()


def bench_config(config: str, variants: list[str], args, device: torch.device, matmul: float) -> None:
    batch = args.batch_paper if config == "paper" else None
    runs = {v: PortRun(config, args.port_dir, device, batch) if v == "port" else Run(config, v, device, batch)
            for v in variants}
    B = next(iter(runs.values())).batch
    ours = [r for v, r in runs.items() if v != "port"]
    flops = runs["fused"].flops() if "fused" in runs else ours[0].flops()  # the same network in every variant
    reps = args.paper_reps if config == "paper" else args.reps
    warmup = 3 if "compile" in runs else 2 if "kernels" in runs else 1
    times: dict[str, list[float]] = {v: [] for v in runs}
    for i in range(warmup + reps):
        for v, run in runs.items():
            sync(device)
            t0 = clock(args.clock)
            run.step()
            sync(device)
            if i >= warmup:
                times[v].append(clock(args.clock) - t0)
    preset, overrides, _ = CONFIGS[config]
    shape = "x".join(map(str, runs[variants[0]].x.shape[1:]))
    print(f"\n## {config}: {preset} {shape}, batch {B}, {flops / B / 1e9:.2f} GFLOP per image (fwd+bwd), "
          f"{reps} timed steps per variant")
    first = variants[0]  # the ratios are against the first variant listed (plain by default)
    print(f"| variant | s/step | images/s | vs {first} | best s/step | best images/s | best vs {first} | GFLOP/s "
          "| of matmul | peak MiB | saved MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base, base_best = statistics.median(times[variants[0]]), min(times[variants[0]])
    for v, run in runs.items():
        t, best = statistics.median(times[v]), min(times[v])
        peak = "-" if args.no_memory else f"{peak_bytes(run.step, device) / 2**20:.0f}"
        exclude = {p.untyped_storage().data_ptr() for p in run.model.parameters()}
        saved = "-" if args.no_memory else f"{saved_bytes(run.loss, exclude) / 2**20:.0f}"
        run.optimizer.zero_grad(set_to_none=True)
        gflops = flops / t / 1e9
        print(f"| {v} | {t:.3f} | {B / t:.1f} | {base / t:.2f}x | {best:.3f} | {B / best:.1f} | {base_best / best:.2f}x "
              f"| {gflops:.0f} | {gflops / matmul:.0%} | {peak} | {saved} |", flush=True)
    if device.type == "cpu" and args.threads == 2 and B == CONFIGS[config][2]:
        port = PORT_SECONDS[config]
        print(f"(pclucas14 port, issue 10, idle machine, 2 threads: {port} s/step = {B / port:.1f} images/s; "
              f"target 2x = {2 * B / port:.1f} images/s)")


def bench_likelihood(config: str, args, device: torch.device) -> None:
    preset, overrides, batch = CONFIGS[config]
    if config == "paper" and args.batch_paper:
        batch = args.batch_paper
    cfg = pixelzoo.get_preset(preset)
    C, H, W = overrides.get("image_shape", cfg.image_shape)
    head = DiscretizedLogisticMixture(C, 8, cfg.head_args.get("num_mixtures", 10))
    gen = torch.Generator().manual_seed(0)
    params = (2.0 * torch.randn(batch, head.num_params(), H, W, generator=gen)).to(device).requires_grad_(True)
    x = torch.randint(0, 256, (batch, C, H, W), generator=gen).to(device)
    fns = {"plain": lambda: plain_dlogistic_nll(head, params, x).sum(), "fused": lambda: head.nll(params, x).sum()}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(2 + args.lik_reps):
        for k, fn in fns.items():
            sync(device)
            t0 = clock(args.clock)
            fn().backward()
            sync(device)
            if i >= 2:
                times[k].append(clock(args.clock) - t0)
    base = statistics.median(times["plain"])
    for k, fn in fns.items():
        t = statistics.median(times[k])
        peak = peak_bytes(lambda: fn().backward(), device) / 2**20
        saved = saved_bytes(fn, {params.untyped_storage().data_ptr()}) / 2**20
        params.grad = None
        print(f"| {config} ({batch}, {C}, {head.num_mixtures}, {H}, {W}) | {k} | {t * 1e3:.1f} | {base / t:.2f}x | "
              f"{peak:.1f} | {saved:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="mnist,small,paper")
    parser.add_argument("--variants", default="plain,fused,nchw,recompute,checkpoint")
    parser.add_argument("--bf16", action="store_true", help="add a bf16-autocast row (on top of fused)")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row")
    parser.add_argument("--reps", type=int, default=5, help="timed steps per variant (small configs)")
    parser.add_argument("--paper-reps", type=int, default=2, help="timed steps per variant (paper config)")
    parser.add_argument("--batch-paper", type=int, default=None, help="batch of the paper config (default 8)")
    parser.add_argument("--lik-reps", type=int, default=9, help="timed likelihood fwd+bwd per implementation")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="process: CPU time of this process (robust to other load at 1 thread)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory columns")
    parser.add_argument("--port-dir", default=None,
                        help="a clone of github.com/pclucas14/pixel-cnn-pp: adds its training step as the 'port' variant "
                        "(e.g. --variants port,plain,fused,kernels), timed side by side")
    parser.add_argument("--no-reuse-memory", action="store_true",
                        help="leave glibc's malloc as it is (default: pixelzoo.cpu_allocator.reuse_freed_memory(), as "
                        "pixelzoo train does on the CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reused = device.type == "cpu" and not args.no_reuse_memory and reuse_freed_memory()
    variants = args.variants.split(",") + ["bf16"] * args.bf16 + ["compile"] * args.compile
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    matmul = matmul_gflops(device)
    print(f"# torch {torch.__version__}, {device} ({name}), {torch.get_num_threads()} threads, clock {args.clock}, "
          f"load average {os.getloadavg()[0]:.1f}; dense float32 matmul {matmul:.0f} GFLOP/s; "
          f"freed memory reused: {reused}")
    for config in args.configs.split(","):
        bench_config(config, variants, args, device, matmul)
    print("\n## likelihood alone (forward + backward of the NLL summed; B, C, M, H, W)")
    print("| shape | implementation | ms | vs plain | peak MiB | saved MiB |")
    print("|---|---|---|---|---|---|")
    for config in args.configs.split(","):
        bench_likelihood(config, args, device)
    again = matmul_gflops(device)
    print(f"\n# dense float32 matmul again: {again:.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
