"""The model card (``README.md``) of a published pixelzoo model: YAML metadata, results, usage, recipe.

The metadata goes through ``huggingface_hub``'s ``ModelCardData`` / ``EvalResult``, so the Hub reads the
bits/dim as a model-index result: the split, the number of images and whether it is exact or an upper
bound. What is known about a model beyond its config comes in as :class:`CardInfo` (or a plain dict of its
fields, e.g. ``{**pixelzoo.evaluation.evaluate(model, data), "dataset": "mnist", "split": "test"}``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from huggingface_hub import EvalResult, ModelCard, ModelCardData

__all__ = ["CardInfo", "build_model_card"]

REPO_URL = "https://github.com/pixelzoo/pixelzoo"
PIPELINE_TAG = "unconditional-image-generation"
BASE_TAGS = ("pixelcnn", "autoregressive", "image-generation")


@dataclass(frozen=True)
class CardInfo:
    """Facts about a trained model for its card; every field is optional.

    Attributes:
        dataset: dataset name as shown in the card, e.g. ``"mnist"``.
        dataset_id: Hub dataset id for the ``datasets:`` metadata when it differs, e.g. ``"ylecun/mnist"``.
        split: the split the bits/dim was measured on, e.g. ``"test"``.
        num_images: how many images that bits/dim is averaged over.
        bits_per_dim: the measured bits/dim (needs ``dataset``, ``split`` and ``num_images``).
        exact: ``True`` for an exact likelihood, ``False`` for an upper bound; default: the model's head.
        nats_per_image: mean negative log-likelihood per image in nats (shown in the text).
        steps: optimizer steps of training.
        epochs: epochs those steps make (as the trainer counts them: steps / full batches per epoch).
        wall_time: training time, seconds (a number) or a phrase such as ``"3 h 10 min"``.
        hardware: what it trained on, e.g. ``"1x H200"`` or ``"2 CPU cores"``.
        command: the command line that trained it.
        ema_decay: the EMA decay of the published weights, when they are EMA weights.
        license: SPDX-style license id of the weights (default ``"mit"``).
        model_name: title of the card (default: the repo's name).
        description: a paragraph under the title (default: one generated from the config).
        provenance: where the weights come from (e.g. the file a checkpoint was converted from), in Markdown.
    """

    dataset: str | None = None
    dataset_id: str | None = None
    split: str | None = None
    num_images: int | None = None
    bits_per_dim: float | None = None
    exact: bool | None = None
    nats_per_image: float | None = None
    steps: int | None = None
    epochs: float | None = None
    wall_time: float | str | None = None
    hardware: str | None = None
    command: str | None = None
    ema_decay: float | None = None
    license: str = "mit"
    model_name: str | None = None
    description: str | None = None
    provenance: str | None = None

    @classmethod
    def coerce(cls, info: "CardInfo | Mapping[str, Any] | None") -> "CardInfo":
        """A :class:`CardInfo` from itself, a dict of its fields, or ``None``; unknown keys are an error."""
        if info is None:
            return cls()
        if isinstance(info, CardInfo):
            return info
        if not isinstance(info, Mapping):
            raise ValueError(f"card metadata must be a CardInfo or a dict, got {type(info).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(info) - fields)
        if unknown:
            raise ValueError(f"unknown card metadata key(s) {unknown}; accepted keys: {sorted(fields)}")
        out = cls(**info)
        if out.bits_per_dim is not None:
            missing = [k for k in ("dataset", "split", "num_images") if getattr(out, k) is None]
            if missing:
                raise ValueError(f"card metadata gives bits_per_dim but not {missing}: a result names the "
                                 "dataset, the split and the number of images it was measured on")
            if isinstance(out.num_images, bool) or not isinstance(out.num_images, int) or out.num_images < 1:
                raise ValueError(f"num_images must be a positive int, got {out.num_images!r}")
        return out


def build_model_card(model, info: CardInfo | Mapping[str, Any] | None = None, *, repo_id: str | None = None,
                     ema: bool = False, raw_weights_file: str | None = None) -> ModelCard:
    """The ``README.md`` of a model repo.

    Args:
        model: the :class:`~pixelzoo.PixelZooModel` being published.
        info: what is known beyond the config (see :class:`CardInfo`).
        repo_id: the Hub id used in the usage snippet (default: a placeholder path).
        ema: whether ``model.safetensors`` holds EMA weights.
        raw_weights_file: name of the file with the raw (non-EMA) weights, if published.
    """
    info = CardInfo.coerce(info)
    exact = model.exact_likelihood if info.exact is None else bool(info.exact)
    name = info.model_name or (repo_id.split("/")[-1] if repo_id else f"{model.backbone_name}-{model.head_name}")
    data = ModelCardData(
        library_name="pixelzoo",
        license=info.license,
        pipeline_tag=PIPELINE_TAG,
        tags=[*BASE_TAGS, model.backbone_name, model.head_name],
        datasets=[info.dataset_id or info.dataset] if info.dataset else None,
        model_name=name,
        eval_results=[_eval_result(info, exact)] if info.bits_per_dim is not None else None,
    )
    body = "\n\n".join(part for part in (
        f"# {name}",
        info.description or _default_description(model),
        _summary_table(model, ema, raw_weights_file),
        _results(info, exact),
        f"## Provenance\n\n{info.provenance}" if info.provenance else "",
        _usage(model, repo_id),
        _recipe(info, ema),
    ) if part)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def _eval_result(info: CardInfo, exact: bool) -> EvalResult:
    return EvalResult(
        task_type=PIPELINE_TAG,
        task_name="Density estimation",
        dataset_type=info.dataset_id or info.dataset,
        dataset_name=info.dataset,
        dataset_split=info.split,
        metric_type="bits_per_dim",
        metric_name="bits/dim" if exact else "bits/dim (upper bound)",
        metric_value=round(float(info.bits_per_dim), 4),
        metric_args={"num_images": int(info.num_images), "exact": exact},
    )


def _args(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(args.items())) or "defaults"


def _default_description(model) -> str:
    kind = f"A class-conditional ({model.num_classes} classes)" if model.num_classes else "An unconditional"
    return (f"{kind} autoregressive image model, p(x) = Π p(x_i | x_<i) over pixels in raster order, made of "
            f"registered [pixelzoo]({REPO_URL}) parts: the `{model.backbone_name}` backbone and the "
            f"`{model.head_name}` likelihood head.")


def _summary_table(model, ema: bool, raw_weights_file: str | None) -> str:
    C, H, W = model.image_shape
    weights = "EMA (Polyak) average of the weights" if ema else "the trained weights"
    if raw_weights_file:
        weights += f"; the raw (non-averaged) weights are in `{raw_weights_file}`"
    rows = [
        ("backbone", f"`{model.backbone_name}` ({_args(model.backbone_args)})"),
        ("head", f"`{model.head_name}` ({_args(model.head_args)})"),
        ("images", f"{C}×{H}×{W}, {model.bits} bits per sub-pixel"),
        ("classes", str(model.num_classes) if model.num_classes else "none (unconditional)"),
        ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
        ("likelihood", "exact" if model.exact_likelihood else "variational upper bound"),
        ("`model.safetensors`", weights),
    ]
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _results(info: CardInfo, exact: bool) -> str:
    if info.bits_per_dim is None:
        return ""
    rel = "=" if exact else "≤"
    kind = "exact negative log-likelihood" if exact else "upper bound on the negative log-likelihood"
    line = (f"bits/dim {rel} **{info.bits_per_dim:.4f}** on the `{info.split}` split of {info.dataset} "
            f"({info.num_images:,} images; {kind}).")
    if info.nats_per_image is not None:
        line += f" That is {info.nats_per_image:.2f} nats per image."
    return "## Results\n\n" + line


def _usage(model, repo_id: str | None) -> str:
    target = repo_id or "path/to/this/folder"
    labels = ", labels" if model.num_classes else ""
    code = ["import torch, pixelzoo", "", f'model = pixelzoo.from_pretrained("{target}")']
    if model.num_classes:
        code.append(f"labels = torch.arange(16) % {model.num_classes}")
    code += [f"images = model.sample(16{labels}, generator=torch.Generator().manual_seed(0))  # uint8 (16, C, H, W)",
             f"bpd = model.bits_per_dim(images{labels})"]
    return ("## Usage\n\n```python\n" + "\n".join(code) + "\n```\n\n"
            f"Command line: `pixelzoo sample {target} -n 16 --out samples.png` and `pixelzoo eval {target}`.")


def _recipe(info: CardInfo, ema: bool) -> str:
    wall = info.wall_time
    if isinstance(wall, (int, float)) and not isinstance(wall, bool):
        wall = f"{wall / 3600:.2f} h" if wall >= 3600 else f"{wall:.0f} s"
    rows = [
        ("dataset", info.dataset), ("steps", f"{info.steps:,}" if info.steps is not None else None),
        ("epochs", f"{info.epochs:.2f}" if info.epochs is not None else None),
        ("wall time", wall), ("hardware", info.hardware),
        ("EMA decay", info.ema_decay if ema else None),
    ]
    lines = [f"- {k}: {v}" for k, v in rows if v is not None]
    if info.command:
        lines.append(f"- command:\n\n```bash\n{info.command}\n```")
    return "## Training\n\n" + "\n".join(lines) if lines else ""
