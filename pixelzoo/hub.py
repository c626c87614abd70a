"""Save, load and publish pixelzoo models: local folders and Hugging Face Hub repos, safetensors only.

A model repo (on the Hub, in the repo's ``hub/`` folder, or written by ``save_pretrained``) holds:

    config.json             ``model.config``: library, library_version, format_version, backbone/head
                            registry names and arguments, image_shape, bits, num_classes
    model.safetensors       the weights to use; for a model trained with EMA, the EMA weights
    model_raw.safetensors   optional: the raw (non-averaged) weights, when EMA weights were published
    README.md               the model card (see :mod:`pixelzoo.model_card`)

Every Hub operation goes through ``huggingface_hub`` (``hf_hub_download``, ``snapshot_download``,
``HfApi.create_repo`` / ``upload_folder``). Loading is strict and never unpickles anything: the config is
checked and the model rebuilt through the registry only, then every tensor must match by name and shape.

Where a model comes from, in order: a local folder if ``repo_id_or_path`` is one; else the Hub (through its
cache, so ``HF_HUB_OFFLINE=1`` works for anything downloaded before); for the zoo's own repos (the Hub ids
that presets name), when the Hub cannot be reached, the local copy ``<dir>/<name>`` in
:func:`local_hub_dirs` (the repository's ``hub/`` folder, and folders listed in ``PIXELZOO_HUB_DIR``). The
source used is logged on the ``pixelzoo.hub`` logger (a warning when it is a fallback). The weights are not
shipped inside the installed package: a pip-installed pixelzoo reads them from the Hub or its cache.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .images import atomic_write_bytes
from .model import FORMAT_VERSION, PixelZooModel
from .model_card import CardInfo, build_model_card
from .version import __version__

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "RAW_WEIGHTS_NAME",
    "CARD_NAME",
    "ConfigError",
    "CheckpointError",
    "ModelNotFoundError",
    "DownloadError",
    "from_pretrained",
    "load_pretrained_weights",
    "save_pretrained",
    "write_model_files",
    "push_to_hub",
    "push_folder",
    "pull",
    "read_config",
    "model_from_config",
    "load_weights",
    "check_state_dict",
    "local_hub_dirs",
]

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
RAW_WEIGHTS_NAME = "model_raw.safetensors"
CARD_NAME = "README.md"
HUB_DIR_ENV = "PIXELZOO_HUB_DIR"

_CONFIG_TYPES: dict[str, type | tuple[type, ...]] = {
    "library": str, "library_version": str, "format_version": int, "backbone": str, "backbone_args": dict,
    "head": str, "head_args": dict, "image_shape": list, "bits": int, "num_classes": int, "num_codes": int,
    "code_embedding_dim": int, "cond_channels": int,
}
_REQUIRED = ("library", "format_version", "backbone", "head", "image_shape")
_MAX_LISTED = 12


# ---------------------------------------------------------------------------------------------- errors
class ConfigError(ValueError):
    """``config.json`` cannot rebuild a pixelzoo model: another library, a newer format, bad or unknown fields,
    or a backbone/head name that is not registered."""


class CheckpointError(ValueError):
    """A weights file cannot be read (truncated, corrupt) or does not fit the model.

    Attributes:
        missing: keys the model has and the checkpoint lacks.
        unexpected: keys the checkpoint has and the model lacks.
        mismatched: ``(key, checkpoint shape, model shape)`` for tensors of another shape.
    """

    def __init__(self, message: str, *, missing: list[str] | None = None, unexpected: list[str] | None = None,
                 mismatched: list[tuple[str, tuple, tuple]] | None = None) -> None:
        super().__init__(message)
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []


class ModelNotFoundError(FileNotFoundError):
    """No such folder, Hub repo, revision or file (``config.json`` / ``model.safetensors``)."""


class DownloadError(ConnectionError):
    """The Hub could not be reached or a download failed (server error, connection cut); the cache keeps
    no half-written file, so calling again is safe."""


# ---------------------------------------------------------------------------------------------- config
def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a ``config.json`` (see :func:`check_config`)."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); a pixelzoo config.json is written by "
                          f"model.save_pretrained()") from e
    check_config(config, str(path))
    return config


def _foreign_hint(config: Mapping[str, Any]) -> str:
    if "model_type" in config or "architectures" in config:
        return "; it looks like a transformers config: load it with transformers"
    if "architecture" in config:
        return "; it looks like a timm config: load it with timm.create_model('hf-hub:...')"
    if "_class_name" in config:
        return "; it looks like a diffusers config: load it with diffusers"
    return ""


def check_config(config: Any, source: str = "config") -> None:
    """Raise :class:`ConfigError` unless ``config`` is a pixelzoo config this version can read."""
    if not isinstance(config, dict):
        raise ConfigError(f"{source} must hold a JSON object, got {type(config).__name__}")
    if config.get("library") != "pixelzoo":
        raise ConfigError(f"{source} is not a pixelzoo config (library={config.get('library')!r}, expected "
                          f"'pixelzoo'){_foreign_hint(config)}")
    version = config.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ConfigError(f"{source} has format_version {version} (written by pixelzoo "
                          f"{config.get('library_version', '?')}); pixelzoo {__version__} reads format_version "
                          f"<= {FORMAT_VERSION}: upgrade pixelzoo (pip install -U pixelzoo)")
    missing = [k for k in _REQUIRED if k not in config]
    unknown = sorted(set(config) - set(_CONFIG_TYPES))
    if missing or unknown:
        raise ConfigError(f"{source}: " + "; ".join(
            ([f"missing field(s) {missing}"] if missing else []) + ([f"unknown field(s) {unknown}"] if unknown else []))
            + f" (a format_version {FORMAT_VERSION} config has {sorted(_CONFIG_TYPES)})")
    for key, kind in _CONFIG_TYPES.items():
        value = config.get(key)
        if key in config and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ConfigError(f"{source}: field {key!r} must be a JSON {kind.__name__}, got {value!r}")
    if version < 1:
        raise ConfigError(f"{source}: format_version must be >= 1, got {version}")


def model_from_config(config: Mapping[str, Any], source: str = "config") -> PixelZooModel:
    """Build the (untrained) model a config describes, through the registry only."""
    check_config(dict(config), source)
    try:
        return PixelZooModel.from_config(config)
    except (ValueError, TypeError) as e:
        hint = (" If a plugin package registers that name, import it before loading."
                if str(e).startswith("Unknown") else "")
        raise ConfigError(f"{source} does not describe a buildable model: {e}{hint}") from e


# --------------------------------------------------------------------------------------------- weights
def _state_dict_of(weights: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(weights, nn.Module):
        # torch.optim.swa_utils.AveragedModel (and DDP) keep the averaged model in `.module`.
        weights = getattr(weights, "module", weights).state_dict()
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be an nn.Module or a state dict, got {type(weights).__name__}")
    return dict(weights)


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly the model's tensor names and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [(k, tuple(state[k].shape), tuple(expected[k].shape)) for k in sorted(set(state) & set(expected))
                  if not isinstance(state[k], torch.Tensor) or state[k].shape != expected[k].shape
                  or state[k].is_floating_point() != expected[k].is_floating_point()]
    if not (missing or unexpected or mismatched):
        return

    def listed(keys: list[str]) -> str:
        more = f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
        return ", ".join(keys[:_MAX_LISTED]) + more

    lines = [f"{source} does not fit the model ({type(model).__name__}: {getattr(model, 'backbone_name', '?')} + "
             f"{getattr(model, 'head_name', '?')}):"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {listed(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {listed(unexpected)}")
    if mismatched:
        lines.append(f"  shape mismatch ({len(mismatched)}):")
        lines += [f"    {k}: checkpoint {list(c)} {state[k].dtype}, model {list(m)} {expected[k].dtype}"
                  for k, c, m in mismatched[:_MAX_LISTED]]
    lines.append("Weights fit only the architecture in the config.json saved with them: load both with "
                 "pixelzoo.from_pretrained(folder_or_repo_id).")
    raise CheckpointError("\n".join(lines), missing=missing, unexpected=unexpected, mismatched=mismatched)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}): it is truncated or corrupt. "
                              f"Download it again (force_download=True) or save it again.") from e


def load_weights(model: nn.Module, path: str | os.PathLike, source: str | None = None) -> nn.Module:
    """Load a ``.safetensors`` file into ``model`` strictly (names, shapes); returns the model."""
    state = _read_safetensors(Path(path))
    check_state_dict(model, state, source or str(path))
    model.load_state_dict(state, strict=True)
    return model


def _write_safetensors(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    # One metadata key only: safetensors writes a map of several in random order, and the bytes must be
    # reproducible so that pushing unchanged weights is a no-op. (Which weights a file holds: see its name.)
    atomic_write_bytes(path, save(tensors, metadata={"format": "pt"}))


def check_destination_folder(folder: Path) -> None:
    """A model folder can be written at ``folder``: it is a folder or does not exist, nor does any file block it."""
    for path in (folder, *folder.parents):
        if path.exists() and not path.is_dir():
            where = "" if path == folder else f" (its parent {path} is a file)"
            raise ValueError(f"cannot save a model to {folder}{where}: {path} is a file, not a folder. A model is a "
                             f"folder (config.json, model.safetensors, README.md): choose a folder path")
        if path.exists():
            break


def write_model_files(model: PixelZooModel, save_directory: str | os.PathLike, *,
                      ema: nn.Module | Mapping[str, torch.Tensor] | None = None, include_raw: bool = False) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (EMA weights if ``ema`` is given), each atomically.

    With ``ema`` and ``include_raw=True`` the model's own weights also go to ``model_raw.safetensors``;
    otherwise a stale ``model_raw.safetensors`` from an earlier save is removed.
    """
    folder = Path(save_directory)
    check_destination_folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    own = model.state_dict()
    if ema is not None:
        published = _state_dict_of(ema)
        check_state_dict(model, published, "the EMA weights")
    atomic_write_bytes(folder / CONFIG_NAME, (json.dumps(model.config, indent=2, sort_keys=True) + "\n").encode())
    _write_safetensors(folder / WEIGHTS_NAME, published if ema is not None else own)
    if ema is not None and include_raw:
        _write_safetensors(folder / RAW_WEIGHTS_NAME, own)
    else:
        (folder / RAW_WEIGHTS_NAME).unlink(missing_ok=True)
    return folder


