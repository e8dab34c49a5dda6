"""An encoder-free probe of generator fingerprints, and power spectra over the full 2-D plane.

A pretrained encoder resizes every image to its own input (224 px for CLIP), so a high-frequency
trace a generator leaves at 512 px never reaches it. This probe looks at pixels only:

* **features** (:func:`pixel_features`) of one greyscale image at one size: the high-pass residual
  (image minus its 3×3 mean), its 2-D power spectrum over the *whole* plane — corners included, where
  checkerboards and upsampling artefacts live — pooled on an 8×8 grid of frequency cells (log mean and
  log max power per cell), its radial profile out to the corner radius, and residual statistics
  (spread, tails, neighbour correlations);
* **probe** (:func:`probe`): standardised logistic regression, ROC AUC of out-of-fold scores
  (stratified k-fold), with a 95 % stratified bootstrap interval over those scores. An interval that
  holds 0.5 means pixels give no origin away at that size.

Features are cached in the embeddings table under :data:`FEATURE_KEY` (keyed by image id and size,
like any encoder's), so a second diagnosis reads them instead of decoding images again.
"""

from __future__ import annotations

import functools
from typing import Iterable, Optional, Sequence

import numpy as np

from core.progress import Progress

FEATURE_VERSION = 1
FEATURE_KEY = f"pixel-fingerprint-v{FEATURE_VERSION}"
GRID = 8
RADIAL_BINS = 16
SPECTRUM_GRID = 64
MIN_PER_CLASS = 2
MAX_PER_CLASS = 4000
BOOTSTRAPS = 1000
LEVEL = 0.95
_EPS = 1e-12



# -- spectra -------------------------------------------------------------------------------------

