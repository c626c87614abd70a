"""Helpers shared by the subcommands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def add_model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a preset name (pixelzoo list), a local model folder, or a Hub repo id")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")


def pick_device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_model(spec: str, device: torch.device | None = None):
    """A local folder, a Hub repo id, or a preset (its published weights if it has any, else fresh ones), in
    eval mode."""
    from .. import registry
    from ..builder import create_model
    from ..hub import DownloadError, ModelNotFoundError, from_pretrained

    if spec in registry.list_models() and not Path(spec).exists():
        model = None
        if registry.get_preset(spec).hub_id:
            try:
                model = from_pretrained(spec)
            except (ModelNotFoundError, DownloadError) as e:
                print(f"note: no published weights for {spec!r} could be loaded ({e})", file=sys.stderr)
        if model is None:
            model = create_model(spec)
            print(f"note: {spec!r} is a preset: using freshly initialised (untrained) weights", file=sys.stderr)
    else:
        model = from_pretrained(spec)
    model.eval()
    return model.to(device) if device is not None else model


def apply_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
