"""One process or many (``torchrun``): who am I, and the few collectives training needs.

``torchrun --nproc_per_node N -m pixelzoo train ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` then joins the process group (NCCL on CUDA, gloo on the
CPU) and gives each process its device. Without those variables everything runs in one process and every
helper here is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistInfo", "setup", "teardown", "broadcast_module", "all_reduce_mean", "all_gather_tensor",
           "any_true", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the run.

    Attributes:
        rank: global rank (0 logs, evaluates and writes checkpoints).
        world_size: number of processes.
        local_rank: rank on this machine (picks the GPU).
        device: the device this process trains on.
        owns_group: whether :func:`setup` created the process group (and :func:`teardown` must destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def setup(device: str | None = None) -> DistInfo:
    """Join the ``torchrun`` process group if there is one, and pick this process's device.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... or None for CUDA when available. Under torchrun with
            CUDA each process takes ``cuda:LOCAL_RANK``.
    """
    requested = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available; use --device cpu")
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo(device=requested)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if requested.type == "cuda":
        requested = torch.device("cuda", local_rank)
        torch.cuda.set_device(requested)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if requested.type == "cuda" else "gloo")
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise ValueError(f"process group has rank {dist.get_rank()}/{dist.get_world_size()} but the environment "
                         f"says RANK={rank} WORLD_SIZE={world}")
    return DistInfo(rank, world, local_rank, requested, owns)


def teardown(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _active(info: DistInfo) -> bool:
    return info.distributed and dist.is_initialized()


@torch.no_grad()
def broadcast_module(module: nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks (e.g. after init on rank 0)."""
    if not _active(info):
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src)


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``value`` over the ranks (a detached copy; ``value`` itself is untouched)."""
    out = value.detach().clone()
    if _active(info):
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= info.world_size
    return out


def all_gather_tensor(value: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """``value`` from every rank, in rank order (same shape and dtype everywhere); ``[value]`` alone."""
    if not _active(info):
        return [value]
    # Tensors travel on the backend's device (NCCL needs CUDA tensors); results come back on value's device.
    moved = value.to(info.device)
    out = [torch.empty_like(moved) for _ in range(info.world_size)]
    dist.all_gather(out, moved)
    return [t.to(value.device) for t in out]


def any_true(flag: bool, info: DistInfo) -> bool:
    """True on every rank if ``flag`` is true on any rank (so all ranks take the same branch)."""
    if not _active(info):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in one process)."""
    if _active(info):
        dist.barrier()
