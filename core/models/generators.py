"""Generator models, resolved in one place: a hub id (cached, or downloaded unless offline) or a local
folder in diffusers' ``from_pretrained`` layout, with its pipeline class, family, native size and revision."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core import config
from core.errors import ModelNotFound
from core.models import builtin_generator

_TAESD = {"sd": "madebyollin/taesd", "sdxl": "madebyollin/taesdxl"}


@dataclass(frozen=True)
class ModelInfo:
    """A resolved model: ``id`` is what provenance records, ``source`` what ``from_pretrained`` gets."""

    id: str
    source: str
    revision: str
    pipeline_class: str
    family: str
    scheduler: str
    native_size: Optional[int]
    local: bool


def _family(pipeline_class: str) -> str:
    return "sdxl" if "XL" in pipeline_class else "sd"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _native_size(unet_cfg: dict, vae_cfg: dict) -> Optional[int]:
    sample = unet_cfg.get("sample_size")
    blocks = vae_cfg.get("block_out_channels")
    if isinstance(sample, int) and isinstance(blocks, list) and blocks:
        return sample * 2 ** (len(blocks) - 1)
    return None


def _folder_fingerprint(folder: Path) -> str:
    """A revision for a local folder: its file names and sizes and the text of its config files."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        h.update(f"{rel}\0{path.stat().st_size}\0".encode())
        if path.suffix in (".json", ".txt"):
            h.update(path.read_bytes())
    return "local-" + h.hexdigest()[:16]


def _hub_file(repo_id: str, filename: str, network: bool = True) -> Optional[str]:
    """A file of a hub repo: from the local cache first, else downloaded (unless offline). A hub that
    cannot be reached is found out by one short connect (:mod:`core.models.hub`), never by waiting out retries."""
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import try_to_load_from_cache

    from core.models import hub

    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str):
        return cached
    if not network:
        return None
    state = hub.hub_state()
    if state != hub.ONLINE:
        raise ModelNotFound(hub.not_cached_reason(f"model {repo_id!r}", state))
    try:
        return hub.download(repo_id, filename)
    except hf_errors.GatedRepoError:
        raise ModelNotFound(f"model {repo_id!r} is gated: accept its licence on the hub and log in "
                            "(hf auth login)") from None
    except hf_errors.RepositoryNotFoundError:
        raise ModelNotFound(f"no model {repo_id!r} on the Hugging Face hub (check the id, or log in "
                            "for a private model)") from None
    except (hf_errors.EntryNotFoundError, hf_errors.RevisionNotFoundError):
        return None
    except hf_errors.OfflineModeIsEnabled:
        raise ModelNotFound(hub.not_cached_reason(f"model {repo_id!r}", hub.OFFLINE)) from None
    except (hf_errors.HfHubHTTPError, OSError) as exc:
        raise ModelNotFound(f"the Hugging Face hub did not answer for {repo_id!r} "
                            f"({type(exc).__name__}); retry, or give a local folder") from None


def _hub_not_cached(model: str) -> str:
    from core.models import hub

    return hub.not_cached_reason(f"model {model!r}")


def _builtin() -> ModelInfo:
    """``fashion-mini``: the folder shipped beside :mod:`core.models.builtin_generator`."""
    folder = builtin_generator.FOLDER
    if not builtin_generator.available():
        raise ModelNotFound(f"the built-in model {builtin_generator.NAME} is incomplete ({folder} lacks its weights): "
                            "restore the folder from the repository or retrain it with scripts/train_fashion_mini.py")
    index = _read_json(folder / "model_index.json")
    return ModelInfo(
        id=builtin_generator.NAME, source=str(folder), revision=builtin_generator.revision(),
        pipeline_class=index.get("_class_name") or "StableDiffusionPipeline", family="sd",
        scheduler=str(_read_json(folder / "scheduler" / "scheduler_config.json").get("_class_name") or ""),
        native_size=builtin_generator.NATIVE_SIZE, local=True,
    )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_model(model: str | None, *, network: bool = True) -> ModelInfo:
    """Find a model as a local diffusers folder or a hub id (cache first); :class:`ModelNotFound` if neither.

    With ``network=False`` a hub id is looked up in the local cache only.
    """
    model = (model or config.default_model()).strip()
    if not model:
        raise ModelNotFound("no model given")
    if builtin_generator.is_builtin(model):
        return _builtin()
    path = Path(model).expanduser()
    if path.is_file():
        raise ModelNotFound(f"{model} is a single file: give a diffusers model folder (with model_index.json) "
                            "or a hub id")
    if not path.exists() and (model.startswith((".", "/", "~", "\\")) or not _HUB_ID.match(model)):
        if _HUB_ID.match(model) or os.sep in model or model.startswith((".", "~")):
            raise ModelNotFound(f"no model folder at {model}")
        raise ModelNotFound(f"{model!r} is neither a model folder nor a Hugging Face hub id like owner/name")
    if path.is_dir():
        path = path.resolve()
        index = _read_json(path / "model_index.json")
        if not index.get("_class_name"):
            raise ModelNotFound(f"{path} is not a diffusers model folder: it has no model_index.json")
        return ModelInfo(
            id=str(path), source=str(path), revision=_folder_fingerprint(path),
            pipeline_class=index["_class_name"], family=_family(index["_class_name"]),
            scheduler=str(_read_json(path / "scheduler" / "scheduler_config.json").get("_class_name") or ""),
            native_size=_native_size(_read_json(path / "unet" / "config.json"), _read_json(path / "vae" / "config.json")),
            local=True,
        )
    index_file = _hub_file(model, "model_index.json", network)
    if index_file is None:
        if network:
            raise ModelNotFound(f"model {model!r} on the Hugging Face hub has no model_index.json: "
                                "it is not a diffusers pipeline")
        raise ModelNotFound(_hub_not_cached(model))
    snapshot = Path(index_file).parent
    index = _read_json(Path(index_file))
    if not index.get("_class_name"):
        raise ModelNotFound(f"model {model!r} is not a diffusers pipeline (no usable model_index.json)")
    unet = _read_json(snapshot / "unet" / "config.json")
    vae = _read_json(snapshot / "vae" / "config.json")
    sched = _read_json(snapshot / "scheduler" / "scheduler_config.json")
    return ModelInfo(
        id=model, source=model, revision=snapshot.name, pipeline_class=index["_class_name"],
        family=_family(index["_class_name"]), scheduler=str(sched.get("_class_name") or ""),
        native_size=_native_size(unet, vae), local=False,
    )


def resolve_taesd(family: str) -> str:
    """The tiny autoencoder for fast decode: ``SYNTHLAB_TAESD`` (folder or hub id) or madebyollin's TAESD."""
    name = config.setting("SYNTHLAB_TAESD") or _TAESD[family]
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{path} is not a tiny autoencoder folder: it has no config.json")
        return str(path.resolve())
    reason = "which is not available offline"
    if _HUB_ID.match(name):
        try:
            if _hub_file(name, "config.json"):
                return name
        except ModelNotFound as exc:
            reason = f"which cannot be had: {exc}"
    raise ModelNotFound(f"fast decode needs the tiny autoencoder {name!r}, {reason}; "
                        "download it or set SYNTHLAB_TAESD to a local folder")