def save_pretrained(model: PixelZooModel, save_directory: str | os.PathLike, *,
                    ema: nn.Module | Mapping[str, torch.Tensor] | None = None, include_raw: bool = False,
                    card: CardInfo | Mapping[str, Any] | None = None, repo_id: str | None = None,
                    overwrite_card: bool = False) -> Path:
    """Write a model repo folder: ``config.json``, ``model.safetensors`` and a ``README.md`` model card.

    Args:
        model: the model; its own weights are published unless ``ema`` is given.
        save_directory: the folder (created if needed).
        ema: the EMA weights to publish as ``model.safetensors``: a state dict with the model's keys, a copy
            of the model, or a ``torch.optim.swa_utils.AveragedModel``.
        include_raw: with ``ema``, also write the model's own weights to ``model_raw.safetensors``.
        card: facts for the model card (:class:`~pixelzoo.model_card.CardInfo` or a dict of its fields).
        repo_id: the Hub id shown in the card's usage snippet.
        overwrite_card: replace an existing ``README.md`` (by default it is kept).

    Returns:
        the folder.
    """
    info = CardInfo.coerce(card)  # a bad card fails before anything is written
    check_destination_folder(Path(save_directory))
    folder = write_model_files(model, save_directory, ema=ema, include_raw=include_raw)
    card_path = folder / CARD_NAME
    if overwrite_card or not card_path.exists():
        text = str(build_model_card(model, info, repo_id=repo_id, ema=ema is not None,
                                    raw_weights_file=RAW_WEIGHTS_NAME if ema is not None and include_raw else None))
        atomic_write_bytes(card_path, text.encode("utf-8"))
    return folder


