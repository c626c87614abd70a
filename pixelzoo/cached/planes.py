"""Feature planes with a zero margin: the per-layer caches of the cached samplers.

A :class:`Plane` holds one layer's output for the whole image, ``(B, C, H, W)``, inside a zero border
of ``margin`` positions. Reading a window that pokes out of the image then is a plain slice (a view),
and the border plays the part of the layer's zero padding. Windows that reach past the border are
zero-filled copies, so correctness never depends on the margin, only speed does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["Plane", "zero_window"]


class Plane:
    """One cached feature map: ``(B, C, H, W)`` values surrounded by ``margin`` zeros on every side.

    Args:
        batch, channels, height, width: the size of the map.
        margin: zero border kept around it (the padding most windows need).
        dtype, device: of the storage.

    Shape:
        window(r0, r1, c0, c1) -> (B, C, r1 - r0, c1 - c0), zeros outside the image
    """

    def __init__(self, batch: int, channels: int, height: int, width: int, *, margin: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        self.height, self.width, self.margin = height, width, margin
        m = margin
        self.data = torch.zeros((batch, channels, height + 2 * m, width + 2 * m), dtype=dtype, device=device)

    @property
    def interior(self) -> torch.Tensor:
        """The (B, C, H, W) view of the map without its border (writable)."""
        m = self.margin
        return self.data[:, :, m:m + self.height, m:m + self.width]

    def window(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        """Rows ``[r0, r1)`` and columns ``[c0, c1)`` in image coordinates; zeros outside the image."""
        m, H, W = self.margin, self.height, self.width
        if -m <= r0 and r1 <= H + m and -m <= c0 and c1 <= W + m:
            return self.data[:, :, r0 + m:r1 + m, c0 + m:c1 + m]
        # Past the border: take the part inside the image and zero-fill the rest.
        return zero_window(self.interior, r0, r1, c0, c1)

    def write(self, r0: int, c0: int, values: torch.Tensor) -> None:
        """Store ``values`` (B, C, h, w) at rows ``r0 .. r0 + h`` and columns ``c0 .. c0 + w``, clipped to the image."""
        h, w = values.shape[-2:]
        (a0, a1, top, _), (b0, b1, left, _) = _clip(r0, r0 + h, self.height), _clip(c0, c0 + w, self.width)
        if a1 > a0 and b1 > b0:
            m = self.margin
            self.data[:, :, a0 + m:a1 + m, b0 + m:b1 + m] = values[..., top:top + a1 - a0, left:left + b1 - b0]


def zero_window(x: torch.Tensor, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    """Rows ``[r0, r1)`` and columns ``[c0, c1)`` of ``x`` (B, C, H, W), zero-filled where they leave ``x``."""
    (a0, a1, top, bottom), (b0, b1, left, right) = _clip(r0, r1, x.shape[-2]), _clip(c0, c1, x.shape[-1])
    return F.pad(x[..., a0:a1, b0:b1], (left, right, top, bottom))


def _clip(lo: int, hi: int, size: int) -> tuple[int, int, int, int]:
    """The part ``[a, b)`` of ``[lo, hi)`` inside ``[0, size)``, and the zeros needed before and after it."""
    a, b = max(lo, 0), min(hi, size)
    if b <= a:  # no overlap: all zeros
        return 0, 0, hi - lo, 0
    return a, b, a - lo, hi - b
