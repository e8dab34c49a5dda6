"""What the local backend's modes share: softmax, the native-resolution rule, saved linear heads, determinism, the per-process model cache."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from core.models.embedding_cache import View
from core.store.database import Store

NATIVE = "native"


MAX_NATIVE_PX = 1024


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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


def normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def save_linear(folder: Path, weights: np.ndarray, bias: np.ndarray) -> None:
    np.savez(folder / "head.npz", weights=weights.astype(np.float64), bias=bias.astype(np.float64))


_threadpools = None


def one_thread():
    global _threadpools
    if _threadpools is None:
        from threadpoolctl import ThreadpoolController

        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1)


def deterministic(device: str, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    if device.startswith("cuda"):
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


_loaded: dict[tuple, Any] = {}


_loaded_lock = threading.Lock()


def cached_model(folder: Path, build):
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