# ------------------------------------------------------------------------------------------ the Hub
def _hub() -> Any:
    import huggingface_hub

    return huggingface_hub


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [repr(e)])[0]


@contextlib.contextmanager
def _hub_errors(repo_id: str, revision: str | None, filename: str | None = None, action: str = "downloading",
               not_cached_because: str | None = None) -> Iterator[None]:
    """Turn ``huggingface_hub`` errors into pixelzoo's, each saying what to do."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)

    at = f" at revision {revision!r}" if revision else ""
    failed = f"{action} {filename or 'files'} of {repo_id!r}{at} failed"
    try:
        yield
    except RepositoryNotFoundError as e:
        raise ModelNotFoundError(f"no model repo {repo_id!r} on {constants.ENDPOINT} (if it is private or gated, "
                                 f"pass token= or run `hf auth login`)") from e
    except RevisionNotFoundError as e:
        raise ModelNotFoundError(f"model repo {repo_id!r} has no revision {revision!r}: pass a branch, tag or "
                                 f"commit id that exists") from e
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        why = not_cached_because or f"the Hub at {constants.ENDPOINT} cannot be reached"
        raise DownloadError(f"{why}, and {filename or 'the model'} of {repo_id!r}{at} is not in the local cache: "
                            f"connect and load it once online") from e
    except EntryNotFoundError as e:
        raise ModelNotFoundError(f"model repo {repo_id!r}{at} has no {filename}: a pixelzoo model repo holds "
                                 f"{CONFIG_NAME} and {WEIGHTS_NAME} (written by model.push_to_hub)") from e
    except HfHubHTTPError as e:
        raise DownloadError(f"{failed}: {_first_line(e)}. Nothing half-written was kept; try again later") from e
    except (OSError, ConnectionError) as e:
        raise DownloadError(f"{failed}: {_first_line(e)}. Nothing half-written was kept; try again") from e
    except Exception as e:
        if type(e).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"):
            raise DownloadError(f"{failed}: {e!r}. Nothing half-written was kept; try again") from e
        raise


def _download(repo_id: str, filename: str, revision: str | None, why_offline: str | None = None, **kw: Any) -> Path:
    with _hub_errors(repo_id, revision, filename, not_cached_because=why_offline):
        return Path(_hub().hf_hub_download(repo_id, filename, revision=revision, library_name="pixelzoo",
                                           library_version=__version__, **kw))


def _commit_of(path: Path) -> str | None:
    # hf_hub_download returns <cache>/models--org--name/snapshots/<commit>/<file>.
    return path.parent.name if path.parent.parent.name == "snapshots" else None


def _hub_reachable(repo_id: str, revision: str | None, token: str | bool | None) -> bool:
    """One HEAD without retries: is the Hub answering at all? (A refusal such as 404 counts as an answer.)"""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, CONFIG_NAME, revision=revision), token=token)
    except HfHubHTTPError as e:
        return e.response is None or e.response.status_code < 500
    except Exception:  # connection refused, DNS, timeout, offline mode: the client's retries would take ~25 s
        return False
    return True


def local_hub_dirs() -> list[Path]:
    """Folders holding local copies of the zoo's Hub repos: ``$PIXELZOO_HUB_DIR`` (``os.pathsep``-separated),
    then the ``hub/`` folder of the pixelzoo source tree (present in a git checkout, not in a wheel)."""
    dirs = [Path(p) for p in os.environ.get(HUB_DIR_ENV, "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[1] / "hub")
    return [d for d in dirs if d.is_dir()]


def _zoo_ids() -> set[str]:
    from .registry import get_preset, list_models

    return {get_preset(n).hub_id for n in list_models(pretrained=True)}


def _local_copy(repo_id: str) -> Path | None:
    for d in local_hub_dirs():
        candidate = d / repo_id.split("/")[-1]
        if (candidate / CONFIG_NAME).is_file():
            return candidate
    return None


def _folder_files(folder: Path) -> tuple[Path, Path]:
    missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if not (folder / n).is_file()]
    if missing:
        present = sorted(p.name for p in folder.iterdir())
        raise ModelNotFoundError(f"{folder} has no {' or '.join(missing)} (it holds {present}); a pixelzoo model "
                                 f"folder is written by model.save_pretrained(folder)")
    return folder / CONFIG_NAME, folder / WEIGHTS_NAME


def _from_hub(repo_id: str, revision: str | None, *, cache_dir: str | os.PathLike | None, token: str | bool | None,
              local_files_only: bool, force_download: bool) -> tuple[Path, Path, str]:
    from huggingface_hub import constants

    zoo = repo_id in _zoo_ids()
    local = _local_copy(repo_id) if zoo and revision in (None, "main") else None
    why_offline = ("offline mode is on (HF_HUB_OFFLINE=1 or local_files_only=True)"
                   if local_files_only or constants.HF_HUB_OFFLINE else None)
    if zoo and not why_offline and not _hub_reachable(repo_id, revision, token):
        # The zoo's repos load offline-first: the cache, then the local copy, without the client's ~25 s retries.
        local_files_only, why_offline = True, f"the Hub at {constants.ENDPOINT} cannot be reached"
    kw = dict(cache_dir=cache_dir, token=token, local_files_only=local_files_only, force_download=force_download,
              why_offline=why_offline)
    try:
        config = _download(repo_id, CONFIG_NAME, revision, **kw)
        commit = _commit_of(config)
        # Pin the weights to the commit the config came from, so a concurrent push cannot mix them.
        weights = _download(repo_id, WEIGHTS_NAME, commit or revision, **kw)
    except (DownloadError, ModelNotFoundError) as e:
        # The local copy is the repo as published; it stands in when the Hub cannot serve it.
        if local is None:
            raise
        logger.warning("pixelzoo: the Hub cannot serve %s (%s); using the local copy %s", repo_id, e, local)
        return (*_folder_files(local), f"local copy {local}")
    return config, weights, f"{repo_id}@{commit[:7] if commit else revision or 'main'} (Hub cache)"


def _resolve(spec: str) -> tuple[Path | None, str | None, str | None]:
    """``spec`` -> (local folder, Hub repo id, preset name); exactly one of the first two is set."""
    from huggingface_hub.utils import validate_repo_id

    from .registry import list_models, get_preset

    path = Path(spec).expanduser()
    if path.is_dir():
        return path, None, None
    if "/" not in spec and spec in list_models():
        hub_id = get_preset(spec).hub_id
        if not hub_id:
            raise ModelNotFoundError(f"preset {spec!r} has no published weights (no hub_id): "
                                     f"pixelzoo.create_model({spec!r}) builds it untrained; "
                                     f"pixelzoo.list_models(pretrained=True) lists the presets with weights")
        return None, hub_id, spec
    if path.exists():
        raise ModelNotFoundError(f"{spec} is a file; pass the folder that holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        validate_repo_id(spec)
        ok = spec.count("/") == 1
    except ValueError:
        ok = False
    if not ok:
        import difflib

        close = difflib.get_close_matches(spec, list_models(pretrained=True), n=3)
        hint = f" Did you mean the preset(s) {close}?" if close else ""
        raise ModelNotFoundError(f"{spec!r} is neither a folder, a preset with weights, nor a Hub repo id "
                                 f"ORG/NAME.{hint}")
    return None, spec, None


def _fetch(spec: str, revision: str | None, **kw: Any) -> tuple[Path, Path, str, str | None]:
    folder, repo_id, preset = _resolve(spec)
    if folder is not None:
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to Hub repos, not to the local folder {folder}")
        return (*_folder_files(folder), f"local folder {folder}", None)
    try:
        return (*_from_hub(repo_id, revision, **kw), preset)
    except ModelNotFoundError as e:
        from huggingface_hub.errors import RepositoryNotFoundError

        if preset is None and isinstance(e.__cause__, RepositoryNotFoundError):
            raise ModelNotFoundError(f"{e}; nor is there a local folder {spec!r}") from e.__cause__
        raise


def from_pretrained(repo_id_or_path: str | os.PathLike, revision: str | None = None, *,
                    cache_dir: str | os.PathLike | None = None, token: str | bool | None = None,
                    local_files_only: bool = False, force_download: bool = False,
                    map_location: str | torch.device = "cpu") -> PixelZooModel:
    """Load a trained model, strictly, in eval mode.

    Args:
        repo_id_or_path: a local model folder, a Hub repo id ``ORG/NAME``, or a preset name with a Hub id
            (``pixelzoo.list_models(pretrained=True)``).
        revision: branch, tag or commit id on the Hub (default: ``main``).
        cache_dir: the Hub cache (default: ``HF_HUB_CACHE``).
        token: Hub token for private repos (default: the logged-in one).
        local_files_only: use the Hub cache only, no network.
        force_download: download again even if cached.
        map_location: device of the returned model.

    Raises:
        ModelNotFoundError: no such folder, repo, revision or file.
        ConfigError: ``config.json`` is not a pixelzoo config this version can build.
        CheckpointError: the weights are corrupt, truncated, or do not fit the config.
        DownloadError: the Hub could not be reached (and no cached or local copy exists) or a download failed.
    """
    spec = os.fspath(repo_id_or_path)
    config_path, weights_path, source, preset = _fetch(
        spec, revision, cache_dir=cache_dir, token=token, local_files_only=local_files_only,
        force_download=force_download)
    model = model_from_config(read_config(config_path), f"{CONFIG_NAME} of {source}")
    load_weights(model, weights_path, f"{WEIGHTS_NAME} of {source}")
    model.preset_name = preset
    logger.info("pixelzoo: loaded %s from %s", spec, source)
    return model.eval().to(map_location)


def _config_diff(model: PixelZooModel, config: Mapping[str, Any]) -> list[str]:
    mine = model.config
    out = []
    for key in ("backbone", "head", "image_shape", "bits", "num_classes", "backbone_args", "head_args"):
        a, b = mine.get(key), config.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{k}: model {a.get(k)!r}, checkpoint {b.get(k)!r}"
                    for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            out.append(f"{key}: model {a!r}, checkpoint {b!r}")
    return out


def load_pretrained_weights(model: PixelZooModel, preset: Any, **kw: Any) -> PixelZooModel:
    """Load the published weights of ``preset`` (a :class:`~pixelzoo.registry.Preset`) into ``model``.

    Used by ``create_model(name, pretrained=True)``. Overrides that change the architecture make the weights
    not fit: that is a :class:`CheckpointError` listing how the model's config differs from the checkpoint's.
    """
    if not preset.hub_id:
        raise ModelNotFoundError(f"preset {preset.name!r} has no published weights (no hub_id); "
                                 f"pixelzoo.list_models(pretrained=True) lists the presets that have them")
    config_path, weights_path, source = _from_hub(
        preset.hub_id, kw.pop("revision", None), cache_dir=kw.pop("cache_dir", None), token=kw.pop("token", None),
        local_files_only=kw.pop("local_files_only", False), force_download=kw.pop("force_download", False))
    if kw:
        raise TypeError(f"load_pretrained_weights got unexpected argument(s) {sorted(kw)}")
    config = read_config(config_path)
    try:
        load_weights(model, weights_path, f"{WEIGHTS_NAME} of {source}")
    except CheckpointError as e:
        diff = _config_diff(model, config)
        if not diff:
            raise
        raise CheckpointError(f"{e}\nThe model differs from the published {preset.hub_id} in: {'; '.join(diff)}. "
                              f"Drop those overrides to use pretrained=True.", missing=e.missing,
                              unexpected=e.unexpected, mismatched=e.mismatched) from e
    logger.info("pixelzoo: loaded weights of preset %s from %s", preset.name, source)
    return model


# ------------------------------------------------------------------------------------- publishing
def _check_folder(folder: Path) -> PixelZooModel:
    config, weights = _folder_files(folder)
    return load_weights(model_from_config(read_config(config), str(config)), weights)


def push_folder(folder: str | os.PathLike, repo_id: str, *, revision: str | None = None,
                private: bool | None = None, token: str | None = None, commit_message: str | None = None,
                overwrite_card: bool = False):
    """Upload a model folder as one commit, after checking that it loads strictly.

    Creates the repo (and the branch ``revision``) when needed. A ``README.md`` already on the Hub is kept
    unless ``overwrite_card``. Files whose content is unchanged are not sent; if none changed, no commit is
    made. Hidden files are not uploaded.

    Returns:
        the ``huggingface_hub.CommitInfo`` (a ``str``: the commit URL; ``.oid``: the commit id).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelNotFoundError(f"{folder} is not a folder")
    model = _check_folder(folder)
    api = _hub().HfApi(token=token, library_name="pixelzoo", library_version=__version__)
    ignore = [".*", "**/.*", "__pycache__", "**/__pycache__"]
    with _hub_errors(repo_id, revision, action="pushing"):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        if (folder / CARD_NAME).exists() and not overwrite_card and api.file_exists(repo_id, CARD_NAME,
                                                                                     revision=revision):
            logger.info("pixelzoo: %s already has a README.md; keeping it (overwrite_card=True replaces it)", repo_id)
            ignore.append(CARD_NAME)
        message = commit_message or f"Upload {model.backbone_name} + {model.head_name} with pixelzoo {__version__}"
        return api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision, commit_message=message,
                                 ignore_patterns=ignore)


