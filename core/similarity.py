"""Near-duplicate search: cached image signatures, a chunked hash index, and a second, pixel measure.

One module for both users — the slice filter (:mod:`core.filtering`) and the diagnostics — so the two
always agree on what a near-duplicate is.

1. **Signatures, cached per image** (table ``image_signatures``, keyed by image id = the SHA-256 of its
   bytes, so an entry never goes stale): the 64-bit perceptual hash (``imagehash.phash``) and a
   64×64 greyscale thumbnail (4 KB).
2. **Candidates**: pairs whose hashes differ in at most ``max_hamming`` bits, found by an exhaustive
   XOR/popcount scan of the packed 64-bit hashes in row chunks — memory is one chunk × n bytes, never
   n², and the scan is a few seconds for 20 000 hashes.
3. **Confirmation**: a candidate pair counts only if its thumbnails, band-passed (Gaussian σ 0.7 px
   minus σ 12 px, which drops JPEG noise and the coarse layout that distinct low-detail images share)
   and aligned (best circular shift within ``max_shift`` thumbnail pixels, refined to sub-pixel by a
   parabola through the correlation peak), correlate at least ``min_correlation``. A pHash alone puts
   distinct digit scans together (18 clusters in 46 scans at distance 6); the correlation does not,
   while JPEG re-saves and 1–2 px shifts stay above it.

Clusters are connected components of confirmed pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

SIGNATURE_VERSION = 1
THUMB_PX = 64
MAX_HAMMING = 10
MIN_CORRELATION = 0.985
MAX_SHIFT = 4
BAND_SIGMAS = (0.7, 12.0)
HASH_CHUNK = 512
PAIR_BATCH = 1024
SIGNATURE_BATCH = 256

Progress = Optional[Callable[[int, int, str], None]]


@dataclass(frozen=True)
class DuplicateRule:
    """When two images are near-duplicates: pHash Hamming distance ≤ ``max_hamming`` (of 64 bits) makes
    them candidates; aligned band-passed thumbnail correlation ≥ ``min_correlation`` (within
    ``max_shift`` px of a 64 px thumbnail) confirms them."""

    max_hamming: int = MAX_HAMMING
    min_correlation: float = MIN_CORRELATION
    max_shift: int = MAX_SHIFT

    def describe(self) -> dict:
        """The thresholds, as reports print them."""
        return {**asdict(self), "hash": "phash-64", "thumbnail_px": THUMB_PX,
                "band_sigmas_px": list(BAND_SIGMAS), "max_shift_fraction": round(self.max_shift / THUMB_PX, 4)}


@dataclass
class SearchStats:
    images: int = 0
    candidates: int = 0
    confirmed: int = 0
    signatures_cached: int = 0
    signatures_computed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


# -- signatures ----------------------------------------------------------------------------------

def phash64(image) -> int:
    """``imagehash.phash`` of a PIL image packed into an unsigned 64-bit integer (row-major bits)."""
    import imagehash

    bits = np.asarray(imagehash.phash(image).hash, dtype=bool).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def thumbnail(image) -> np.ndarray:
    """A ``THUMB_PX``² uint8 greyscale thumbnail (area resampling, the whole image)."""
    from PIL import Image

    grey = image.convert("L")
    return np.asarray(grey.resize((THUMB_PX, THUMB_PX), Image.Resampling.BOX), dtype=np.uint8)


def signature(image) -> tuple[int, np.ndarray]:
    return phash64(image), thumbnail(image)


def signatures(store, image_ids: Sequence[str], progress: Progress = None,
               stats: Optional[SearchStats] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(hashes uint64 (n,), thumbnails uint8 (n, 64, 64))`` of stored images, in order.

    Read from ``image_signatures``; the missing ones are computed from the stored originals and written
    in batches (one transaction each), so an interrupted run keeps what it computed.
    """
    from .store import now

    ids = list(image_ids)
    stats = stats if stats is not None else SearchStats()
    hashes = np.zeros(len(ids), dtype=np.uint64)
    thumbs = np.zeros((len(ids), THUMB_PX, THUMB_PX), dtype=np.uint8)
    where: dict[str, list[int]] = {}
    for k, image_id in enumerate(ids):
        where.setdefault(image_id, []).append(k)
    unique = list(where)
    found: set[str] = set()
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        rows = store.conn.execute(
            f"SELECT image_id, phash, thumb FROM image_signatures WHERE version = ? AND image_id IN "
            f"({','.join('?' * len(chunk))})", (SIGNATURE_VERSION, *chunk)).fetchall()
        for image_id, value, blob in rows:
            if len(blob) != THUMB_PX * THUMB_PX:
                continue
            for k in where[image_id]:
                hashes[k] = np.int64(value).view(np.uint64)
                thumbs[k] = np.frombuffer(blob, dtype=np.uint8).reshape(THUMB_PX, THUMB_PX)
            found.add(image_id)
    missing = [i for i in unique if i not in found]
    stats.signatures_cached += len(found)
    stats.signatures_computed += len(missing)
    for start in range(0, len(missing), SIGNATURE_BATCH):
        chunk = missing[start:start + SIGNATURE_BATCH]
        rows = []
        for image_id in chunk:
            h, t = signature(store.open_image(image_id))
            for k in where[image_id]:
                hashes[k], thumbs[k] = h, t
            rows.append((image_id, SIGNATURE_VERSION, int(np.uint64(h).view(np.int64)), t.tobytes(), now()))
        with store.tx() as conn:
            conn.executemany("INSERT OR REPLACE INTO image_signatures(image_id, version, phash, thumb, created) "
                             "VALUES (?, ?, ?, ?, ?)", rows)
        if progress:
            done = min(start + SIGNATURE_BATCH, len(missing))
            progress(done, len(missing), f"perceptual hashes {done}/{len(missing)}")
    return hashes, thumbs


