"""A synthetic-vs-real probe whose false-alarm rate is known: repeated cross-validation scored against a
permutation null. (Destined for ``core/analysis/``, next to the fingerprint probe it calibrates.)

The old interval — a bootstrap over one cross-validation's pooled out-of-fold scores — ignores that those
scores come from models fitted on overlapping data and on one arbitrary split; on photos with nothing planted
it excluded 0.5 in 2 of 10 cases. Here:

* **the statistic**: ROC AUC of pooled out-of-fold scores, averaged over ``repeats`` different shuffles of
  ``folds``-fold cross-validation (fold assignment independent of the labels). The classifier is ridge
  regression on standardised features (standardisation fitted on each training fold): its out-of-fold
  scores are a *linear* map of the label vector, so one solve per fold scores every permuted labelling too.
* **the null**: the same statistic for ``permutations`` random relabellings of the rows (same sizes). Under
  "no difference" the labels are exchangeable, so the observed AUC is one more draw from this null: the
  one-sided p-value ``(1 + #{null ≥ observed}) / (permutations + 1)`` is exact.
* **the interval**: the observed AUC minus/plus the null's spread around its median —
  ``[auc − (q97.5 − median), auc + (median − q2.5)]`` — clipped to [0, 1]. It excludes 0.5 from above
  (an **alarm**) only when the AUC lies beyond the null band by the null median's own shortfall from 0.5
  (cross-validated AUCs under the null sit slightly below 0.5): at most the nominal 2.5 % of null cases,
  in practice less. ``null_band`` is ``[q2.5, q97.5]`` of the null, for the page to draw.
"""

from __future__ import annotations

import numpy as np

FOLDS = 5
REPEATS = 5
PERMUTATIONS = 199
RIDGE = 1.0
LEVEL = 0.95
MIN_PER_CLASS = 2
METHOD = (f"ridge probe, AUC averaged over {REPEATS}× repeated {FOLDS}-fold CV; interval and alarm from a "
          f"{PERMUTATIONS}-permutation null")


def _fold_scores(x: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, ridge: float) -> np.ndarray:
    """Out-of-fold ridge scores on ``test`` for every label column (``labels``: n × k)."""
    mu, sd = x[train].mean(axis=0), x[train].std(axis=0)
    sd[sd < 1e-12] = 1.0
    xtr, xte = (x[train] - mu) / sd, (x[test] - mu) / sd
    ytr = labels[train]
    ymean = ytr.mean(axis=0, keepdims=True)
    m, d = xtr.shape
    lam = ridge * m
    if d <= m:
        beta = np.linalg.solve(xtr.T @ xtr + lam * np.eye(d), xtr.T @ (ytr - ymean))
        return xte @ beta + ymean
    alpha = np.linalg.solve(xtr @ xtr.T + lam * np.eye(m), ytr - ymean)
    return (xte @ xtr.T) @ alpha + ymean


def _aucs(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUC of each score column against its own 0/1 label column (ties counted half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=0)
    pos = labels.astype(bool)
    n1 = pos.sum(axis=0)
    n0 = labels.shape[0] - n1
    return ((ranks * pos).sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)


def cross_validated_aucs(x: np.ndarray, labels: np.ndarray, folds: int = FOLDS, repeats: int = REPEATS,
                         ridge: float = RIDGE, seed: int = 0) -> np.ndarray:
    """The statistic for every label column of ``labels`` (n × k): mean over repeats of the pooled
    out-of-fold AUC."""
    n = x.shape[0]
    rng = np.random.default_rng([seed, n, 3])
    total = np.zeros(labels.shape[1])
    k = max(2, min(folds, n // 2))
    for _ in range(repeats):
        fold_of = rng.permutation(np.arange(n) % k)
        scores = np.empty(labels.shape, dtype=np.float64)
        for f in range(k):
            test = fold_of == f
            scores[test] = _fold_scores(x, labels, ~test, test, ridge)
        total += _aucs(scores, labels)
    return total / repeats


def calibrated_probe(synthetic, real, *, folds: int = FOLDS, repeats: int = REPEATS,
                     permutations: int = PERMUTATIONS, ridge: float = RIDGE, seed: int = 0,
                     max_per_class: int = 4000, level: float = LEVEL) -> dict:
    """Probe telling ``synthetic`` (1) from ``real`` (0) rows: ``{"auc", "ci", "null_band", "null_median",
    "p_value", "alarm", "n", "method"}`` (see the module doc). Needs :data:`MIN_PER_CLASS` rows per class."""
    rng = np.random.default_rng([seed, 5])
    s, r = np.asarray(synthetic, dtype=np.float64), np.asarray(real, dtype=np.float64)
    s = s if len(s) <= max_per_class else s[np.sort(rng.choice(len(s), max_per_class, replace=False))]
    r = r if len(r) <= max_per_class else r[np.sort(rng.choice(len(r), max_per_class, replace=False))]
    if min(len(s), len(r)) < MIN_PER_CLASS:
        raise ValueError(f"each class needs at least {MIN_PER_CLASS} rows")
    x = np.nan_to_num(np.vstack([s, r]))
    y = np.concatenate([np.ones(len(s)), np.zeros(len(r))])
    labels = np.column_stack([y] + [rng.permutation(y) for _ in range(permutations)])
    aucs = cross_validated_aucs(x, labels, folds, repeats, ridge, seed)
    observed, null = float(aucs[0]), aucs[1:]
    tail = (1 - level) / 2
    q_lo, median, q_hi = (float(v) for v in np.quantile(null, [tail, 0.5, 1 - tail]))
    lo, hi = max(0.0, observed - (q_hi - median)), min(1.0, observed + (median - q_lo))
    p = float((1 + np.sum(null >= observed)) / (permutations + 1))
    return {"auc": observed, "ci": [lo, hi], "null_band": [q_lo, q_hi], "null_median": median, "p_value": p,
            "alarm": bool(lo > 0.5), "n": {"synthetic": len(s), "real": len(r)}, "method": METHOD}
