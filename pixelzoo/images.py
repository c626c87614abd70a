"""Writing images: PNG grids of integer samples."""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image

__all__ = ["make_grid", "save_grid", "atomic_write_bytes", "heat_colors", "save_png"]


def make_grid(images: torch.Tensor, bits: int = 8, nrow: int | None = None, padding: int = 2,
              scale: int = 1) -> np.ndarray:
    """Tile integer images into one 8-bit picture.

    Shape:
        images: (N, C, H, W) integer levels in [0, 2**bits), C in {1, 3} -> (rows·(H+p)+p, cols·(W+p)+p[, 3]) uint8
    """
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}")
    N, C, H, W = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(N)))
    rows = max(1, math.ceil(N / nrow))
    x = images.detach().cpu().to(torch.float64) * (255.0 / (2**bits - 1))
    x = x.round().clamp(0, 255).to(torch.uint8)
    if scale > 1:
        x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        H, W = H * scale, W * scale
    canvas = torch.full((rows * nrow, C, H + padding, W + padding), 255, dtype=torch.uint8)
    canvas[:N, :, padding:, padding:] = x
    grid = rearrange(canvas, "(r k) c h w -> (r h) (k w) c", r=rows, k=nrow)
    grid = torch.nn.functional.pad(grid.permute(2, 0, 1), (0, padding, 0, padding), value=255).permute(1, 2, 0)
    out = grid.numpy()
    return out[..., 0] if C == 1 else out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it the permissions an ordinary open() would (0666 & ~umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_grid(images: torch.Tensor, path: str | os.PathLike, bits: int = 8, nrow: int | None = None,
              scale: int = 1) -> Path:
    """Save integer images (N, C, H, W) as one PNG grid, written atomically; returns the path."""
    import io

    buf = io.BytesIO()
    Image.fromarray(make_grid(images, bits, nrow, scale=scale)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


# Anchors of a perceptually ordered black -> purple -> orange -> pale-yellow ramp (close to matplotlib's
# "inferno"), so that heat maps need no plotting library.
_HEAT_ANCHORS = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                          [245, 125, 21], [250, 193, 39], [252, 255, 164]], dtype=np.float64)


def heat_colors(values: torch.Tensor | np.ndarray, vmax: float, vmin: float = 0.0) -> np.ndarray:
    """Map values to RGB colours on a dark-to-bright ramp, clipped to ``[vmin, vmax]``.

    Shape:
        values: (...) float -> (..., 3) uint8
    """
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    t = np.clip((v - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0) * (len(_HEAT_ANCHORS) - 1)
    lo = np.floor(t).astype(int).clip(0, len(_HEAT_ANCHORS) - 2)
    frac = (t - lo)[..., None]
    rgb = _HEAT_ANCHORS[lo] * (1 - frac) + _HEAT_ANCHORS[lo + 1] * frac
    return rgb.round().astype(np.uint8)


def save_png(picture: np.ndarray, path: str | os.PathLike) -> Path:
    """Save an (H, W) or (H, W, 3) uint8 array as a PNG, atomically; returns the path."""
    import io

    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