def power_spectrum_2d(grey: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``|FFT|² / (h·w)`` of a 2-D array with its mean removed, zero frequency at the centre (fftshift)."""
    from scipy import fft

    g = np.asarray(grey, dtype=dtype)
    if g.ndim != 2:
        raise ValueError("a 2-D greyscale array")
    h, w = g.shape
    f = fft.fft2(g - g.mean())
    return np.fft.fftshift(f.real ** 2 + f.imag ** 2) / (h * w)


@functools.lru_cache(maxsize=16)
def _radius(h: int, w: int) -> np.ndarray:
    yy, xx = np.indices((h, w))
    out = np.hypot(yy - h // 2, xx - w // 2)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=16)
def _rings(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer-radius ring of every cell, and each ring's cell count (out to the corner)."""
    ring = _radius(h, w).round().astype(np.intp).ravel()
    counts = np.bincount(ring, minlength=corner_bins(h, w))
    return ring, counts


@functools.lru_cache(maxsize=16)
def _radial_bins(h: int, w: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    radius = _radius(h, w)
    edges = np.linspace(0, radius.max() + 1e-9, bins + 1)
    which = np.clip(np.digitize(radius.ravel(), edges) - 1, 0, bins - 1)
    return which, np.maximum(np.bincount(which, minlength=bins), 1)


def corner_bins(h: int, w: int) -> int:
    """Rings of integer radius 0 … the corner radius ``⌈hypot(h/2, w/2)⌉`` (inclusive)."""
    return int(np.ceil(np.hypot(h // 2, w // 2))) + 1


def radial_power_spectrum(grey: np.ndarray) -> np.ndarray:
    """Mean power in rings of integer radius over the full plane, out to the corner radius.

    Index ``k`` is the frequency ``k / min(h, w)`` cycles per pixel; indices past ``min(h, w)//2``
    (Nyquist along an axis) hold the corners, e.g. a checkerboard at ``√2 · Nyquist``. The mean is
    removed first, so a flat image has zero power everywhere.
    """
    power = power_spectrum_2d(grey)
    h, w = power.shape
    ring, counts = _rings(h, w)
    n = corner_bins(h, w)
    sums = np.bincount(ring, weights=power.ravel(), minlength=n)[:n]
    return sums / np.maximum(counts[:n], 1)


def mean_radial_spectrum(greys: Iterable[np.ndarray]) -> np.ndarray:
    """The mean of :func:`radial_power_spectrum` over images of one size."""
    spectra = [radial_power_spectrum(g) for g in greys]
    if not spectra:
        raise ValueError("no images")
    return np.mean(np.vstack(spectra), axis=0)


def _pool(power: np.ndarray, grid: int, how: str = "mean") -> np.ndarray:
    h, w = power.shape
    ry = np.linspace(0, h, min(grid, h) + 1).astype(int)[:-1]
    rx = np.linspace(0, w, min(grid, w) + 1).astype(int)[:-1]
    reduce = np.maximum if how == "max" else np.add
    out = reduce.reduceat(reduce.reduceat(power, ry, axis=0), rx, axis=1)
    if how == "mean":
        counts = np.outer(np.diff(np.append(ry, h)), np.diff(np.append(rx, w)))
        out = out / counts
    return out


def mean_spectrum_2d(greys: Iterable[np.ndarray], grid: int = SPECTRUM_GRID) -> np.ndarray:
    """The mean 2-D power spectrum of images of one size, pooled (cell means) to at most ``grid``²."""
    total, n = None, 0
    for g in greys:
        p = power_spectrum_2d(g)
        total = p if total is None else total + p
        n += 1
    if not n:
        raise ValueError("no images")
    return _pool(total / n, grid)


def spectrum_log_ratio(synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
    """``log10`` of the synthetic/real ratio of two mean 2-D spectra (a floor keeps empty cells finite)."""
    floor = max(float(np.mean(real)), float(np.mean(synthetic)), _EPS) * 1e-6
    return np.log10((synthetic + floor) / (real + floor))


# -- features ------------------------------------------------------------------------------------

def residual(grey: np.ndarray) -> np.ndarray:
    """The high-pass residual: the image minus its 3×3 neighbourhood mean (edges reflected)."""
    from scipy.ndimage import uniform_filter

    g = np.asarray(grey, dtype=np.float32)
    return g - uniform_filter(g, size=3, mode="reflect")


def _neighbour_correlation(r: np.ndarray, dy: int, dx: int) -> float:
    a = r[max(dy, 0):r.shape[0] + min(dy, 0), max(dx, 0):r.shape[1] + min(dx, 0)]
    b = r[max(-dy, 0):r.shape[0] + min(-dy, 0), max(-dx, 0):r.shape[1] + min(-dx, 0)]
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > _EPS else 0.0


def pixel_features(grey: np.ndarray) -> np.ndarray:
    """The probe's feature vector of one greyscale image (values in [0, 1]), float32.

    ``GRID²`` log mean + ``GRID²`` log max residual power per frequency cell (full plane),
    ``RADIAL_BINS`` log radial means out to the corner radius, then residual std, mean |r|, kurtosis,
    and the residual's correlation with its neighbours at lags (0,1), (1,0), (1,1), (0,2), (2,0).
    """
    r = residual(grey)
    power = power_spectrum_2d(r, np.float32)
    h, w = power.shape
    cells_mean = np.log10(_pool(power, GRID, "mean") + _EPS).ravel()
    cells_max = np.log10(_pool(power, GRID, "max") + _EPS).ravel()
    which, counts = _radial_bins(h, w, RADIAL_BINS)
    sums = np.bincount(which, weights=power.ravel(), minlength=RADIAL_BINS)
    radial = np.log10(sums / counts + _EPS)
    std = float(r.std())
    kurt = float(((r - r.mean()) ** 4).mean() / (std ** 4)) if std > _EPS else 0.0
    stats = [np.log10(std + _EPS), np.log10(np.abs(r).mean() + _EPS), np.log10(kurt + 1.0)]
    stats += [_neighbour_correlation(r, dy, dx) for dy, dx in ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0))]
    return np.concatenate([cells_mean, cells_max, radial, stats]).astype(np.float32)


def greyscale_array(image, size: int | None = None) -> np.ndarray:
    """A PIL image as a float greyscale array in [0, 1] (resized to ``size``×``size`` if given)."""
    from PIL import Image

    grey = image.convert("L")
    if size is not None and grey.size != (size, size):
        grey = grey.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(grey, dtype=np.float64) / 255.0


def stored_features(store, image_ids: Sequence[str], size: int, progress: Progress = None,
                    stats: Optional[dict] = None) -> np.ndarray:
    """:func:`pixel_features` of stored images at ``size`` px (resized as slices resize them), ``(n, d)``.

    Cached in the embeddings table (encoder :data:`FEATURE_KEY`); missing rows are computed and written
    in batches, one transaction each. ``stats`` (if given) counts ``hits`` and ``misses``.
    """
    from core.store.imaging import resized
    from core.store.records import now

    ids = list(image_ids)
    found: dict[str, np.ndarray] = {}
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        for image_id, blob in store.conn.execute(
                f"SELECT image_id, vector FROM embeddings WHERE encoder = ? AND size = ? AND image_id IN "
                f"({','.join('?' * len(chunk))})", (FEATURE_KEY, int(size), *chunk)).fetchall():
            found[image_id] = np.frombuffer(blob, dtype=np.float32)
    missing = [i for i in unique if i not in found]
    if stats is not None:
        stats["hits"] = stats.get("hits", 0) + len(unique) - len(missing)
        stats["misses"] = stats.get("misses", 0) + len(missing)
    for start in range(0, len(missing), 256):
        chunk = missing[start:start + 256]
        feats = [pixel_features(greyscale_array(resized(store, i, size))) for i in chunk]
        with store.tx() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings(encoder, size, image_id, dim, vector, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(FEATURE_KEY, int(size), i, int(v.shape[0]), v.tobytes(), now()) for i, v in zip(chunk, feats)])
        found.update(zip(chunk, feats))
        if progress:
            done = min(start + 256, len(missing))
            progress(done, len(missing), f"pixel features at {size} px {done}/{len(missing)}")
    if not ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[i] for i in ids])


# -- the probe -----------------------------------------------------------------------------------

def auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC (Mann–Whitney, ties counted half) of scores for labels 1 against 0."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    ranks = rankdata(scores)
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_auc_interval(y: np.ndarray, scores: np.ndarray, reps: int = BOOTSTRAPS, level: float = LEVEL,
                           seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the AUC over stratified bootstrap resamples of ``(y, scores)``.

    A resample is a pair of multinomial weight vectors (positives, negatives); its AUC is
    ``Σ_i w_i · (weighted negatives below s_i + ½ tied) / (n1·n0)``, read from cumulative sums over the
    negatives sorted once — no re-ranking per resample.
    """
    y = np.asarray(y).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = s[y], np.sort(s[~y])
    n1, n0 = len(pos), len(neg)
    below = np.searchsorted(neg, pos, side="left")
    upto = np.searchsorted(neg, pos, side="right")
    rng = np.random.default_rng(seed)
    values = np.empty(reps)
    for start in range(0, reps, 100):
        k = min(100, reps - start)
        wn = rng.multinomial(n0, np.full(n0, 1.0 / n0), size=k).astype(np.float64)
        wp = rng.multinomial(n1, np.full(n1, 1.0 / n1), size=k).astype(np.float64)
        cum = np.concatenate([np.zeros((k, 1)), np.cumsum(wn, axis=1)], axis=1)
        credit = cum[:, below] + 0.5 * (cum[:, upto] - cum[:, below])
        values[start:start + k] = (wp * credit).sum(axis=1) / (n1 * n0)
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)


def _subsample(x: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= cap else x[np.sort(rng.choice(len(x), cap, replace=False))]


def probe(synthetic: np.ndarray, real: np.ndarray, folds: int = 5, seed: int = 0,
          max_per_class: int = MAX_PER_CLASS) -> dict:
    """Logistic-regression probe telling synthetic (1) from real (0): ``{"auc", "ci": [lo, hi], "n"}``.

    Standardised features, ``StratifiedKFold`` (at most ``folds``, at least 2, never more than the
    smaller class), AUC of the pooled out-of-fold decision values and its 95 % stratified bootstrap
    interval. Each class is capped at ``max_per_class`` rows (a seeded sample) so time and memory stay
    bounded on large stores. Needs two rows per class.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    s = _subsample(np.asarray(synthetic, dtype=np.float64), max_per_class, rng)
    r = _subsample(np.asarray(real, dtype=np.float64), max_per_class, rng)
    smaller = min(len(s), len(r))
    if smaller < MIN_PER_CLASS:
        raise ValueError("each class needs at least two rows")
    x = np.nan_to_num(np.vstack([s, r]))
    y = np.concatenate([np.ones(len(s), dtype=int), np.zeros(len(r), dtype=int)])
    cv = StratifiedKFold(n_splits=max(2, min(folds, smaller)), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    scores = cross_val_predict(model, x, y, cv=cv, method="decision_function")
    lo, hi = bootstrap_auc_interval(y, scores, seed=seed)
    return {"auc": auc(y, scores), "ci": [lo, hi], "n": {"synthetic": len(s), "real": len(r)}}
