"""Bits/dim over every image of a dataset (no dropped partial batch)."""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

__all__ = ["evaluate", "nll_per_image"]


@torch.no_grad()
def nll_per_image(model, images: torch.Tensor, labels: torch.Tensor | None = None,
                  cond_maps: torch.Tensor | None = None, *, batch_size: int = 100,
                  generator: torch.Generator | None = None, progress: bool = True, desc: str = "eval") -> torch.Tensor:
    """Nats of every image (a bound for inexact heads), in eval mode, in batches; training mode is restored.

    Shape:
        images: (N, C, H, W) integer levels; labels: (N,) or None; cond_maps: (N, D, h, w) or None -> (N,) float64
    """
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", disable=not progress,
                          leave=False):
            part = slice(start, start + batch_size)
            y = None if labels is None else labels[part].to(model.device)
            m = None if cond_maps is None else cond_maps[part].to(model.device)
            out.append(model.nll(images[part].to(model.device), y, cond_map=m, generator=generator).double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def evaluate(model, dataset, batch_size: int = 100, *, generator: torch.Generator | None = None,
             progress: bool = True) -> dict:
    """Exact bits/dim (a bound for inexact heads) of ``model`` in eval mode over all of ``dataset``.

    Returns ``{"bits_per_dim", "nats_per_image", "num_images", "exact"}``; bits/dim is total nats /
    (N · C · H · W · ln 2) with N the number of images actually scored.
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    labels = dataset.labels if model.num_classes else None
    maps = getattr(dataset, "cond_maps", None) if getattr(model, "cond_channels", 0) else None
    nats = nll_per_image(model, dataset.images, labels, maps, batch_size=batch_size, generator=generator,
                         progress=progress)
    total, count = float(nats.sum()), len(nats)
    dims = count * math.prod(model.image_shape)
    return {"bits_per_dim": total / (dims * math.log(2.0)), "nats_per_image": total / count,
            "num_images": count, "exact": model.exact_likelihood}