# -- candidates: chunked scan of packed hashes ---------------------------------------------------

def hamming_candidates(hashes: np.ndarray, max_hamming: int, chunk: int = HASH_CHUNK
                       ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Index pairs ``(i, j)``, ``i < j``, with ``popcount(h_i XOR h_j) ≤ max_hamming``, one row chunk at a
    time (``chunk × n`` bytes of memory)."""
    h = np.asarray(hashes, dtype=np.uint64)
    n = len(h)
    for start in range(0, n, chunk):
        rows = h[start:start + chunk]
        distance = np.bitwise_count(rows[:, None] ^ h[None, start:])
        i, j = np.nonzero(distance <= max_hamming)
        keep = j > i
        if keep.any():
            yield i[keep] + start, j[keep] + start


# -- confirmation: aligned band-passed correlation -----------------------------------------------

_band_cache: dict[int, np.ndarray] = {}


def _band(n: int) -> np.ndarray:
    if n not in _band_cache:
        fy = np.fft.fftfreq(n)[:, None]
        fx = np.fft.rfftfreq(n)[None, :]
        r2 = (fy ** 2 + fx ** 2) * (2 * np.pi) ** 2
        lo, hi = BAND_SIGMAS
        w = np.exp(-r2 * lo ** 2 / 2) * (1 - np.exp(-r2 * hi ** 2 / 2))
        w[0, 0] = 0.0
        _band_cache[n] = w.astype(np.float32)
    return _band_cache[n]


def _prepared(thumbs: np.ndarray) -> np.ndarray:
    """Band-passed thumbnails, each scaled to unit norm, as rfft2 spectra."""
    t = np.asarray(thumbs, dtype=np.float32)
    f = np.fft.rfft2(t) * _band(t.shape[-1])
    x = np.fft.irfft2(f, s=t.shape[-2:])
    norm = np.sqrt((x * x).sum(axis=(-2, -1), keepdims=True))
    x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-9)
    return np.fft.rfft2(x)


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_shift: int = MAX_SHIFT) -> np.ndarray:
    """Per pair of thumbnails (``(k, n, n)`` each): the band-passed correlation at the best circular
    shift within ``±max_shift`` px, with a sub-pixel parabolic refinement of the peak (1: identical)."""
    fa, fb = _prepared(a), _prepared(b)
    n = np.asarray(a).shape[-1]
    corr = np.fft.irfft2(fa * np.conj(fb), s=(n, n))
    offsets = np.arange(-max_shift, max_shift + 1) % n
    window = corr[:, offsets][:, :, offsets]
    k = len(corr)
    flat = window.reshape(k, -1).argmax(axis=1)
    iy, ix = offsets[flat // len(offsets)], offsets[flat % len(offsets)]
    rows = np.arange(k)
    peak = corr[rows, iy, ix]

    def refine(left, right):
        d = left - 2 * peak + right
        local = (peak >= left) & (peak >= right) & (d < 0)
        return np.where(local, -((right - left) ** 2) / (8 * np.where(d < 0, d, -1.0)), 0.0)

    up = refine(corr[rows, (iy - 1) % n, ix], corr[rows, (iy + 1) % n, ix])
    side = refine(corr[rows, iy, (ix - 1) % n], corr[rows, iy, (ix + 1) % n])
    return np.clip(peak + up + side, -1.0, 1.0)


# -- clusters ------------------------------------------------------------------------------------

def _components(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for _, g in sorted(groups.items()) if len(g) > 1]


def confirmed_pairs(hashes: np.ndarray, thumbs: Optional[np.ndarray], rule: DuplicateRule = DuplicateRule(),
                    stats: Optional[SearchStats] = None, progress: Progress = None) -> list[tuple[int, int]]:
    """Index pairs that are candidates by hash and (when ``thumbs`` is given) confirmed by correlation."""
    stats = stats if stats is not None else SearchStats()
    out: list[tuple[int, int]] = []
    n = len(hashes)
    for i, j in hamming_candidates(hashes, rule.max_hamming):
        stats.candidates += len(i)
        if thumbs is None:
            out += zip(i.tolist(), j.tolist())
            continue
        for s in range(0, len(i), PAIR_BATCH):
            bi, bj = i[s:s + PAIR_BATCH], j[s:s + PAIR_BATCH]
            ok = aligned_correlation(thumbs[bi], thumbs[bj], rule.max_shift) >= rule.min_correlation
            out += zip(bi[ok].tolist(), bj[ok].tolist())
        if progress:
            progress(int(i.max()) + 1, n, f"near-duplicate search {int(i.max()) + 1}/{n}")
    stats.confirmed += len(out)
    return out


def clusters_of(ids: Sequence[str], hashes: np.ndarray, thumbs: Optional[np.ndarray],
                rule: DuplicateRule = DuplicateRule(), stats: Optional[SearchStats] = None) -> list[list[str]]:
    """Groups (two or more) of near-duplicates among ``ids``, each in the order of ``ids``, groups ordered by
    their first member. Without ``thumbs`` the hash alone decides (no confirmation)."""
    ids = list(ids)
    if len(hashes) != len(ids):
        raise ValueError("one hash per id")
    return [[ids[k] for k in g] for g in _components(len(ids), confirmed_pairs(hashes, thumbs, rule, stats))]


def find_duplicate_clusters(store, image_ids: Sequence[str], rule: DuplicateRule = DuplicateRule(),
                            progress: Progress = None, stats: Optional[SearchStats] = None) -> list[list[str]]:
    """Near-duplicate clusters of stored images (signatures of the original pixels, cached)."""
    ids = list(dict.fromkeys(image_ids))
    stats = stats if stats is not None else SearchStats()
    stats.images += len(ids)
    if len(ids) < 2:
        return []
    hashes, thumbs = signatures(store, ids, progress, stats)
    pairs = confirmed_pairs(hashes, thumbs, rule, stats, progress)
    return [[ids[k] for k in g] for g in _components(len(ids), pairs)]
