"""Crops: near-duplicates at another scale — a photo cut by up to ~10 % per side and resized back.

The same-scale search (:mod:`core.data.similarity`: pHash candidates, aligned correlation) misses a crop: cut
6–10 % from each side and resized back to the original size, the content is magnified 1.14–1.25× (per axis
when the cuts differ) and moved when the cuts are uneven, and a pHash changes by 20–30 bits under a 1 px
move. This stage works on the same cached 64 px thumbnails:

1. **Candidates**, translation-invariant: a descriptor per thumbnail — the square root of the Fourier
   magnitude (frequencies up to ``FREQS`` cycles; a magnitude does not change when the picture moves) of the
   band-passed, tapered thumbnail, mean-removed, unit norm — of each image as it is, and of each image
   magnified by every ``ZOOMS`` factor about its centre. For each image and each zoom, the ``TOP_K`` other
   images whose magnified descriptor is closest (cosine ≥ ``MIN_SIMILARITY``) are candidates: at most
   n × ``TOP_K`` × len(``ZOOMS``) pairs, so the confirmation work grows linearly with n (the scan itself is a
   chunked n × n product, memory one chunk).
2. **Confirmation**, by registration: the candidate source is magnified onto the crop — a coarse search of
   the scale around the matched zoom (steps of 1.25 %), the centre moved to the correlation peak, then two
   rounds of per-axis scale refinement (±1 %, ±0.5 %), each followed by re-centring — and the pair counts
   only if the registered thumbnails' aligned correlation (:mod:`core.data.alignment`: the same band-pass and
   taper) reaches the rule's ``min_correlation``, the threshold of the same-scale search.

Measured on Fashion-MNIST photos (``tests/core/data/test_crop_match.py``): crops of 6, 8 and 10 % per side,
symmetric, from one corner or uneven per side, are found at 64 and 256 px (T-shirts, the hardest class: 202
of 203 planted source–crop pairs found directly, all 29 clusters whole through crop–crop pairs); registered
correlations of true crops ≥ 0.999 (also after a JPEG re-save at quality 75), of distinct T-shirts ≤ 0.992;
200 distinct T-shirts give no cluster. Known limit: one scale for both axes, so a crop that changes the
aspect ratio (a cut from one side only) is found reliably only up to ~2 %.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from core.data.alignment import band_passed, correlation_peaks, prepared

ZOOMS = (1.0, 1.045, 1.092, 1.141, 1.193, 1.246, 1.302)
FREQS = 12
TOP_K = 2
MIN_SIMILARITY = 0.85
SCAN_BYTES = 32 << 20
DESCRIBE_BATCH = 256
PAIR_BATCH = 128
COARSE_STEPS = (0.97, 1.0, 1.03)
COARSE_SHIFT = 8
FINE_STEPS = (0.01, 0.005)
FINE_SHIFT = 3
PRUNE_MARGIN = 0.01
CROP_STRICTNESS = 5.0


def _taps(n: int, zoom: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cubic (Keys, a = -0.5) interpolation taps ``(index (k, n, 4), weight (k, n, 4))`` that sample a 1-D
    signal of ``n`` samples magnified by ``zoom`` about its centre moved by ``offset`` (edges repeated)."""
    c = (n - 1) / 2
    u = c + offset[:, None] + (np.arange(n)[None, :] - c) / zoom[:, None]  # source coordinate of each sample
    base = np.floor(u)
    x = np.abs((u - base)[..., None] - np.arange(-1, 3))
    weight = np.where(x <= 1, 1.5 * x ** 3 - 2.5 * x ** 2 + 1,
                      np.where(x < 2, -0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2, 0.0))
    index = np.clip(base[..., None] + np.arange(-1, 3), 0, n - 1).astype(np.intp)
    return index, weight.astype(np.float32)


def magnified(thumbs: np.ndarray, zy, zx, cy, cx) -> np.ndarray:
    """Each thumbnail magnified by ``(zy, zx)`` about its centre moved by ``(cy, cx)`` px (per row, or one
    value for all), the same size."""
    t = np.asarray(thumbs, dtype=np.float32)
    k, n = len(t), t.shape[-1]
    zy, zx, cy, cx = (np.broadcast_to(np.asarray(v, dtype=np.float64), (k,)) for v in (zy, zx, cy, cx))
    tall = _resample_rows(t, *_taps(n, zy, cy))
    return _resample_rows(tall.transpose(0, 2, 1), *_taps(n, zx, cx)).transpose(0, 2, 1)


