"""The embedding cache: vectors keyed by (image hash, view, encoder) in the store, computed only for
what is missing — here or on the Ray pool (:mod:`core.models.remote`)."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image

from core.models.encoder_ref import EncoderRef
from core.models.encoders import load_image
from core.progress import Progress
from core.store.database import Store
from core.store.records import now


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0

    def as_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses}


@dataclass(frozen=True)
class View:
    """How pixels reach the encoder: the slice's size (None: original), fit and resample; with ``tiles``
    the image stays at that size and the encoder sees it as encoder-sized tiles, mean-pooled."""

    size: int | None = None
    fit: str = "crop"
    resample: str = "lanczos"
    tiles: bool = False

    @classmethod
    def of(cls, size: int | None, fit: str | None = None, resample: str | None = None,
           tiles: bool = False) -> "View":
        return cls(size, fit or "crop", resample or "lanczos", bool(tiles))


HELD_MAX_VECTORS = 50_000  # ≈ 250 MB of 1 280-d vectors: past that a held scope reads from the store again

_held = threading.local()


@contextmanager
def held_in_memory() -> Iterator[None]:
    """Within this block, in this thread, vectors read from or written to the cache are also kept in memory,
    so that a sweep whose runs share images (nested counts, repeats) queries the store for each image once.
    The store stays the truth: nothing is written differently, and the memory is dropped when the block
    ends. Nested blocks share the outermost one's memory."""
    if getattr(_held, "vectors", None) is not None:
        yield
        return
    _held.vectors = {}
    try:
        yield
    finally:
        _held.vectors = None


def _hold(store: Store, key: tuple[str, int], vectors: dict[str, np.ndarray]) -> None:
    held = getattr(_held, "vectors", None)
    if held is not None and len(held) + len(vectors) <= HELD_MAX_VECTORS:
        held.update(((store.root, *key, i), v) for i, v in vectors.items())


def _cache_key(ref: EncoderRef, view: View) -> tuple[str, int]:
    encoder = ref.key if (view.fit, view.resample) == ("crop", "lanczos") else f"{ref.key}|{view.fit}|{view.resample}"
    if view.tiles:
        encoder += "|tiles"
    return encoder, int(view.size or 0)


def cached_vectors(store: Store, ref: EncoderRef, image_ids: list[str], view: View) -> dict[str, np.ndarray]:
    """The cached embeddings among ``image_ids`` (``{id: vector}``)."""
    key = _cache_key(ref, view)
    held = getattr(_held, "vectors", None) or {}
    found: dict[str, np.ndarray] = {}
    ids = []
    for i in dict.fromkeys(image_ids):
        vector = held.get((store.root, *key, i))
        if vector is None:
            ids.append(i)
        else:
            found[i] = vector
    fetched: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        rows = store.conn.execute(
            f"SELECT image_id, vector FROM embeddings WHERE encoder = ? AND size = ? AND image_id IN ({marks})",
            (*key, *chunk),
        ).fetchall()
        for row in rows:
            fetched[row[0]] = np.frombuffer(row[1], dtype=np.float32)
    _hold(store, key, fetched)
    found.update(fetched)
    return found


def embed_images(store: Store, ref: EncoderRef, images: list[dict], view: View,
                 progress: Progress = None, batch_size: int = 32,
                 stats: CacheStats | None = None) -> np.ndarray:
    """Embeddings of ``images`` as ``view`` shows them, ``(len(images), d)`` in order, computing only the ones
    the cache lacks. Each computed batch is committed in one transaction, so an interrupted sweep
    keeps what it embedded."""
    stats = stats if stats is not None else CacheStats()
    by_id = {im["id"]: im for im in images}
    vectors = cached_vectors(store, ref, list(by_id), view)
    encoder, size_key = _cache_key(ref, view)
    missing = [i for i in by_id if i not in vectors]
    stats.hits += len(by_id) - len(missing)
    stats.misses += len(missing)
    total = len(missing)
    from core.models.remote import embed_batches

    def pixels_of(chunk: list[str]) -> list[Image.Image]:
        return [load_image(store, by_id[i], view.size, view.fit, view.resample) for i in chunk]

    done = 0
    batches = [missing[start:start + batch_size] for start in range(0, total, batch_size)]
    for chunk, feats in embed_batches(ref, batches, pixels_of, tiles=view.tiles):
        with store.tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings(encoder, size, image_id, dim, vector, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(encoder, size_key, i, int(v.shape[0]), v.tobytes(), now()) for i, v in zip(chunk, feats)],
            )
        vectors.update(zip(chunk, feats))
        _hold(store, (encoder, size_key), dict(zip(chunk, feats)))
        done += len(chunk)
        if progress:
            progress(done, total, f"embedding {done}/{total}")
    if not images:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([vectors[im["id"]] for im in images]).astype(np.float32)


def clear_cache(store: Store, ref: EncoderRef | None = None) -> int:
    """Forget cached embeddings (of one encoder, or all). Returns how many rows went."""
    if getattr(_held, "vectors", None):
        _held.vectors = {}
    with store.tx() as conn:
        if ref is None:
            cur = conn.execute("DELETE FROM embeddings")
        else:
            cur = conn.execute("DELETE FROM embeddings WHERE encoder = ? OR encoder LIKE ?", (ref.key, ref.key + "|%"))
    return cur.rowcount
