"""Training checkpoints: one file of tensors and plain containers, written atomically, read without pickle.

A checkpoint is a ``dict`` with the keys below; every value is a tensor or a primitive container, so it
loads with ``torch.load(..., weights_only=True)``:

    format, format_version      "pixelzoo-train-checkpoint", 1
    config                      the TrainConfig as a dict (pixelzoo.train.TrainConfig.from_dict rebuilds it)
    model_config                PixelZooModel.config (rebuilds the architecture)
    model, ema, optimizer       state dicts (the unwrapped model: no DDP ``module.`` / compile ``_orig_mod.``)
    step, epoch, batch_in_epoch optimizer steps done, and where the next batch comes from
    world_size                  processes that wrote it (an exact resume needs the same number)
    train_images                size of the training set (the data order depends on it)
    rng                         one dict per rank: {"torch": CPU generator state[, "cuda": its device's]}
    elapsed_seconds             training wall-clock so far
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CHECKPOINT_NAME", "FORMAT", "save_checkpoint", "load_checkpoint", "find_checkpoint",
           "rng_state", "set_rng_state", "is_checkpoint_spec", "model_from_config", "model_from_checkpoint"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "pixelzoo-train-checkpoint"
FORMAT_VERSION = 1


def _fsync_dir(path: Path) -> None:
    # The rename itself lives in the directory: sync it too so a power cut cannot lose it (POSIX only).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``.

    A crash at any moment leaves either the previous checkpoint or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private (0600); checkpoints are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file for ``path``: the file itself, or ``<run dir>/checkpoint.pt``.

    Raises:
        FileNotFoundError: there is no checkpoint there.
    """
    path = Path(path)
    candidate = path / CHECKPOINT_NAME if path.is_dir() else path
    if not candidate.is_file():
        where = f"run directory {str(path)!r} holds no {CHECKPOINT_NAME}" if path.is_dir() else \
            f"no checkpoint file {str(path)!r}"
        raise FileNotFoundError(f"{where}; train first (pixelzoo train ... --out DIR) or check the path")
    return candidate


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs on load)."""
    file = find_checkpoint(path)
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which file and why, not a pickle traceback
        raise ValueError(f"{str(file)!r} is not a readable pixelzoo checkpoint: {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{str(file)!r} is not a pixelzoo training checkpoint (format {FORMAT!r})")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{str(file)!r} has checkpoint format_version {state['format_version']}; this pixelzoo "
                         f"reads up to {FORMAT_VERSION}: upgrade pixelzoo")
    return state


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's torch random states: the CPU generator, and ``device``'s when it is a CUDA device."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned (the CUDA state only onto a CUDA ``device``)."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def is_checkpoint_spec(spec: str) -> bool:
    """Whether ``spec`` names a training checkpoint (a ``.pt`` file, or a run directory holding one)."""
    path = Path(spec)
    return (path.is_file() and path.suffix == ".pt") or (path.is_dir() and (path / CHECKPOINT_NAME).is_file())


def model_from_config(model_config: dict[str, Any]):
    """A freshly initialised model with the architecture of ``PixelZooModel.config``."""
    from .model import PixelZooModel

    return PixelZooModel.from_config(model_config)


def model_from_checkpoint(path: str | os.PathLike, weights: str = "ema",
                          device: str | torch.device | None = None):
    """Rebuild the model of a training checkpoint with its EMA (default) or raw weights, in eval mode."""
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be 'ema' or 'model', got {weights!r}")
    state = load_checkpoint(path)
    model = model_from_config(state["model_config"])
    dtypes = {t.dtype for t in state[weights].values() if t.is_floating_point()}
    if dtypes == {torch.float64}:  # a float64 run (exactness tests) stays float64
        model.double()
    model.load_state_dict(state[weights], strict=True)
    model.eval()
    return model.to(device) if device is not None else model
