"""Aligned correlation of greyscale thumbnails: the pixel measure that confirms a near-duplicate.

Both near-duplicate stages use it — same-scale copies (:mod:`core.data.similarity`) and crops
(:mod:`core.data.crop_match`) — so a pair is confirmed by one measure and one threshold. Thumbnails are
band-passed (Gaussian σ 0.7 px minus σ 12 px: drops JPEG noise and the coarse layout that distinct
low-detail images share), tapered (a Tukey window, so shifted-in borders weigh little), scaled to unit norm,
and correlated at the best circular shift within ``max_shift`` px, refined to sub-pixel by a parabola
through the peak (1: identical).
"""

from __future__ import annotations

import numpy as np

BAND_SIGMAS = (0.7, 12.0)
TAPER_ALPHA = 0.5

_band_cache: dict[int, np.ndarray] = {}


def band(n: int) -> np.ndarray:
    """The band-pass (difference of Gaussians ``BAND_SIGMAS``) as an ``(n, n // 2 + 1)`` rfft2 weight."""
    if n not in _band_cache:
        fy = np.fft.fftfreq(n)[:, None]
        fx = np.fft.rfftfreq(n)[None, :]
        r2 = (fy ** 2 + fx ** 2) * (2 * np.pi) ** 2
        lo, hi = BAND_SIGMAS
        w = np.exp(-r2 * lo ** 2 / 2) * (1 - np.exp(-r2 * hi ** 2 / 2))
        w[0, 0] = 0.0
        _band_cache[n] = w.astype(np.float32)
    return _band_cache[n]


_taper_cache: dict[int, np.ndarray] = {}


def taper(n: int) -> np.ndarray:
    """A 2-D Tukey window (flat centre, cosine edges): shifted-in borders weigh little, so a shifted copy
    still matches its original."""
    if n not in _taper_cache:
        from scipy.signal.windows import tukey

        w = tukey(n, TAPER_ALPHA).astype(np.float32)
        _taper_cache[n] = np.outer(w, w)
    return _taper_cache[n]


def band_passed(thumbs: np.ndarray) -> np.ndarray:
    """Band-passed and tapered thumbnails (``(k, n, n)`` float32)."""
    from scipy import fft

    t = np.asarray(thumbs, dtype=np.float32)
    return fft.irfft2(fft.rfft2(t) * band(t.shape[-1]), s=t.shape[-2:]) * taper(t.shape[-1])


def prepared(thumbs: np.ndarray) -> np.ndarray:
    """Band-passed, tapered thumbnails, each scaled to unit norm, as rfft2 spectra (complex64)."""
    from scipy import fft

    x = band_passed(thumbs)
    norm = np.sqrt((x * x).sum(axis=(-2, -1), keepdims=True))
    x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-9)
    return fft.rfft2(x)


def correlation_peaks(fa: np.ndarray, fb: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair of :func:`prepared` spectra: ``(correlation, dy, dx)`` at the best circular shift within
    ``±max_shift`` px, refined to sub-pixel by a parabola through the peak. ``b(x) ≈ a(x + (dy, dx))``."""
    from scipy import fft

    n = np.asarray(fa).shape[-2]
    corr = fft.irfft2(fa * np.conj(fb), s=(n, n))
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
        safe = np.where(d < 0, d, -1.0)
        gain = np.where(local, -((right - left) ** 2) / (8 * safe), 0.0)
        step = np.where(local, (left - right) / (2 * safe), 0.0)
        return gain, step

    up, sy = refine(corr[rows, (iy - 1) % n, ix], corr[rows, (iy + 1) % n, ix])
    side, sx = refine(corr[rows, iy, (ix - 1) % n], corr[rows, iy, (ix + 1) % n])
    signed = lambda i: np.where(i > n // 2, i - n, i)  # noqa: E731
    return np.clip(peak + up + side, -1.0, 1.0), signed(iy) + sy, signed(ix) + sx


def aligned_correlation(a: np.ndarray, b: np.ndarray, max_shift: int, *, spectra: bool = False) -> np.ndarray:
    """Per pair of thumbnails (``(k, n, n)`` each): the band-passed correlation at the best circular
    shift within ``±max_shift`` px, with a sub-pixel parabolic refinement of the peak (1: identical).
    With ``spectra`` the inputs are already :func:`prepared`."""
    fa, fb = (a, b) if spectra else (prepared(a), prepared(b))
    return correlation_peaks(fa, fb, max_shift)[0]
