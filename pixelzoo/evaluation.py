"""Bits/dim over every image of a dataset (no dropped partial batch)."""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(model, dataset, batch_size: int = 100, *, generator: torch.Generator | None = None,
             progress: bool = True) -> dict:
    """Exact bits/dim (a bound for inexact heads) of ``model`` in eval mode over all of ``dataset``.

    Returns ``{"bits_per_dim", "nats_per_image", "num_images", "exact"}``; bits/dim is total nats /
    (N · C · H · W · ln 2) with N the number of images actually scored.
    """
    if len(dataset) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    labels_all = dataset.labels if model.num_classes else None
    maps_all = getattr(dataset, "cond_maps", None) if getattr(model, "cond_channels", 0) else None
    try:
        for start in tqdm(range(0, len(dataset), batch_size), desc="eval", unit="batch", disable=not progress,
                          leave=False):
            x = dataset.images[start:start + batch_size].to(model.device)
            y = None if labels_all is None else labels_all[start:start + batch_size].to(model.device)
            m = None if maps_all is None else maps_all[start:start + batch_size].to(model.device)
            total += float(model.nll(x, y, cond_map=m, generator=generator).double().sum())
            count += x.shape[0]
    finally:
        model.train(was_training)
    dims = count * math.prod(model.image_shape)
    return {"bits_per_dim": total / (dims * math.log(2.0)), "nats_per_image": total / count,
            "num_images": count, "exact": model.exact_likelihood}
