"""Feature planes with a zero margin: the per-layer caches of the cached samplers.

A :class:`Plane` holds one layer's output for the whole image, channels last, ``(B, H, W, C)``, inside a
zero border of ``margin`` positions. Reading a window that pokes out of the image then is a plain slice
(a view), and the border plays the part of the layer's zero padding. Windows that reach past the border
are zero-filled copies, so correctness never depends on the margin, only speed does.

Channels last, because the cached samplers read tiny windows (a 2x2 patch per pixel): a window of a
channels-first map is a strided view with 2-element rows, which elementwise kernels and matmuls handle
20x slower than the contiguous channel vectors of a channels-last one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["Plane", "zero_window", "concat_elu_last"]


def concat_elu_last(x: torch.Tensor) -> torch.Tensor:
    """:func:`~pixelzoo.layers.concat_elu` for channels-last tensors: (..., C) -> (..., 2C)."""
    return F.elu(torch.cat([x, -x], dim=-1))


class Plane:
    """One cached feature map: ``(B, H, W, C)`` values surrounded by ``margin`` zeros on every side.

    Args:
        batch, channels, height, width: the size of the map.
        margin: zero border kept around it (the padding most windows need).
        dtype, device: of the storage.
        activations: also keep ``concat_elu`` of the values in :attr:`activated` (a plane of 2C
            channels), computed once per position when it is written, for the layers that read it.
        values: keep the values themselves (``False`` for a plane only ever read through ``activated``).

    Shape:
        window(r0, r1, c0, c1) -> (B, r1 - r0, c1 - c0, C), zeros outside the image
    """

    def __init__(self, batch: int, channels: int, height: int, width: int, *, margin: int,
                 dtype: torch.dtype, device: torch.device | str, activations: bool = False,
                 values: bool = True) -> None:
        self.batch, self.height, self.width, self.margin, self.channels = batch, height, width, margin, channels
        m = margin
        shape = (batch, height + 2 * m, width + 2 * m, channels) if values else (0, 0, 0, channels)
        self.data = torch.zeros(shape, dtype=dtype, device=device)
        self.has_values = values
        # concat_elu of the values, kept beside them when consumers read it (computed once per position).
        self.activated = (Plane(batch, 2 * channels, height, width, margin=margin, dtype=dtype, device=device)
                          if activations else None)

    @property
    def interior(self) -> torch.Tensor:
        """The (B, H, W, C) view of the map without its border (writable)."""
        m = self.margin
        return self.data[:, m:m + self.height, m:m + self.width]

    def window(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """Rows ``[r0, r1)`` and columns ``[c0, c1)`` in image coordinates; zeros outside the image."""
        if not self.has_values:
            raise ValueError("this plane keeps only the activations of its values; read plane.activated")
        m, H, W = self.margin, self.height, self.width
        if -m <= r0 and r1 <= H + m and -m <= c0 and c1 <= W + m:
            return self.data[:, r0 + m:r1 + m, c0 + m:c1 + m]
        # Past the border: take the part inside the image and zero-fill the rest.
        return zero_window(self.interior, r0, r1, c0, c1)

    def write(self, r0: int, c0: int, values: torch.Tensor) -> None:
        """Store ``values`` (B, h, w, C) at rows ``r0 .. r0 + h`` and columns ``c0 .. c0 + w``, clipped to the image."""
        h, w = values.shape[1:3]
        (a0, a1, top, _), (b0, b1, left, _) = _clip(r0, r0 + h, self.height), _clip(c0, c0 + w, self.width)
        if a1 > a0 and b1 > b0:
            m = self.margin
            values = values[:, top:top + a1 - a0, left:left + b1 - b0]
            if self.has_values:
                self.data[:, a0 + m:a1 + m, b0 + m:b1 + m] = values
            if self.activated is not None:
                self.activated.write(a0, b0, concat_elu_last(values))


def zero_window(x: torch.Tensor, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of ``x`` (B, H, W, C), zero-filled where they leave ``x``."""
    (a0, a1, top, bottom), (b0, b1, left, right) = _clip(r0, r1, x.shape[1]), _clip(c0, c1, x.shape[2])
    return F.pad(x[:, a0:a1, b0:b1], (0, 0, left, right, top, bottom))


def _clip(lo: int, hi: int, size: int) -> tuple[int, int, int, int]:
    """The part ``[a, b)`` of ``[lo, hi)`` inside ``[0, size)``, and the zeros needed before and after it."""
    a, b = max(lo, 0), min(hi, size)
    if b <= a:  # no overlap: all zeros
        return 0, 0, hi - lo, 0
    return a, b, a - lo, hi - b