def push_to_hub(model: PixelZooModel, repo_id: str, *, ema: nn.Module | Mapping[str, torch.Tensor] | None = None,
                include_raw: bool = False, card: CardInfo | Mapping[str, Any] | None = None,
                revision: str | None = None, private: bool | None = None, token: str | None = None,
                commit_message: str | None = None):
    """Publish ``model`` to the Hub in one commit: :func:`save_pretrained` into a temporary folder, then
    :func:`push_folder` (an existing README.md on the Hub is never replaced). Arguments as there.

    Returns:
        the ``huggingface_hub.CommitInfo`` (a ``str``: the commit URL; ``.oid``: the commit id).
    """
    with tempfile.TemporaryDirectory(prefix="pixelzoo-push-") as tmp:
        save_pretrained(model, tmp, ema=ema, include_raw=include_raw, card=card, repo_id=repo_id)
        return push_folder(tmp, repo_id, revision=revision, private=private, token=token,
                           commit_message=commit_message)


def pull(repo_id: str, to: str | os.PathLike, *, revision: str | None = None, token: str | None = None,
         cache_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Download a model repo (every file but hidden ones) into the folder ``to``, after checking it loads.

    The folder must be empty or new unless ``force`` (which replaces files of the same name).
    """
    to = Path(to)
    if to.exists() and (not to.is_dir() or (any(to.iterdir()) and not force)):
        raise ValueError(f"{to} exists and is not an empty folder: choose another folder or pass force=True "
                         f"(--force) to replace its files")
    from huggingface_hub import constants

    offline = "offline mode is on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else None
    with _hub_errors(repo_id, revision, not_cached_because=offline):
        snapshot = Path(_hub().snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache_dir,
                                                 library_name="pixelzoo", library_version=__version__))
    _check_folder(snapshot)
    to.mkdir(parents=True, exist_ok=True)
    for src in sorted(snapshot.rglob("*")):
        rel = src.relative_to(snapshot)
        if src.is_dir() or any(part.startswith(".") for part in rel.parts):
            continue
        dst = to / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    logger.info("pixelzoo: pulled %s (%s) into %s", repo_id, snapshot.name[:7], to)
    return to
