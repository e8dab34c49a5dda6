"""The measures a diagnosis reports, as pure functions of vectors: diversity, Fréchet distance (matched to a real-vs-real floor), a probe's AUC with its interval."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from core.analysis.fingerprint import greyscale_array, mean_radial_spectrum, radial_power_spectrum  # noqa: F401 (re-exported)
from core.data.similarity import MAX_HAMMING as DUPLICATE_THRESHOLD  # noqa: E402
from core.data.similarity import MIN_CORRELATION as DUPLICATE_MIN_CORRELATION  # noqa: E402

MIN_FOR_DIVERSITY = 2


MIN_FOR_FRECHET = 2


MIN_REAL_FOR_FLOOR = 4


MIN_PER_CLASS_FOR_AUC = 2


FLOOR_SPLITS = 5


def distinct_prompts(prompts: Iterable[Optional[str]]) -> int:
    """How many different expanded prompts made these images (missing prompts are not counted)."""
    return len({p.strip() for p in prompts if p and p.strip()})


def perceptual_hash_bits(image) -> np.ndarray:
    """The 64 bits of ``imagehash.phash`` of a PIL image, flattened to a boolean array."""
    import imagehash

    return np.asarray(imagehash.phash(image).hash, dtype=bool).ravel()


def duplicate_clusters(ids: Sequence[str], bits: np.ndarray, threshold: int = DUPLICATE_THRESHOLD,
                       thumbs: Optional[np.ndarray] = None,
                       min_correlation: float = DUPLICATE_MIN_CORRELATION) -> list[list[str]]:
    """Groups of near-duplicate images: connected components of "Hamming distance ≤ ``threshold``"
    (and, given ``thumbs`` from :func:`core.data.similarity.thumbnail`, aligned correlation ≥ ``min_correlation``).

    ``bits`` is an ``(n, 64)`` boolean array (one perceptual hash per id). Only groups of two or more
    are returned, each in the order of ``ids``, groups ordered by their first member.
    """
    from core.data.similarity import DuplicateRule, clusters_of

    bits = np.asarray(bits, dtype=bool)
    if bits.shape[0] != len(ids):
        raise ValueError("one hash per id")
    hashes = np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64) if len(ids) else np.zeros(0, np.uint64)
    return clusters_of(ids, hashes, thumbs, DuplicateRule(threshold, min_correlation))


def _shrunk_covariance(x: np.ndarray) -> np.ndarray:
    """Ledoit–Wolf shrinkage: a well-conditioned covariance even with fewer samples than dimensions."""
    from sklearn.covariance import ledoit_wolf

    cov, _ = ledoit_wolf(x)
    return cov


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (the FID formula).

    ``|μa−μb|² + Tr(Σa) + Tr(Σb) − 2·Tr((Σa^½ Σb Σa^½)^½)``, computed with symmetric eigen-decompositions
    (no complex round-off from ``sqrtm``) on Ledoit–Wolf shrunk covariances, so it is defined and
    stable for small sets (n < dimensions). Each set needs at least two rows of the same width.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("two 2-D arrays of the same width")
    if len(a) < MIN_FOR_FRECHET or len(b) < MIN_FOR_FRECHET:
        raise ValueError("each set needs at least two rows")
    mu = a.mean(axis=0) - b.mean(axis=0)
    if len(a) + len(b) < a.shape[1]:
        return _frechet_low_rank(a, b, mu)
    sa, sb = _shrunk_covariance(a), _shrunk_covariance(b)
    root_a = _sqrtm_psd(sa)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ sb @ root_a), 0, None)).sum()
    return float(max(0.0, mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * cross))


def _shrunk_parts(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Ledoit–Wolf's covariance as ``alpha · AᵀA + beta · I`` (``A``: the centred rows / √n), exactly as
    :func:`sklearn.covariance.ledoit_wolf` builds it, without forming the d × d matrix."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    xc = x - x.mean(axis=0)
    n, d = xc.shape
    shrinkage = float(ledoit_wolf_shrinkage(xc, assume_centered=True))
    mu = float((xc * xc).sum()) / n / d
    return xc / np.sqrt(n), 1.0 - shrinkage, shrinkage * mu


def _frechet_low_rank(a: np.ndarray, b: np.ndarray, mu: np.ndarray) -> float:
    """The same distance as :func:`frechet_distance` when the rows are fewer than the dimensions, in time
    cubic in the rows, not the dimensions: both shrunk covariances act as ``beta · I`` off the span of the
    centred rows, so the trace of the square root splits into that span (a k × k problem) and its
    complement (``(d − k) · √(beta_a · beta_b)``)."""
    pa, alpha_a, beta_a = _shrunk_parts(a)
    pb, alpha_b, beta_b = _shrunk_parts(b)
    d = a.shape[1]
    q, _ = np.linalg.qr(np.vstack([pa, pb]).T)
    k = q.shape[1]
    ca = alpha_a * (pa @ q).T @ (pa @ q) + beta_a * np.eye(k)
    cb = alpha_b * (pb @ q).T @ (pb @ q) + beta_b * np.eye(k)
    root_a = _sqrtm_psd(ca)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cb @ root_a), 0, None)).sum() + (d - k) * np.sqrt(beta_a * beta_b)
    traces = alpha_a * float((pa * pa).sum()) + beta_a * d + alpha_b * float((pb * pb).sum()) + beta_b * d
    return float(max(0.0, mu @ mu + traces - 2.0 * cross))


def matched_frechet(synthetic: np.ndarray, real: np.ndarray, splits: int = FLOOR_SPLITS,
                    seed: int = 0) -> tuple[float, float]:
    """``(synthetic vs real, real vs real floor)``: Fréchet distances at matched sample sizes.

    The estimator grows as samples shrink, so a floor from two halves of the real set is only a fair
    scale if the synthetic-vs-real distance is measured at the same sizes. Each of ``splits`` random
    rounds splits the real set into halves A and B (``m = ⌊n_real/2⌋``, capped by the synthetic count),
    and compares a random ``m`` synthetic images with B and A with B; both are averaged over the
    rounds. A synthetic-vs-real distance near the floor means the encoder cannot tell the two
    distributions apart. Needs at least four real and two synthetic rows.
    """
    s = np.asarray(synthetic, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    if len(r) < MIN_REAL_FOR_FLOOR or len(s) < MIN_FOR_FRECHET:
        raise ValueError("need at least four real and two synthetic rows")
    m = min(len(r) // 2, len(s))
    rng = np.random.default_rng(seed)
    gap, floor = [], []
    for _ in range(splits):
        order = rng.permutation(len(r))
        half_a, half_b = r[order[:m]], r[order[len(r) - m:]]
        pick = s[rng.permutation(len(s))[:m]]
        gap.append(frechet_distance(pick, half_b))
        floor.append(frechet_distance(half_a, half_b))
    return float(np.mean(gap)), float(np.mean(floor))


def probe_auc(synthetic: np.ndarray, real: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic-regression probe telling synthetic (1) from real (0).

    Standardised features, ``StratifiedKFold`` (at most ``folds``, at least 2, never more than the
    smaller class), AUC of the pooled out-of-fold decision values. 0.5 means the encoder sees no
    difference; near 1 means something in the images gives their origin away.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s = np.asarray(synthetic, dtype=np.float64)
    r = np.asarray(real, dtype=np.float64)
    smaller = min(len(s), len(r))
    if smaller < MIN_PER_CLASS_FOR_AUC:
        raise ValueError("each class needs at least two rows")
    x = np.vstack([s, r])
    y = np.concatenate([np.ones(len(s), dtype=int), np.zeros(len(r), dtype=int)])
    cv = StratifiedKFold(n_splits=max(2, min(folds, smaller)), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    scores = cross_val_predict(model, x, y, cv=cv, method="decision_function")
    return float(roc_auc_score(y, scores))


def probe_with_interval(synthetic: np.ndarray, real: np.ndarray, seed: int = 0) -> dict:
    """:func:`core.analysis.fingerprint.probe` — the same probe and interval for embeddings and pixel features."""
    from core.analysis.fingerprint import probe

    return probe(synthetic, real, seed=seed)
