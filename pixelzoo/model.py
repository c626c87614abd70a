"""A pixelzoo model: backbone -> weight-normed 1x1 projection -> likelihood head."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .heads.base import levels_to_unit
from .layers import NIN, Conditioning, add_spatial_conditioning, data_dependent_init
from .registry import accepted_args, get_backbone_class, get_head_class

__all__ = ["PixelZooModel"]

FORMAT_VERSION = 1


class PixelZooModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="pixelzoo",
    tags=["pixelcnn", "autoregressive", "image-generation"],
    license="mit",
    pipeline_tag="unconditional-image-generation",
    repo_url="https://github.com/pixelzoo/pixelzoo",
):
    """An autoregressive image model ``p(x) = Π_i p(x_i | x_<i)`` built from registered parts.

    Args:
        backbone: registered backbone name (see ``pixelzoo.list_backbones()``).
        head: registered head name (see ``pixelzoo.list_heads()``).
        image_shape: ``(C, H, W)`` of the images the model takes and samples.
        backbone_args: keyword arguments of the backbone (``in_channels`` / ``num_classes`` are set here).
        head_args: keyword arguments of the head (``channels`` / ``bits`` are set here).
        bits: bit depth; images hold integer levels in ``[0, 2**bits)``.
        num_classes: 0 for an unconditional model, else the number of class labels.
        num_codes: 0 for images; K > 0 for maps of discrete codes in ``[0, K)`` (a prior over VQ-VAE latents):
            each code is embedded (a learned ``code_embedding_dim``-vector per code and channel) instead of
            scaled into [-1, 1], and the head must be ``categorical``.
        code_embedding_dim: size of those embeddings.
        cond_channels: 0, or D > 0 to condition on a spatial map (B, D, h, w) given as ``cond_map=``: every
            gated block adds a learned 1x1 projection of it, resized (nearest) to the block's resolution. The map
            is data the model conditions on, never part of what it models.

    Images enter and leave as integer tensors; level k is mapped to ``2k / (2**bits - 1) - 1``.
    """

    def __init__(self, backbone: str, head: str, image_shape: Sequence[int] = (3, 32, 32),
                 backbone_args: dict[str, Any] | None = None, head_args: dict[str, Any] | None = None,
                 bits: int = 8, num_classes: int = 0, num_codes: int = 0, code_embedding_dim: int = 16,
                 cond_channels: int = 0) -> None:
        super().__init__()
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape}")
        for name, value in (("num_classes", num_classes), ("num_codes", num_codes), ("cond_channels", cond_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if isinstance(code_embedding_dim, bool) or not isinstance(code_embedding_dim, int) or code_embedding_dim < 1:
            raise ValueError(f"code_embedding_dim must be a positive int, got {code_embedding_dim!r}")
        C, H, W = image_shape
        self.backbone_name, self.head_name = backbone, head
        self.backbone_args = dict(backbone_args or {})
        self.head_args = dict(head_args or {})
        self.image_shape = image_shape
        self.num_classes = num_classes
        self.num_codes, self.code_embedding_dim, self.cond_channels = num_codes, code_embedding_dim, cond_channels
        head_cls = get_head_class(head)
        takes_codes = bool(getattr(head_cls, "models_codes", False))
        if num_codes and not takes_codes:
            raise ValueError(f"head {head!r} models intensities; a model of discrete codes (num_codes={num_codes}) "
                             f"needs head='categorical'")
        if takes_codes and not num_codes:
            raise ValueError(f"head {head!r} models discrete codes: pass num_codes=K (the codebook size)")
        self.backbone = _build(get_backbone_class(backbone), "backbone", self.backbone_args,
                               in_channels=C * code_embedding_dim if num_codes else C, num_classes=num_classes)
        self.backbone.check_image_size(H, W)
        if cond_channels and add_spatial_conditioning(self.backbone, cond_channels) == 0:
            raise ValueError(f"backbone {backbone!r} has no gated blocks to take a conditioning map (cond_channels)")
        if num_codes:
            self.head = _build(head_cls, "head", self.head_args, channels=C, num_codes=num_codes)
            if bits not in (8, self.head.bits):
                raise ValueError(f"bits is set by num_codes for a code model ({self.head.bits} for {num_codes} "
                                 f"codes), got bits={bits}")
            self.bits = self.head.bits
            # One table for all channels: code k of channel c is row c·K + k.
            self.embedding = nn.Embedding(C * num_codes, code_embedding_dim)
        else:
            self.head = _build(head_cls, "head", self.head_args, channels=C, bits=bits)
            self.bits = bits
        self.proj = NIN(self.backbone.out_features, self.head.num_params())

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model through the registry (JSON-able)."""
        from .version import __version__

        return {
            "library": "pixelzoo",
            "library_version": __version__,
            "format_version": FORMAT_VERSION,
            "backbone": self.backbone_name,
            "backbone_args": dict(self.backbone_args),
            "head": self.head_name,
            "head_args": dict(self.head_args),
            "image_shape": list(self.image_shape),
            "bits": self.bits,
            "num_classes": self.num_classes,
            **({"num_codes": self.num_codes, "code_embedding_dim": self.code_embedding_dim} if self.num_codes else {}),
            **({"cond_channels": self.cond_channels} if self.cond_channels else {}),
        }

    CONFIG_ARGS = ("backbone", "head", "image_shape", "backbone_args", "head_args", "bits", "num_classes",
                   "num_codes", "code_embedding_dim", "cond_channels")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PixelZooModel":
        """A freshly initialised model of the architecture :attr:`config` describes."""
        return cls(**{k: config[k] for k in cls.CONFIG_ARGS if k in config and config[k] is not None})

    @property
    def exact_likelihood(self) -> bool:
        """``True`` if :meth:`nll` is exact; ``False`` if it is a variational upper bound."""
        return bool(self.head.exact)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -------------------------------------------------------------- validation
    def check_images(self, x: Any) -> torch.Tensor:
        """Validate images (or code maps) at the API boundary; raises ``ValueError`` naming what was expected and
        what came."""
        if self.num_codes:
            return self._check_codes(x)
        C, H, W = self.image_shape
        top = 2**self.bits - 1
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"images must be a torch.Tensor of integer levels, got {type(x).__name__}")
        if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"images must hold integer levels in [0, {top}] (uint8 or int16/32/64), got dtype "
                             f"{x.dtype}; for floats in [0, 1] use (x * {top}).round().to(torch.int64)")
        if x.dim() != 4:
            hint = " (add a batch dimension: x[None])" if x.dim() == 3 else ""
            raise ValueError(f"images must have shape (B, {C}, {H}, {W}), got {tuple(x.shape)}{hint}")
        if x.shape[1] != C:
            hint = " (channels last? use x.permute(0, 3, 1, 2))" if x.shape[-1] == C else ""
            raise ValueError(f"this model takes {C}-channel images (B, {C}, {H}, {W}), got {tuple(x.shape)}{hint}")
        if tuple(x.shape[2:]) != (H, W):
            raise ValueError(f"this model takes {H}x{W} images, got {tuple(x.shape[2:])[0]}x{tuple(x.shape[2:])[1]}")
        if x.numel():
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi > top:
                raise ValueError(f"pixel levels must lie in [0, {top}] for bits={self.bits}, got values in "
                                 f"[{lo}, {hi}]")
        return x

    def _check_codes(self, x: Any) -> torch.Tensor:
        C, H, W = self.image_shape
        K = self.num_codes
        if not isinstance(x, torch.Tensor) or x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
            what = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"codes must be an integer tensor (int64, int32, ...) of indices in [0, {K}), got {what}")
        if tuple(x.shape[1:]) != (C, H, W) or x.dim() != 4:
            raise ValueError(f"code maps must have shape (B, {C}, {H}, {W}), got {tuple(x.shape)}")
        if x.numel():
            lo, hi = int(x.min()), int(x.max())
            if lo < 0 or hi >= K:
                raise ValueError(f"codes must lie in [0, {K}) (num_codes={K}), got values in [{lo}, {hi}]")
        return x

    def check_cond_map(self, cond_map: Any, batch: int) -> torch.Tensor | None:
        """Validate a conditioning map: required (B, D, h, w) float iff the model has ``cond_channels`` = D > 0."""
        D = self.cond_channels
        if D == 0:
            if cond_map is not None:
                raise ValueError("this model takes no conditioning map (cond_channels=0), but cond_map was given")
            return None
        if cond_map is None:
            raise ValueError(f"this model conditions on a spatial map: pass cond_map= of shape ({batch}, {D}, h, w)")
        if not isinstance(cond_map, torch.Tensor) or not cond_map.dtype.is_floating_point:
            what = f"dtype {cond_map.dtype}" if isinstance(cond_map, torch.Tensor) else type(cond_map).__name__
            raise ValueError(f"cond_map must be a float tensor of shape ({batch}, {D}, h, w), got {what}")
        if cond_map.dim() != 4 or cond_map.shape[0] != batch or cond_map.shape[1] != D or min(cond_map.shape) < 1:
            raise ValueError(f"cond_map must have shape ({batch}, {D}, h, w) with h, w >= 1, got "
                             f"{tuple(cond_map.shape)}")
        if not bool(torch.isfinite(cond_map).all()):
            raise ValueError("cond_map holds NaN or infinite values")
        return cond_map.to(self.device)

    def check_labels(self, labels: Any, batch: int) -> torch.Tensor | None:
        """Validate class labels: required (shape (B,), ints in [0, num_classes)) iff the model is conditional."""
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError("this model is unconditional (num_classes=0), but labels were given")
            return None
        if labels is None:
            raise ValueError(f"this model is class-conditional ({self.num_classes} classes): pass labels of "
                             f"shape ({batch},)")
        if isinstance(labels, int):
            labels = torch.full((batch,), labels, dtype=torch.int64)
        if not isinstance(labels, torch.Tensor) or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be an int or an integer tensor of shape ({batch},), got {labels!r}")
        if tuple(labels.shape) != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got values in "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return labels.to(self.device)

    # ----------------------------------------------------------------- compute
    def condition(self, labels: torch.Tensor | None, dtype: torch.dtype,
                  cond_map: torch.Tensor | None = None) -> torch.Tensor | Conditioning | None:
        """What the backbone conditions on: the one-hot labels (B, num_classes), a
        :class:`~pixelzoo.layers.Conditioning` when there is a map, or None."""
        onehot = None if labels is None else F.one_hot(labels.long(), self.num_classes).to(dtype)
        return onehot if cond_map is None else Conditioning(onehot, cond_map.to(dtype))

    def encode(self, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The backbone's input: levels mapped to [-1, 1], or each code's embedding (no validation).

        Shape:
            x: (B, C, H, W) integer -> (B, C, H, W) float, or (B, C·code_embedding_dim, H, W) for codes
        """
        dtype = dtype or self.proj.bias.dtype
        if not self.num_codes:
            return levels_to_unit(x, self.bits, dtype)
        offsets = torch.arange(self.image_shape[0], device=x.device).view(1, -1, 1, 1) * self.num_codes
        emb = self.embedding(x.long() + offsets).to(dtype)  # (B, C, H, W, E)
        return emb.permute(0, 1, 4, 2, 3).flatten(1, 2)

    @property
    def sample_dtype(self) -> torch.dtype:
        """The dtype of sampled images: uint8 up to 8 bits, int32 deeper, int64 for codes."""
        from .sampling import output_dtype

        return torch.int64 if self.num_codes else output_dtype(self.bits)

    def params_from_unit(self, xu: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Head parameters from images already mapped to [-1, 1] (no validation; the hot path).

        Shape:
            xu: (B, C, H, W) float in [-1, 1]; cond: (B, num_classes) or None -> (B, P, H, W)
        """
        return self.proj(self.backbone(xu, cond))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                cond_map: torch.Tensor | None = None) -> torch.Tensor:
        """Per-pixel head parameters for integer images (or code maps).

        Shape:
            x: (B, C, H, W) integer levels; labels: (B,) or None; cond_map: (B, D, h, w) or None -> (B, P, H, W)
        """
        x = self.check_images(x)
        labels = self.check_labels(labels, x.shape[0])
        cond_map = self.check_cond_map(cond_map, x.shape[0])
        dtype = self.proj.bias.dtype
        return self.params_from_unit(self.encode(x.to(self.device), dtype), self.condition(labels, dtype, cond_map))

    def nll(self, x: torch.Tensor, labels: torch.Tensor | None = None, *, cond_map: torch.Tensor | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative log-likelihood of each image in nats (an upper bound if not :attr:`exact_likelihood`).

        Shape:
            x: (B, C, H, W) integer levels; labels: (B,) or None; cond_map: (B, D, h, w) or None -> (B,)
        """
        params = self(x, labels, cond_map)
        return self.head.nll(params, x.to(params.device), generator=generator).sum(dim=(1, 2))

    def nll_map(self, x: torch.Tensor, labels: torch.Tensor | None = None, *, cond_map: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Nats of each sub-pixel given everything before it (earlier pixels; for coupled heads, R, then G given
        R, then B given R and G). Sums over (C, H, W) to :meth:`nll`; for a bound head (``clogistic``) the terms
        are the bound's, drawn with ``generator`` as :meth:`nll` draws them.

        Shape:
            x: (B, C, H, W) integer levels; labels: (B,) or None -> (B, C, H, W)
        """
        params = self(x, labels, cond_map)
        return self.head.nll_map(params, x.to(params.device), generator=generator)

    def bits_per_dim(self, x: torch.Tensor, labels: torch.Tensor | None = None, *,
                     cond_map: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Total nats / (B · C · H · W · ln 2) over exactly the images given (bits per code for code maps)."""
        nats = self.nll(x, labels, cond_map=cond_map, generator=generator)
        return nats.sum() / (nats.shape[0] * math.prod(self.image_shape) * math.log(2.0))

    def data_dependent_init(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                            cond_map: torch.Tensor | None = None) -> "PixelZooModel":
        """Initialise every weight-normed layer from one batch (reference: 16 training images). Run once."""
        data_dependent_init(self, x, labels, cond_map)
        return self

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | int | None = None, *, cond_map: torch.Tensor | None = None,
               method: str = "auto", generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Draw ``n`` images by ancestral sampling in raster order (eval mode: no dropout).

        Args:
            n: number of images.
            labels: class labels (an int for all, or (n,)) for class-conditional models.
            method: ``"naive"`` runs the whole network once per pixel; ``"cached"`` computes only what
                each new pixel changes (``ValueError`` if the backbone has no cache); ``"auto"`` uses the
                cache where the backbone has one, else naive. Both give the same images for the same
                generator (exactly in float64; in float32 up to rare rounding at a bin edge).
            generator: a ``torch.Generator`` for reproducible draws.
            cond_map: (n, D, h, w), the conditioning map of each image, for models with ``cond_channels``.
            temperature: T > 0 scales every conditional as the head defines it (categorical / softmax: logits / T;
                logistic mixtures: mixture logits / T and scales × T); 1 samples the model itself.

        Shape:
            -> (n, C, H, W), uint8 for bits <= 8, int32 deeper, int64 codes
        """
        from .sampling import sample

        return sample(self, n, labels, cond_map=cond_map, method=method, generator=generator,
                      temperature=temperature)

    @torch.no_grad()
    def complete(self, x: torch.Tensor, rows: int, labels: torch.Tensor | int | None = None, *,
                 cond_map: torch.Tensor | None = None, method: str = "auto",
                 generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Keep the first ``rows`` rows of each image and sample the rest (see :func:`pixelzoo.sampling.complete`).

        Shape:
            x: (B, C, H, W) integer levels; labels: (B,) or None -> (B, C, H, W), as :meth:`sample` returns
        """
        from .sampling import complete

        return complete(self, x, rows, labels, cond_map=cond_map, method=method, generator=generator,
                        temperature=temperature)

    # ------------------------------------------------- hub hooks (begin; the logic lives in pixelzoo/hub.py)
    # They replace PyTorchModelHubMixin's defaults, which load non-strictly, fall back to pickled .bin files,
    # and cannot publish EMA weights or write pixelzoo's model card.
    def save_pretrained(self, save_directory: str | os.PathLike, *, ema: nn.Module | Mapping | None = None,
                        include_raw: bool = False, card: Any = None, repo_id: str | None = None,
                        overwrite_card: bool = False) -> Path:
        """Write ``config.json``, ``model.safetensors`` (the ``ema`` weights when given) and a README model
        card to a folder; see :func:`pixelzoo.hub.save_pretrained`."""
        from .hub import save_pretrained

        return save_pretrained(self, save_directory, ema=ema, include_raw=include_raw, card=card,
                               repo_id=repo_id, overwrite_card=overwrite_card)

    def push_to_hub(self, repo_id: str, *, ema: nn.Module | Mapping | None = None, include_raw: bool = False,
                    card: Any = None, revision: str | None = None, private: bool | None = None,
                    token: str | None = None, commit_message: str | None = None):
        """Publish to the Hub in one commit (an existing README is kept); see :func:`pixelzoo.hub.push_to_hub`."""
        from .hub import push_to_hub

        return push_to_hub(self, repo_id, ema=ema, include_raw=include_raw, card=card, revision=revision,
                           private=private, token=token, commit_message=commit_message)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                        local_files_only: bool = False, force_download: bool = False,
                        map_location: str | torch.device = "cpu") -> "PixelZooModel":
        """Load strictly from a folder, a Hub repo or a preset; see :func:`pixelzoo.hub.from_pretrained`."""
        from .hub import from_pretrained

        return from_pretrained(pretrained_model_name_or_path, revision, cache_dir=cache_dir, token=token,
                               local_files_only=local_files_only, force_download=force_download,
                               map_location=map_location)

    def _save_pretrained(self, save_directory: Path) -> None:
        from .hub import write_model_files

        write_model_files(self, save_directory)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: Any, force_download: bool,
                         local_files_only: bool, token: Any, map_location: str = "cpu", strict: bool = True,
                         **model_kwargs: Any) -> "PixelZooModel":
        if not strict:
            raise ValueError("pixelzoo loads weights strictly only (strict=False is not supported)")
        return cls.from_pretrained(model_id, revision=revision, cache_dir=cache_dir, token=token,
                                   local_files_only=local_files_only, force_download=force_download,
                                   map_location=map_location)

    def generate_model_card(self, *args: Any, **kwargs: Any):
        from .model_card import build_model_card

        return build_model_card(self, kwargs.get("card"), repo_id=kwargs.get("repo_id"))
    # --------------------------------------------------------------------------------------- hub hooks (end)

    def extra_repr(self) -> str:
        extra = (f", num_codes={self.num_codes}" if self.num_codes else "") + \
            (f", cond_channels={self.cond_channels}" if self.cond_channels else "")
        return (f"backbone={self.backbone_name!r}, head={self.head_name!r}, image_shape={self.image_shape}, "
                f"bits={self.bits}, num_classes={self.num_classes}{extra}")


def _build(cls: type, kind: str, args: dict[str, Any], **managed: Any) -> nn.Module:
    clash = sorted(set(args) & set(managed))
    if clash:
        raise ValueError(f"{kind} argument(s) {clash} are set by the model (image_shape, bits, num_classes); "
                         f"pass them to the model instead")
    accepted = accepted_args(cls, managed)
    unknown = sorted(set(args) - accepted) if accepted is not None else []
    if unknown:
        raise ValueError(f"{kind} {cls.registry_name!r} takes no argument(s) {unknown}; it takes "
                         f"{sorted(accepted)}")
    return cls(**managed, **args)
