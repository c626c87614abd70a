"""OOD scores from exact likelihoods; higher always means "more out-of-distribution".

* ``likelihood``: the model's negative log-likelihood in bits/dim. Known to fail for some pairs (a model of
  Fashion-MNIST gives MNIST digits *higher* likelihood; Nalisnick et al. 2019).
* ``likelihood ratio`` against a second model: foreground bits/dim minus the second model's bits/dim. With a
  *background* model trained on mutated inputs (Ren et al., NeurIPS 2019) or a *local* model of small
  receptive field (Zhang, Zhang & McDonagh, NeurIPS 2021), the second model explains the pixel-level
  statistics (background, texture), and the difference keeps what only the foreground model knows.
* ``input complexity`` (Serrà et al., ICLR 2020): NLL in bits minus the image's lossless compressed length in
  bits, per dimension. Compressors: ``png`` (Pillow, compression level 9, the paper's PNG), and the general
  purpose ``zlib`` (level 9), ``bz2`` (level 9) and ``lzma`` (preset 9) on the raw bytes of the image.
"""
from __future__ import annotations

import bz2
import io
import lzma
import math
import zlib
from typing import Callable

import numpy as np
import torch

__all__ = ["nll_bits_per_dim", "likelihood_score", "likelihood_ratio_score", "compressed_bits", "complexity_score",
           "COMPRESSORS"]


def nll_bits_per_dim(model, images: torch.Tensor, labels: torch.Tensor | None = None, *, batch_size: int = 200,
                     progress: bool = False, desc: str = "nll") -> torch.Tensor:
    """Bits/dim of every image (exact NLL for exact heads), in eval mode, in batches.

    Shape:
        images: (N, C, H, W) integer levels; labels: (N,) or None -> (N,) float64
    """
    from ..evaluation import nll_per_image

    if len(images) == 0:
        raise ValueError("no images to score (empty data)")
    model.check_images(images[:1])
    nats = nll_per_image(model, images, labels, batch_size=batch_size, progress=progress, desc=desc)
    return nats / (math.prod(model.image_shape) * math.log(2.0))


def likelihood_score(model, images: torch.Tensor, labels: torch.Tensor | None = None, **kw) -> torch.Tensor:
    """Negative log-likelihood in bits/dim. Shape: (N, C, H, W) -> (N,)"""
    return nll_bits_per_dim(model, images, labels, **kw)


def likelihood_ratio_score(model, reference, images: torch.Tensor, labels: torch.Tensor | None = None,
                           **kw) -> torch.Tensor:
    """Foreground bits/dim minus the reference (background or local) model's bits/dim. Shape: -> (N,)"""
    check_same_images(model, reference)
    return nll_bits_per_dim(model, images, labels, **kw) - nll_bits_per_dim(reference, images, None, **kw)


def check_same_images(model, other) -> None:
    if tuple(model.image_shape) != tuple(other.image_shape) or model.bits != other.bits:
        raise ValueError(f"the models take different images: {tuple(model.image_shape)} at {model.bits} bits and "
                         f"{tuple(other.image_shape)} at {other.bits} bits; a likelihood ratio needs the same")


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=9, optimize=True)
    return buf.getvalue()


COMPRESSORS: dict[str, Callable[[np.ndarray], bytes]] = {
    "png": _png_bytes,
    "zlib": lambda a: zlib.compress(a.tobytes(), 9),
    "bz2": lambda a: bz2.compress(a.tobytes(), 9),
    "lzma": lambda a: lzma.compress(a.tobytes(), preset=9),
}


def compressed_bits(images: torch.Tensor, compressor: str = "png", *, bits: int = 8) -> torch.Tensor:
    """Length in bits (bytes × 8) of each image compressed losslessly.

    Images are HWC uint8 (8 bits) or uint16 (up to 16 bits); 1-channel images are greyscale PNGs.

    Shape:
        images: (N, C, H, W) integer levels -> (N,) float64
    """
    if compressor not in COMPRESSORS:
        raise ValueError(f"unknown compressor {compressor!r}; supported: {sorted(COMPRESSORS)}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}")
    dtype = np.uint8 if bits <= 8 else np.uint16
    arr = images.detach().cpu().permute(0, 2, 3, 1).numpy().astype(dtype)
    if arr.shape[-1] == 1:
        arr = arr[..., 0]
    fn = COMPRESSORS[compressor]
    return torch.tensor([8.0 * len(fn(np.ascontiguousarray(a))) for a in arr], dtype=torch.float64)


def complexity_score(model, images: torch.Tensor, labels: torch.Tensor | None = None, *, compressor: str = "png",
                     nll_bpd: torch.Tensor | None = None, **kw) -> torch.Tensor:
    """Serrà et al.'s S(x) = NLL(x) in bits − compressed length L(x) in bits, divided by the dimensions.

    ``nll_bpd`` (bits/dim from :func:`nll_bits_per_dim`) saves recomputing the likelihood.

    Shape:
        images: (N, C, H, W) -> (N,) bits per dimension
    """
    dims = math.prod(model.image_shape)
    if nll_bpd is None:
        nll_bpd = nll_bits_per_dim(model, images, labels, **kw)
    return nll_bpd - compressed_bits(images, compressor, bits=model.bits) / dims
