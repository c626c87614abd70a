"""Training: ``train(TrainConfig(...)) -> TrainResult``, on one CPU/GPU or many processes under ``torchrun``.

Follows the reference recipe (openai/pixel-cnn ``train.py``; DESIGN §4): Adam β = (0.95, 0.9995), learning
rate 1e-3 multiplied by 0.999995 after every step, an exponential moving average (EMA, 0.9995) of the weights
that evaluation, sample grids and the exported model use, data-dependent initialisation of the weight-normed
layers on the first batch of a fresh run, and the mean bits/dim of the batch as the loss.

A run directory holds:

    checkpoint.pt          latest checkpoint (atomic; see pixelzoo.checkpoint), resumable exactly
    train_config.json      the TrainConfig of the latest (re)start
    metrics.jsonl          one JSON object per line: {"kind": "train" | "eval" | "sample" | "end", "step", ...}
    samples_step{N}.png    sample grids from the EMA weights
    model/                 the EMA model as a loadable folder (config.json + model.safetensors)

Exact resume: the data order of epoch ``e`` is a function of ``(seed, e)`` only (a seeded
``DistributedSampler``), the position inside the epoch follows from the step, and the checkpoint restores
model, EMA, optimizer and every rank's random state; a resumed run ends with the same weights, bit for bit
on the CPU, as one that never stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import distributed as dist_utils
from .compiled_kernels import compiled_kernels, cpu_compiler_available
from .cpu_allocator import reuse_freed_memory
from .mutation import mutate, mutation_generator

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train", "build_model", "export_model",
           "BatchBitsPerDim", "compile_for_training", "epoch_batches"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Build from code, or from ``pixelzoo train`` flags.

    The model is a preset (``model``), or a ``backbone`` + ``head`` pair, with ``model_args`` overriding
    constructor arguments (routed like ``create_model``'s keywords), or the weights of ``init_from``.
    """

    # --- model --------------------------------------------------------------------------------------
    model: str | None = "pixelcnnpp_mnist"  # preset name (pixelzoo list); None to use backbone + head
    backbone: str | None = None  # registered backbone, with `head`, instead of (or overriding) a preset
    head: str | None = None  # registered head; with a preset it swaps the preset's head
    model_args: dict[str, Any] = field(default_factory=dict)  # overrides: nr_filters=64, dropout=0.5, ...
    init_from: str | None = None  # start from these weights (model folder, Hub id or checkpoint): no data init
    dtype: str = "float32"  # parameter dtype: "float32", or "float64" for exactness checks
    # --- data ---------------------------------------------------------------------------------------
    data: str = "bundled"  # training data: a path load_dataset understands, or "bundled" (MNIST subset)
    split: str = "train"  # split of `data` to train on
    eval_data: str | None = None  # evaluation data (default: `data`)
    eval_split: str = "test"  # split of the evaluation data
    eval_limit: int | None = None  # evaluate on the first N images only (None: every image)
    # --- length -------------------------------------------------------------------------------------
    steps: int | None = None  # optimizer steps in total; exactly one of steps / epochs
    epochs: int | None = None  # passes over the training data in total (the last partial batch is dropped)
    max_minutes: float | None = None  # wall-clock budget of this (re)start; then checkpoint, export, stop
    # --- optimisation (reference defaults, DESIGN §4) ------------------------------------------------
    batch_size: int = 16  # images per process and step (global batch = batch_size x processes)
    lr: float = 1e-3  # initial learning rate
    lr_decay: float = 0.999995  # the learning rate is multiplied by this after every step
    betas: tuple[float, float] = (0.95, 0.9995)  # Adam betas of the reference code
    eps: float = 1e-8  # Adam epsilon (torch adds it outside the square root; TF's reference inside)
    grad_clip: float | None = None  # clip the global gradient norm to this (None: no clipping)
    ema_decay: float = 0.9995  # Polyak/EMA decay of the weights that are evaluated and exported
    ema_warmup: bool = False  # timm ModelEmaV3 decay warm-up (off: the reference's constant decay)
    init_batch_size: int = 16  # images for the data-dependent init of a fresh run (0: skip it)
    weight_decay: float = 0.0  # L2 on the effective weights (the weight-norm gains g; see _param_groups)
    mutation_rate: float = 0.0  # replace each training sub-pixel by a uniform level with this probability
    seed: int = 0  # seeds model init, data order (seed + epoch) and dropout (seed + 1 + rank)
    # --- bookkeeping --------------------------------------------------------------------------------
    out_dir: str = "runs/pixelzoo"  # run directory: checkpoint, metrics, samples, exported model
    resume: bool = False  # continue from out_dir/checkpoint.pt (an error if there is none)
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    eval_every: int = 0  # steps between evaluations of the EMA weights (0: only at the end; -1: never)
    eval_batch_size: int = 100  # images per evaluation batch
    sample_every: int = 0  # steps between sample grids (0: only at the end; -1: never)
    num_samples: int = 16  # images per sample grid
    log_every: int = 10  # steps between lines in metrics.jsonl (loss averaged over them)
    export: bool = True  # write the EMA model to out_dir/model at the end
    progress: bool = True  # tqdm progress bars (rank 0 only)
    # --- hardware -----------------------------------------------------------------------------------
    device: str | None = None  # "cpu", "cuda", "cuda:1" (default: CUDA when available)
    bf16: bool | None = None  # bf16 autocast of the network (default: on for CUDA); the likelihood stays fp32
    compile: bool = False  # torch.compile the training step
    compile_kernels: bool = False  # single-pass compiled elementwise kernels in the gated resnets (CPU speed)
    num_workers: int = 0  # DataLoader workers (0: batches are sliced in the main process)
    reuse_cpu_memory: bool = True  # on the CPU, keep freed tensor memory for reuse (pixelzoo.cpu_allocator)
    threads: int | None = None  # torch CPU threads (None: torch's choice; a resume reuses the run's own count)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_args", dict(self.model_args))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        problems = []
        if (self.steps is None) == (self.epochs is None):
            problems.append(f"set exactly one of steps / epochs (got steps={self.steps}, epochs={self.epochs})")
        for name in ("steps", "epochs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                problems.append(f"{name} must be an int >= 0, got {value!r}")
        for name in ("batch_size", "checkpoint_every", "eval_batch_size", "log_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        for name in ("init_batch_size", "num_workers", "num_samples"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                problems.append(f"{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("eval_every", "sample_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < -1:
                problems.append(f"{name} must be an int >= -1 (-1 never, 0 at the end), got {getattr(self, name)!r}")
        if not self.lr > 0 or not 0 < self.lr_decay <= 1:
            problems.append(f"need lr > 0 and 0 < lr_decay <= 1, got lr={self.lr}, lr_decay={self.lr_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas}")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not 0.0 <= self.mutation_rate <= 1.0:
            problems.append(f"mutation_rate must be in [0, 1], got {self.mutation_rate}")
        if not self.weight_decay >= 0.0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            problems.append(f"max_minutes must be > 0 or None, got {self.max_minutes}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            problems.append(f"threads must be an int >= 1 or None, got {self.threads!r}")
        if self.eval_limit is not None and self.eval_limit < 1:
            problems.append(f"eval_limit must be >= 1 or None, got {self.eval_limit}")
        if self.dtype not in _DTYPES:
            problems.append(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.bf16 and self.dtype != "float32":
            problems.append("bf16 autocast needs dtype='float32'")
        if self.init_from is not None and (self.model_args or self.backbone or self.head):
            problems.append("init_from takes the architecture from the loaded weights: drop backbone/head/"
                            "model_args (or start from a preset without init_from)")
        if self.init_from is None and self.model is None and (self.backbone is None or self.head is None):
            problems.append("name a preset (model=...) or both backbone= and head=")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists); :meth:`from_dict` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from :meth:`to_dict` output; an unknown key is a ``ValueError`` (typos must not pass)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**d)


# Fields that decide the trajectory: a resume must keep them (the others, such as steps, may change).
_FIXED_ON_RESUME = ("model", "backbone", "head", "model_args", "init_from", "dtype", "data", "split",
                    "batch_size", "lr", "lr_decay", "betas", "eps", "grad_clip", "ema_decay", "ema_warmup",
                    "init_batch_size", "seed", "bf16", "weight_decay", "mutation_rate")

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank).

    Attributes:
        step: optimizer steps done in total (over all restarts).
        loss: mean training bits/dim of the last logged interval (None if no step ran).
        eval: the last evaluation of the EMA weights (``evaluate``'s dict plus ``step``), or None.
        stopped: ``"completed"`` or ``"time_limit"``.
        out_dir: the run directory; checkpoint: its checkpoint file; model_dir: the exported model or None.
        model: the raw trained model (unwrapped); ema_model: its EMA copy (what is evaluated and exported).
        history: every metrics record this call wrote (rank 0) or would have written (other ranks).
    """

    step: int
    loss: float | None
    eval: dict[str, Any] | None
    stopped: str
    out_dir: Path
    checkpoint: Path | None
    model_dir: Path | None
    model: nn.Module
    ema_model: nn.Module
    history: list[dict[str, Any]]


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the last checkpoint holds the last good state."""


# ----------------------------------------------------------------------------------------- model & data
def build_model(config: TrainConfig):
    """The model a config describes, with fresh weights (or the ``init_from`` weights)."""
    from .builder import create_model

    if config.init_from is not None:
        model = _load_weights(config.init_from)
    elif config.model is not None:
        model = create_model(config.model, backbone=config.backbone, head=config.head, **config.model_args)
    else:
        model = create_model(backbone=config.backbone, head=config.head, **config.model_args)
    return model.to(_DTYPES[config.dtype]).train()


def _load_weights(spec: str):
    if ckpt.is_checkpoint_spec(spec):
        return ckpt.model_from_checkpoint(spec, "ema")
    import pixelzoo

    loader = getattr(pixelzoo, "from_pretrained", None)
    if loader is None:
        from .model import PixelZooModel

        loader = PixelZooModel.from_pretrained
    return loader(spec)


def _check_fits(model, data, what: str) -> None:
    """The data must have the model's image shape, level range, labels and maps; raise with the fix otherwise."""
    if model.cond_channels:
        maps = getattr(data, "cond_maps", None)
        if maps is None or maps.shape[1] != model.cond_channels:
            got = "none" if maps is None else f"maps of {maps.shape[1]} channels"
            raise ValueError(f"the model conditions on {model.cond_channels}-channel maps but {what} {data.name!r} "
                             f"has {got}: store 'cond_maps' (N, {model.cond_channels}, h, w) in its .npz")
    if model.num_codes:
        if tuple(data.image_shape) != tuple(model.image_shape):
            raise ValueError(f"{what} {data.name!r} has code maps of shape {tuple(data.image_shape)} but the model "
                             f"takes {tuple(model.image_shape)}")
        try:
            model.check_images(data.images)
        except ValueError as e:
            raise ValueError(f"{what} {data.name!r}: {e}") from None
        _check_labels_fit(model, data, what)
        return
    data_bits = getattr(data, "bits", model.bits)
    if data_bits != model.bits:
        raise ValueError(f"{what} {data.name!r} holds {data_bits}-bit levels but the model takes {model.bits}-bit "
                         f"ones: pass --set bits={data_bits} (TrainConfig.model_args={{'bits': {data_bits}}})")
    if tuple(data.image_shape) != tuple(model.image_shape):
        C, H, W = data.image_shape
        raise ValueError(f"{what} {data.name!r} has images of shape {tuple(data.image_shape)} but the model takes "
                         f"{tuple(model.image_shape)}: pick a preset for this data, or pass "
                         f"--set image_shape=[{C},{H},{W}] (TrainConfig.model_args={{'image_shape': [{C}, {H}, {W}]}})")
    model.check_images(data.images[:0])
    top = 2**model.bits - 1
    lo, hi = int(data.images.min()), int(data.images.max())
    if lo < 0 or hi > top:
        raise ValueError(f"{what} {data.name!r} holds levels in [{lo}, {hi}] but the model takes {model.bits}-bit "
                         f"levels in [0, {top}]: set bits (--set bits=N) to the data's bit depth")
    _check_labels_fit(model, data, what)


def _check_labels_fit(model, data, what: str) -> None:
    if model.num_classes:
        if data.labels is None:
            raise ValueError(f"the model is class-conditional ({model.num_classes} classes) but {what} "
                             f"{data.name!r} has no labels")
        if int(data.labels.min()) < 0 or int(data.labels.max()) >= model.num_classes:
            raise ValueError(f"{what} {data.name!r} has labels in [{int(data.labels.min())}, "
                             f"{int(data.labels.max())}] but the model has {model.num_classes} classes")


def epoch_batches(dataset: Dataset, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[list[int]]:
    """The index batches of one epoch for one rank: a function of (seed, epoch, rank, world_size) only.

    A seeded ``DistributedSampler`` shuffles all N images with ``seed + epoch`` and deals them to the
    ranks; each rank cuts its share into full batches (the partial remainder is dropped). Global batch
    ``k`` is the same set of images for any ``world_size`` with the same global batch size.
    """
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(len(order) // batch_size)]


class _BatchSlices(Dataset):
    """Whole batches sliced from in-memory images (a DataLoader over it runs with ``batch_size=None``)."""

    def __init__(self, data, batches: list[list[int]], with_maps: bool = False) -> None:
        self.images, self.labels, self.batches = data.images, data.labels, batches
        self.maps = data.cond_maps if with_maps else None

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        idx = torch.tensor(self.batches[i], dtype=torch.int64)
        return (self.images[idx], None if self.labels is None else self.labels[idx],
                None if self.maps is None else self.maps[idx])


def _iterate(data, batches: list[list[int]], num_workers: int, pin: bool, with_maps: bool = False) -> Iterator:
    slices = _BatchSlices(data, batches, with_maps)
    if num_workers == 0:
        return (slices[i] for i in range(len(slices)))
    # A private generator: a DataLoader iterator otherwise draws its base seed from the global RNG,
    # which would make the dropout stream depend on where a run was resumed.
    return iter(DataLoader(slices, batch_size=None, shuffle=False, num_workers=num_workers, pin_memory=pin,
                           generator=torch.Generator().manual_seed(0)))


# ------------------------------------------------------------------------------------------- the loss
class BatchBitsPerDim(nn.Module):
    """The training loss, mean bits/dim of a batch, as a module (so DDP and torch.compile can wrap it).

    Images are validated once for the whole dataset before training, so this is the unchecked hot path.

    Shape:
        x: (B, C, H, W) integer levels; labels: (B,) or None -> scalar
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dims = math.prod(model.image_shape)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                cond_map: torch.Tensor | None = None) -> torch.Tensor:
        m = self.model
        dtype = m.proj.bias.dtype
        params = m.params_from_unit(m.encode(x, dtype), m.condition(labels, dtype, cond_map))
        nats = m.head.nll(params, x)  # (B, H, W), computed in float32 or better with autocast off
        return nats.sum() / (x.shape[0] * self.dims * math.log(2.0))


# ------------------------------------------------------------------------------------------- the run
def compile_for_training(module: nn.Module) -> nn.Module:
    """``torch.compile(module)`` with the recursion headroom a whole PixelCNN++ training step needs."""
    # Tracing the whole U-net + likelihood for the backward nests ~1000 lazy proxy thunks (torch 2.14's
    # proxy_tensor), past Python's default recursion limit of 1000: a RecursionError. The backbone or the head
    # alone compile at the default; together they need a higher limit.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    return torch.compile(module)


class _MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` on rank 0; keeps the records in memory on every rank."""

    def __init__(self, path: Path, write: bool) -> None:
        self.path, self.write, self.records = path, write, []

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (work after the checkpoint a resume starts from is redone)."""
        if not (self.write and self.path.exists()):
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line torn by a crash
                continue
        from .images import atomic_write_bytes

        atomic_write_bytes(self.path, "".join(f"{line}\n" for line in kept).encode())

    def log(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.write:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def _resume_threads(saved: int | None, asked: int | None) -> None:
    """Run a resumed run on the thread count it was started with: CPU kernels split their sums by thread, so
    another count changes the rounding and the resumed weights would differ from an uninterrupted run's."""
    if saved is None:
        return
    if asked is None:
        torch.set_num_threads(saved)
    elif asked != saved:
        warnings.warn(f"resuming a run that trained on {saved} CPU thread(s) with {asked}: training goes on, but the "
                      f"result is no longer bit-identical to an uninterrupted run (leave out --threads to keep "
                      f"{saved})", stacklevel=3)


def _check_resume_config(saved: dict[str, Any], config: TrainConfig) -> None:
    current = config.to_dict()
    # A run saved before a field existed ran with that field's default.
    saved = {**{f.name: json.loads(json.dumps(f.default)) for f in dataclasses.fields(TrainConfig)
                if f.default is not dataclasses.MISSING}, **saved}
    changed = [k for k in _FIXED_ON_RESUME if saved.get(k) != current.get(k)]
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume: the run was started with different settings ({diffs}); resume with the "
                         f"original settings, or start a new run with --init-from {config.out_dir}")


def _evaluate(model, data, config: TrainConfig, step: int, split: str | None = None) -> dict[str, Any]:
    from .evaluation import evaluate

    gen = torch.Generator(device=model.device).manual_seed(config.seed)
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        result = evaluate(model, data, batch_size=config.eval_batch_size, generator=gen, progress=config.progress)
    return dict(result, kind="eval", step=step, data=data.name, split=split or data.split or config.eval_split)


def _save_samples(model, config: TrainConfig, out_dir: Path, step: int, data=None) -> dict[str, Any]:
    from .images import save_grid

    n = config.num_samples
    labels = torch.arange(n) % model.num_classes if model.num_classes else None
    cond_map = None
    if model.cond_channels:  # the maps of the first images of the data (repeated when it has fewer)
        maps = data.cond_maps
        cond_map = maps[torch.arange(n) % len(maps)].to(model.device)
    gen = torch.Generator(device=model.device).manual_seed(config.seed)
    # fork_rng: sampling must not move the global RNG, or dropout after it would differ from a resumed run.
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        images = model.sample(n, labels, cond_map=cond_map, generator=gen).cpu()
    if model.num_codes:  # code maps are no picture: keep the integers
        path = out_dir / f"samples_step{step}.npy"
        np.save(path, images.numpy())
        return {"kind": "sample", "step": step, "path": path.name}
    path = save_grid(images, out_dir / f"samples_step{step}.png", bits=model.bits, scale=2)
    return {"kind": "sample", "step": step, "path": path.name}


def _chmod_default(path: Path, directory: bool = False) -> None:
    # mkstemp/mkdtemp create private (0600/0700) entries; give the usual permissions under the umask.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def export_model(model, folder: str | os.PathLike, *, ema: nn.Module | None = None,
                 card: dict[str, Any] | None = None) -> Path:
    """Write a loadable model folder (``config.json``, ``model.safetensors``, ``README.md``), replaced atomically.

    Args:
        model: the trained model.
        folder: where to write; an existing folder is replaced as a whole.
        ema: its EMA copy, whose weights become ``model.safetensors`` (the raw weights are not written).
        card: facts for the model card (``pixelzoo.model_card.CardInfo`` fields).

    The folder loads with ``pixelzoo.from_pretrained(folder)``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    old = folder.parent / f".{folder.name}.old"
    try:
        try:
            from .hub import save_pretrained
        except ImportError:  # an older tree without the Hub module: config + EMA weights only
            from safetensors.torch import save_file

            (tmp / "config.json").write_text(json.dumps(model.config, indent=2, sort_keys=True) + "\n")
            state = (ema if ema is not None else model).state_dict()
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"))
        else:
            save_pretrained(model, tmp, ema=ema, card=card)
        _chmod_default(tmp, directory=True)
        for file in tmp.iterdir():
            _chmod_default(file)
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _card(config: TrainConfig, train_data, eval_record: dict[str, Any] | None, step: int, seconds: float,
          info: dist_utils.DistInfo) -> dict[str, Any]:
    if info.device.type == "cuda":
        hardware = f"{info.world_size}x {torch.cuda.get_device_name(info.device)}"
    else:
        hardware = f"{info.world_size}x CPU ({torch.get_num_threads()} threads)"
    card = {"dataset": eval_record["data"] if eval_record else train_data.name, "steps": step,
            "wall_time": round(seconds), "hardware": hardware, "ema_decay": config.ema_decay}
    if eval_record is not None:
        card.update(split=eval_record.get("split") or config.eval_split, num_images=eval_record["num_images"], exact=eval_record["exact"],
                    bits_per_dim=eval_record["bits_per_dim"], nats_per_image=eval_record["nats_per_image"])
    return card


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Adam's parameter groups: with ``weight_decay`` > 0, L2 on the weight-norm gains g and on the plain weights
    of layers without weight norm; none on the directions v, the biases or other vectors.

    Why the gains: a weight-normed layer's effective weight is ``W = g·v/‖v‖``, so ``‖W_o‖ = |g_o|`` for each
    output o and ``Σ g² = ‖W‖²``: decaying g is exactly L2 on the effective weights, while decaying v would
    only change the step size (W does not depend on ‖v‖). Adam's coupled ``weight_decay`` adds ``λ·g`` to the
    gradient of the loss (mean bits/dim of the batch): the gradient of ``λ/2 · Σ ‖W‖²``.
    """
    if weight_decay == 0.0:
        return [{"params": list(model.parameters())}]
    decayed, rest = [], []
    for name, p in model.named_parameters():
        gain = name.endswith("parametrizations.weight.original0")
        plain = p.dim() > 1 and "parametrizations" not in name
        (decayed if gain or plain else rest).append(p)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


class _Run:
    """One (re)start of a training run on this process: its state, and the steps :func:`train` takes."""

    def __init__(self, config: TrainConfig, info: dist_utils.DistInfo, data, eval_data) -> None:
        from timm.utils import ModelEmaV3

        self.config, self.info = config, info
        self.out_dir = Path(config.out_dir)
        self.ckpt_path = self.out_dir / ckpt.CHECKPOINT_NAME
        saved = self._open_checkpoint()
        # Same model init on every rank; rank 0's data-dependent init is broadcast below anyway.
        torch.manual_seed(config.seed)
        model = build_model(config) if saved is None else \
            ckpt.model_from_config(saved["model_config"]).to(_DTYPES[config.dtype]).train()
        self.model = model.to(info.device)
        self._prepare_data(data, eval_data)
        if saved is not None and saved.get("train_images", len(self.train_data)) != len(self.train_data):
            raise ValueError(f"cannot resume exactly: the run trained on {saved['train_images']} images, the data now "
                             f"has {len(self.train_data)}; resume with the same data")
        self.use_bf16 = config.bf16 if config.bf16 is not None else info.device.type == "cuda"
        self.optimizer = torch.optim.Adam(_param_groups(self.model, config.weight_decay), lr=config.lr,
                                          betas=config.betas, eps=config.eps)
        if saved is not None:
            self.model.load_state_dict(saved["model"])
        else:
            self._data_dependent_init()
        self.ema = ModelEmaV3(self.model, decay=config.ema_decay, use_warmup=config.ema_warmup)
        self.step, self.elapsed_before = 0, 0.0
        if saved is not None:
            self.ema.module.load_state_dict(saved["ema"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.step = int(saved["step"])
            self.elapsed_before = float(saved.get("elapsed_seconds", 0.0))
            ckpt.set_rng_state(saved["rng"][info.rank], info.device)
        else:
            torch.manual_seed(config.seed + 1 + info.rank)  # each rank its own dropout stream

        loss_module: nn.Module = BatchBitsPerDim(self.model)
        if info.distributed:
            ids = [info.device.index] if info.device.type == "cuda" else None
            # torch's weight_norm(dim=1) gains of transposed convs are (1, F, 1, 1) with strides (1, 1, 1, 1); their
            # gradients come back with (F, 1, 1, 1). Both are contiguous, but DDP warns on every rank: hush that one.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            loss_module = nn.parallel.DistributedDataParallel(loss_module, device_ids=ids)
        self.net = compile_for_training(loss_module) if config.compile else loss_module
        if info.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self._open_run_dir()

        self.t_start = time.monotonic()
        self.last_ckpt_step = self.step if saved is not None else -1
        self.last_loss: float | None = None
        self.last_eval: dict[str, Any] | None = None
        self.stopped = "completed"
        # Throughput counts the time of the training steps only (not evaluation, sampling or checkpoints).
        self.train_seconds, self.images_since, self.loss_sum, self.loss_count = 0.0, 0, None, 0

    # ------------------------------------------------------------------------------------- setup
    def _open_checkpoint(self) -> dict[str, Any] | None:
        config, info = self.config, self.info
        if not config.resume:
            if self.ckpt_path.exists():
                raise ValueError(f"{str(self.out_dir)!r} already holds a checkpoint: pass --resume to continue that "
                                 f"run, or choose another --out")
            return None
        if not self.ckpt_path.is_file():
            raise ValueError(f"cannot resume: {str(self.out_dir)!r} holds no {ckpt.CHECKPOINT_NAME}; run without "
                             f"--resume to start a new run there")
        saved = ckpt.load_checkpoint(self.ckpt_path)
        _check_resume_config(saved["config"], config)
        _resume_threads(saved.get("threads"), config.threads)
        if saved["world_size"] != info.world_size:
            raise ValueError(f"cannot resume exactly: the run used {saved['world_size']} process(es), this one has "
                             f"{info.world_size}; restart it with the same --nproc_per_node")
        return saved

    def _prepare_data(self, data, eval_data) -> None:
        from .data import load_dataset

        config, info = self.config, self.info
        self.train_data = data if data is not None else load_dataset(config.data, config.split)
        _check_fits(self.model, self.train_data, "training data")
        self.steps_per_epoch = len(epoch_batches(self.train_data, config.batch_size, config.seed, 0, info.rank,
                                                 info.world_size))
        if self.steps_per_epoch == 0:
            raise ValueError(f"training data {self.train_data.name!r} has {len(self.train_data)} images, fewer than "
                             f"one global batch ({config.batch_size} x {info.world_size} processes): lower --batch-size")
        self.total_steps = config.steps if config.steps is not None else config.epochs * self.steps_per_epoch
        self.eval_data = None
        if config.eval_every >= 0:
            self.eval_data = eval_data if eval_data is not None else \
                load_dataset(config.eval_data or config.data, config.eval_split)
            if eval_data is None and config.eval_data is None and self.eval_data.split is None:
                # A single-split source ignores eval_split: the "test" figure would be of training images.
                raise ValueError(f"--data {config.data!r} is one set of images without a train/test split, so the "
                                 f"evaluation would score training images: pass --eval-data with the test images "
                                 f"(or --eval-every -1 to skip evaluation)")
            # The split the figures are reported on: the data's own, else the one the user named for it.
            self.eval_split_name = self.eval_data.split or config.eval_split
            if config.eval_limit is not None:
                self.eval_data = self.eval_data.subset(config.eval_limit)
            _check_fits(self.model, self.eval_data, "evaluation data")

    def _data_dependent_init(self) -> None:
        """REFERENCE §2.1: once, on rank 0, on the first images of the epoch-0 order; then broadcast."""
        config, info, data = self.config, self.info, self.train_data
        if config.init_from is None and config.init_batch_size > 0 and info.is_main:
            order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed))
            idx = order[:config.init_batch_size]
            labels = data.labels[idx].to(info.device) if self.model.num_classes else None
            maps = data.cond_maps[idx].to(info.device) if self.model.cond_channels else None
            self.model.data_dependent_init(data.images[idx].to(info.device), labels, maps)
        dist_utils.broadcast_module(self.model, self.info)

    def _open_run_dir(self) -> None:
        from .images import atomic_write_bytes

        self.log = _MetricsLog(self.out_dir / "metrics.jsonl", self.info.is_main)
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.out_dir / "train_config.json",
                               json.dumps(self.config.to_dict(), indent=2).encode())
            _chmod_default(self.out_dir / "train_config.json")
            if self.config.resume:
                self.log.truncate_after(self.step)
        dist_utils.barrier(self.info)

    # -------------------------------------------------------------------------------------- steps
    def train_step(self, x: torch.Tensor, y: torch.Tensor | None, cond_map: torch.Tensor | None = None) -> None:
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr * config.lr_decay ** self.step
        self.optimizer.zero_grad(set_to_none=True)
        if config.mutation_rate > 0:
            x = mutate(x, config.mutation_rate, self.model.bits,
                       mutation_generator(config.seed, self.step, self.info.rank), levels=self.model.num_codes or None)
        with torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            loss = self.net(x, y, cond_map)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.ema.update(self.model, step=self.step)
        # Summed on the device; read back only when logged (a sync per step would stall a GPU).
        self.loss_sum = loss.detach() if self.loss_sum is None else self.loss_sum + loss.detach()
        self.loss_count += 1
        self.images_since += x.shape[0]

    def flush_loss(self) -> float | None:
        """Log the mean loss since the last flush (averaged over ranks); raise if it is not finite."""
        if self.loss_count == 0:
            return self.last_loss
        mean = float(dist_utils.all_reduce_mean(self.loss_sum / self.loss_count, self.info))
        if not math.isfinite(mean):
            raise TrainingDiverged(f"the training loss became {mean} before step {self.step}; the checkpoint in "
                                   f"{str(self.out_dir)!r} holds the last good state: lower --lr or set --grad-clip")
        self.log.log({"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                      "loss_bpd": mean, "lr": self.optimizer.param_groups[0]["lr"],
                      "images_per_s": self.images_since * self.info.world_size / max(self.train_seconds, 1e-9),
                      "elapsed_s": self.elapsed()})
        self.loss_sum, self.loss_count, self.train_seconds, self.images_since = None, 0, 0.0, 0
        self.last_loss = mean
        return mean

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t_start

    def write_checkpoint(self) -> None:
        info = self.info
        rngs = [ckpt.rng_state(info.device)]
        if info.distributed:
            gathered = {k: dist_utils.all_gather_tensor(v, info) for k, v in rngs[0].items()}
            rngs = [{k: gathered[k][r] for k in gathered} for r in range(info.world_size)]
        if info.is_main:
            epoch, pos = divmod(self.step, self.steps_per_epoch)
            ckpt.save_checkpoint({
                "format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION,
                "config": self.config.to_dict(), "model_config": self.model.config,
                "model": self.model.state_dict(), "ema": self.ema.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step, "epoch": epoch, "batch_in_epoch": pos, "world_size": info.world_size,
                "train_images": len(self.train_data),
                "rng": rngs, "elapsed_seconds": self.elapsed(), "threads": torch.get_num_threads(),
            }, self.ckpt_path)
        self.last_ckpt_step = self.step
        dist_utils.barrier(info)

    def evaluate(self) -> None:
        if self.info.is_main:
            self.last_eval = _evaluate(self.ema.module, self.eval_data, self.config, self.step, self.eval_split_name)
            self.log.log(self.last_eval)
        dist_utils.barrier(self.info)

    def save_samples(self) -> None:
        if self.info.is_main and self.config.num_samples > 0:
            self.log.log(_save_samples(self.ema.module, self.config, self.out_dir, self.step,
                                       self.eval_data if self.eval_data is not None else self.train_data))
        dist_utils.barrier(self.info)

    # ----------------------------------------------------------------------------------- the loop
    def loop(self, callback: Callable[[int, nn.Module], None] | None) -> None:
        config, info = self.config, self.info
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="train", dynamic_ncols=True,
                   disable=not (config.progress and info.is_main))
        self.model.train()
        while self.step < self.total_steps and self.stopped == "completed":
            epoch, pos = divmod(self.step, self.steps_per_epoch)
            batches = epoch_batches(self.train_data, config.batch_size, config.seed, epoch, info.rank,
                                    info.world_size)
            batches = batches[pos:pos + (self.total_steps - self.step)]
            t_step = time.monotonic()
            for x, y, m in _iterate(self.train_data, batches, config.num_workers, info.device.type == "cuda",
                                    with_maps=bool(self.model.cond_channels)):
                x = x.to(info.device, non_blocking=True)
                y = y.to(info.device, non_blocking=True) if (y is not None and self.model.num_classes) else None
                m = None if m is None else m.to(info.device, non_blocking=True)
                self.train_step(x, y, m)
                bar.update(1)
                self.train_seconds += time.monotonic() - t_step
                self._after_step(callback)
                if self.last_loss is not None:
                    bar.set_postfix(bpd=f"{self.last_loss:.4f}", refresh=False)
                if self.stopped != "completed":
                    break
                t_step = time.monotonic()
        bar.close()

    def _after_step(self, callback: Callable[[int, nn.Module], None] | None) -> None:
        config, step = self.config, self.step
        if config.max_minutes is not None and step < self.total_steps:
            over = time.monotonic() - self.t_start > config.max_minutes * 60
            if dist_utils.any_true(over, self.info):  # every rank stops at the same step
                self.stopped = "time_limit"
        # The last step's evaluation and samples happen in finish(), once.
        finishing = step == self.total_steps or self.stopped != "completed"
        if step % config.log_every == 0 or step % config.checkpoint_every == 0 or finishing:
            self.flush_loss()
        if step % config.checkpoint_every == 0:
            self.write_checkpoint()
        if config.eval_every > 0 and step % config.eval_every == 0 and not finishing:
            self.evaluate()
        if config.sample_every > 0 and step % config.sample_every == 0 and not finishing:
            self.save_samples()
        if callback is not None:
            callback(step, self.model)

    def finish(self) -> TrainResult:
        """Checkpoint (if the last step has none), evaluate, sample and export; the result."""
        config, info = self.config, self.info
        if self.last_ckpt_step != self.step:
            self.write_checkpoint()
        if config.eval_every >= 0:
            self.evaluate()
        if config.sample_every >= 0:
            self.save_samples()
        model_dir = None
        if config.export:
            if info.is_main:
                card = _card(config, self.train_data, self.last_eval, self.step, self.elapsed(), info)
                model_dir = export_model(self.model, self.out_dir / "model", ema=self.ema.module, card=card)
            dist_utils.barrier(info)
        self.log.log({"kind": "end", "step": self.step, "stopped": self.stopped, "loss_bpd": self.last_loss,
                      "eval_bits_per_dim": None if self.last_eval is None else self.last_eval["bits_per_dim"],
                      "elapsed_s": self.elapsed()})
        return TrainResult(step=self.step, loss=self.last_loss, eval=self.last_eval, stopped=self.stopped,
                           out_dir=self.out_dir, checkpoint=self.ckpt_path, model_dir=model_dir, model=self.model,
                           ema_model=self.ema.module, history=self.log.records)


def train(config: TrainConfig, *, data=None, eval_data=None,
          callback: Callable[[int, nn.Module], None] | None = None) -> TrainResult:
    """Train a model as ``config`` says; returns a :class:`TrainResult`.

    Args:
        config: the run's settings.
        data: an in-memory ``ImageDataset`` to train on instead of loading ``config.data`` (pass the same
            one again to resume).
        eval_data: an ``ImageDataset`` to evaluate on instead of loading ``config.eval_data``.
        callback: called on every rank after every step (and its checkpoint) as ``callback(step, model)``
            with the raw model; an exception it raises stops training there (tests simulate a crash so).

    Raises:
        ValueError: a bad setting, data that does not fit the model, a resume without a checkpoint or with
            changed settings, a fresh run into a directory that already holds a checkpoint.
        TrainingDiverged: the loss became NaN or infinite (the last checkpoint is kept).
    """
    info = dist_utils.setup(config.device)
    try:
        on_cpu = info.device.type == "cpu"
        if config.compile_kernels and on_cpu and not cpu_compiler_available():
            raise ValueError("compile_kernels (--compile-kernels) compiles C++ kernels on the CPU, but no C++ compiler "
                             "($CXX, g++, c++, clang++) is on PATH: install one, or train without it")
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        if config.reuse_cpu_memory and on_cpu:
            reuse_freed_memory()  # no page faults on each step's fresh activation buffers
        with compiled_kernels(config.compile_kernels):
            run = _Run(config, info, data, eval_data)
            run.loop(callback)
            return run.finish()
    finally:
        dist_utils.teardown(info)