def _resample_rows(t: np.ndarray, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``(k, n, m)`` → ``(k, n, m)``: each output row the weighted sum of the 4 input rows its taps name."""
    k, n, m = t.shape
    flat = (np.arange(k)[:, None, None] * n + index).ravel()
    rows = np.ascontiguousarray(t).reshape(k * n, m)[flat].reshape(k, n, 4, m)
    return np.matmul(weight[:, :, None, :], rows)[:, :, 0, :]


def descriptors(thumbs: np.ndarray, zoom: float) -> np.ndarray:
    """``(k, d)`` translation-invariant descriptors (unit norm) of the thumbnails magnified by ``zoom``."""
    from scipy import fft

    t = np.asarray(thumbs, dtype=np.float32)
    out = []
    for s in range(0, len(t), DESCRIBE_BATCH):
        chunk = t[s:s + DESCRIBE_BATCH]
        view = chunk if zoom == 1.0 else magnified(chunk, zoom, zoom, 0.0, 0.0)
        magnitude = np.abs(fft.rfft2(band_passed(view)))
        low = np.concatenate([magnitude[:, :FREQS + 1, :FREQS + 1], magnitude[:, -FREQS:, :FREQS + 1]], axis=1)
        f = np.sqrt(low.reshape(len(chunk), -1)[:, 1:])
        f -= f.mean(axis=1, keepdims=True)
        norm = np.linalg.norm(f, axis=1, keepdims=True)
        out.append(np.divide(f, norm, out=np.zeros_like(f), where=norm > 1e-9).astype(np.float32))
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def _top_per(group: np.ndarray, other: np.ndarray, sim: np.ndarray, zoom: np.ndarray, k: int, n: int):
    """Per ``group`` value, its ``k`` most similar ``other`` values (each pair once, at its most similar
    zoom): ``(group, other, similarity, zoom)``."""
    order = np.lexsort((-sim, group))
    group, other, sim, zoom = group[order], other[order], sim[order], zoom[order]
    _, first = np.unique(group.astype(np.int64) * n + other, return_index=True)
    first = np.sort(first)
    group, other, sim, zoom = group[first], other[first], sim[first], zoom[first]
    keep = np.arange(len(group)) - np.searchsorted(group, group, side="left") < k
    return group[keep], other[keep], sim[keep], zoom[keep]


def crop_candidates(thumbs: np.ndarray, top_k: int = TOP_K, max_zoom: float = ZOOMS[-1]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate ``(source, crop, zoom)`` triples, sorted: for each image as a crop, the ``top_k`` other
    images whose descriptor magnified by some zoom is nearest to its own, and for each image as a source,
    the ``top_k`` others nearest to its magnified descriptor — each if at least ``MIN_SIMILARITY``."""
    n = len(thumbs)
    plain = descriptors(thumbs, 1.0)
    k = min(top_k, n - 1)
    rows_found: list[tuple[np.ndarray, ...]] = []  # (crop, source, similarity, zoom)
    columns_found: list[tuple[np.ndarray, ...]] = []  # (source, crop, similarity, zoom)
    step = max(k, SCAN_BYTES // (4 * n))
    for zoom in (z for z in ZOOMS if z <= max_zoom):
        zoomed = plain if zoom == 1.0 else descriptors(thumbs, zoom)
        per_zoom = []
        for start in range(0, n, step):
            sims = plain[start:start + step] @ zoomed.T  # rows: crops, columns: sources
            rows = np.arange(len(sims))
            sims[rows, rows + start] = -np.inf
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k].ravel()
            crop = np.repeat(rows, k)
            rows_found.append((crop + start, top, sims[crop, top], np.full(len(top), zoom)))
            kc = min(k, len(sims))
            best = np.argpartition(-sims, kc - 1, axis=0)[:kc].ravel()
            source = np.tile(np.arange(n), kc)
            per_zoom.append((source, best + start, sims[best, source], np.full(len(best), zoom)))
        columns_found.append(_top_per(*(np.concatenate(p) for p in zip(*per_zoom)), k, n))
    crop, source, sim, zoom = _top_per(*(np.concatenate(p) for p in zip(*rows_found)), k, n)
    source2, crop2, sim2, zoom2 = _top_per(*(np.concatenate(p) for p in zip(*columns_found)), k, n)
    source, crop = np.concatenate([source, source2]), np.concatenate([crop, crop2])
    sim, zoom = np.concatenate([sim, sim2]), np.concatenate([zoom, zoom2])
    ok = sim >= MIN_SIMILARITY
    crop, source, _, zoom = _top_per(crop[ok], source[ok], sim[ok], zoom[ok], n, n)  # each pair once
    order = np.lexsort((crop, source))
    return source[order].astype(int), crop[order].astype(int), zoom[order].astype(np.float64)


def _trial(source: np.ndarray, crop_spectra: np.ndarray, zoom, cy, cx, max_shift: int):
    """Correlation of each magnified source with its crop: ``(value, dy, dx)``."""
    return correlation_peaks(prepared(magnified(source, zoom, zoom, cy, cx)), crop_spectra, max_shift)


def _best_of(trials: int, value: np.ndarray) -> np.ndarray:
    """Per pair, the flat index of its best trial (values trial-major, ``trials`` × pairs)."""
    b = len(value) // trials
    return value.reshape(trials, b).argmax(axis=0) * b + np.arange(b)


def registered_correlation(sources: np.ndarray, crops: np.ndarray, zoom: np.ndarray,
                           floor: float = -1.0) -> np.ndarray:
    """Per pair: the aligned correlation of the source magnified and moved onto the crop — a coarse scale
    search about ``zoom`` (the centre moved to the correlation peak), then finer scale steps, each followed by
    re-centring. Pairs below ``floor`` after the coarse search are not refined (their coarse value is
    returned)."""
    b = len(sources)
    if b == 0:
        return np.zeros(0)
    sources = np.asarray(sources, dtype=np.float32)
    spectra = prepared(crops)
    steps = np.asarray(COARSE_STEPS)
    scale = (np.asarray(zoom, dtype=np.float64)[None, :] * steps[:, None]).ravel()  # trial-major
    value, dy, dx = _trial(np.tile(sources, (len(steps), 1, 1)), np.tile(spectra, (len(steps), 1, 1)), scale,
                           0.0, 0.0, COARSE_SHIFT)
    at = _best_of(len(steps), value)
    scale, cy, cx = scale[at], dy[at] / scale[at], dx[at] / scale[at]
    value, dy, dx = _trial(sources, spectra, scale, cy, cx, FINE_SHIFT)
    best = value.copy()
    live = np.nonzero(value >= floor)[0]
    cy, cx = cy + dy / scale, cx + dx / scale
    for delta in FINE_STEPS:
        if not len(live):
            break
        factors = np.array([1 - delta, 1.0, 1 + delta])
        trial_scale = (scale[live][None, :] * factors[:, None]).ravel()
        value, dy, dx = _trial(np.tile(sources[live], (3, 1, 1)), np.tile(spectra[live], (3, 1, 1)), trial_scale,
                               np.tile(cy[live], 3), np.tile(cx[live], 3), FINE_SHIFT)
        at = _best_of(3, value)
        best[live] = np.maximum(best[live], value[at])
        scale[live] = trial_scale[at]
        cy[live] += dy[at] / scale[live]
        cx[live] += dx[at] / scale[live]
    if len(live):
        value, _, _ = _trial(sources[live], spectra[live], scale[live], cy[live], cx[live], 1)
        best[live] = np.maximum(best[live], value)
    return best


def crop_threshold(min_correlation: float) -> float:
    """The correlation a registered crop must reach: ``CROP_STRICTNESS`` times closer to 1 than
    ``min_correlation`` (0.997 for 0.985) — registration fits scale and position, so distinct look-alikes
    get closer than at a fixed scale (distinct T-shirts: up to 0.992), while true crops reach 0.999."""
    return 1.0 - (1.0 - min_correlation) / CROP_STRICTNESS


def crop_pairs(thumbs: np.ndarray, min_correlation: float, max_zoom: float = ZOOMS[-1],
               skip: Optional[set] = None, counts: Optional[dict] = None) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, where one thumbnail is a crop of the other (a magnified, moved view
    at most ``max_zoom`` per axis) confirmed at ``min_correlation``; pairs in ``skip`` are not tried again.
    ``counts`` (if given) receives ``crop_candidates`` and ``crop_confirmed``."""
    thumbs = np.asarray(thumbs, dtype=np.float32)
    out: set[tuple[int, int]] = set()
    tried = 0
    if len(thumbs) >= 2 and max_zoom >= 1.0:
        src, dst, zoom = crop_candidates(thumbs, max_zoom=max_zoom)
        keep = np.array([(min(a, b), max(a, b)) not in (skip or set()) for a, b in zip(src, dst)], dtype=bool)
        src, dst, zoom = src[keep], dst[keep], zoom[keep]
        tried = len(src)
        for s in range(0, len(src), PAIR_BATCH):
            a, b, z = src[s:s + PAIR_BATCH], dst[s:s + PAIR_BATCH], zoom[s:s + PAIR_BATCH]
            ok = registered_correlation(thumbs[a], thumbs[b], z, min_correlation - PRUNE_MARGIN) >= min_correlation
            out.update((min(i, j), max(i, j)) for i, j in zip(a[ok].tolist(), b[ok].tolist()))
    if counts is not None:
        counts["crop_candidates"] = counts.get("crop_candidates", 0) + tried
        counts["crop_confirmed"] = counts.get("crop_confirmed", 0) + len(out)
    return sorted(out)
