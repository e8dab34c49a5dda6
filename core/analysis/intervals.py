"""Per-run and per-arm intervals that keep their 95 % where Synthlab lives: accuracies near 1 on a few
dozen test photos. (Destined for ``core/analysis/intervals.py`` once the layered layout is on main.)

Why not the percentile bootstrap over test images: at a true accuracy of 0.985 on 20 photos it holds the
truth a quarter of the time, and when every photo is right it says ``[1, 1]``. So:

* **accuracy** — the Clopper–Pearson ("exact") binomial interval: the Beta quantiles
  ``[B(0.025; k, n−k+1), B(0.975; k+1, n−k)]``. Its coverage is at least 95 % for every true accuracy
  and every n (measured exactly over true accuracy 0.95–0.99 and n = 20–200: lowest 95.1 %; Wilson's dips
  to 89.4 % at n = 21 there, which is why it is not used). Never zero-width, always inside [0, 1].
* **macro-F1 and average precision** — a BCa bootstrap over test images (bias-corrected and
  accelerated: the acceleration from a grouped jackknife) with a documented **floor**: each side of the
  interval reaches at least as far as the Clopper–Pearson interval of the same value read as a proportion
  of the n test images. The floor is what keeps ``macro-F1 = 1`` on 20 photos from being ``[1, 1]``:
  a perfect score on 20 photos is exactly as uncertain as a perfect accuracy on them.
* **an arm's point** (:func:`arm_interval`) — the repeats' spread as a Student-t half-width on R − 1
  degrees of freedom (on each side at least as far as the same t interval on the logit scale reaches, for
  the skew of accuracies near 1), combined in quadrature with the test-set interval, side by side (the Clopper–Pearson
  interval around the arm's mean accuracy on its n test photos, taken **once**: when every run is scored
  on the same photos, agreement between repeats says nothing about the photos). The two sides are
  combined separately, so the interval is asymmetric near 1, and it is clipped to [0, 1] (the truth is
  inside [0, 1], so clipping never costs coverage). Both parts shrink as repeats and photos grow.

Only numpy and scipy; no store, no UI. Seeded: the same inputs give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 1000
JACKKNIFE_GROUPS = 100
METHODS = {
    "accuracy": "Clopper-Pearson (exact binomial)",
    "macro_f1": "BCa bootstrap over test images, floored by Clopper-Pearson at n test images",
    "average_precision": "BCa bootstrap over test images, floored by Clopper-Pearson at n test images",
    "arm": "t on R-1 df for repeats (linear and logit, the wider per side) (+) Clopper-Pearson on the shared "
           "test set, per side; clipped to [0, 1]",
}


# -- binomial -------------------------------------------------------------------------------------

def clopper_pearson(successes: float, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact binomial interval for ``successes`` of ``n`` (a fractional count is allowed: a mean over
    repeats times n). ``(0, 1)`` for n = 0."""
    from scipy.stats import beta

    if n <= 0:
        return 0.0, 1.0
    k = min(max(float(successes), 0.0), float(n))
    tail = (1 - level) / 2
    lo = 0.0 if k <= 0 else float(beta.ppf(tail, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - tail, k + 1, n - k))
    return lo, hi


def accuracy_interval(correct: Sequence[float], level: float = LEVEL) -> list[float] | None:
    """Clopper–Pearson interval of the fraction of 1s in ``correct`` (None when empty)."""
    n = len(correct)
    if n == 0:
        return None
    lo, hi = clopper_pearson(float(np.sum(correct)), n, level)
    return [lo, hi]


# -- statistics on bootstrap weight matrices ----------------------------------------------------------

def weighted_accuracy(w: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    return w @ (truth == predicted).astype(np.float64) / np.maximum(w.sum(axis=1), 1e-12)


def weighted_macro_f1(w: np.ndarray, truth: np.ndarray, predicted: np.ndarray, labels: Sequence) -> np.ndarray:
    """Per weight row, the mean F1 over the labels present (positive weight on their true images)."""
    f1_sum, present_n = np.zeros(w.shape[0]), np.zeros(w.shape[0])
    for tag in labels:
        is_t, said_t = truth == tag, predicted == tag
        tp = w @ (is_t & said_t).astype(np.float64)
        fp = w @ (~is_t & said_t).astype(np.float64)
        fn = w @ (is_t & ~said_t).astype(np.float64)
        denom = 2 * tp + fp + fn
        present = (w @ is_t.astype(np.float64)) > 0
        f1_sum += np.where(present & (denom > 0), 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        present_n += present
    return f1_sum / np.maximum(present_n, 1)


def weighted_macro_ap(w: np.ndarray, truth: np.ndarray, scores: np.ndarray, tags: Sequence) -> np.ndarray | None:
    """Per weight row, the mean over tags with positives of the weighted average precision."""
    total, counted = np.zeros(w.shape[0]), np.zeros(w.shape[0])
    for j, tag in enumerate(tags):
        positive = truth == tag
        if not positive.any():
            continue
        order = np.argsort(-scores[:, j], kind="stable")
        wo, pos = w[:, order], positive[order].astype(np.float64)
        hits = np.cumsum(wo * pos, axis=1)
        seen = np.cumsum(wo, axis=1)
        precision = np.divide(hits, seen, out=np.zeros_like(hits), where=seen > 0)
        weight_pos = (wo * pos).sum(axis=1)
        ap = np.divide((wo * pos * precision).sum(axis=1), weight_pos, out=np.zeros(w.shape[0]),
                       where=weight_pos > 0)
        total += np.where(weight_pos > 0, ap, 0.0)
        counted += weight_pos > 0
    if not counted.any():
        return None
    return total / np.maximum(counted, 1)


def bootstrap_weights(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """``resamples × n`` multinomial multiplicities (each row sums to n)."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def jackknife_weights(n: int, groups: int = JACKKNIFE_GROUPS) -> np.ndarray:
    """Delete-a-group jackknife: ``g × n`` weights, row i leaves out the i-th of g near-equal groups."""
    g = min(n, groups)
    member = np.arange(n) % g
    return (member[None, :] != np.arange(g)[:, None]).astype(np.float64)


# -- BCa ------------------------------------------------------------------------------------------

def bca_interval(estimate: float, boot: np.ndarray, jack: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """Bias-corrected and accelerated percentile interval (Efron 1987). None when the bootstrap is
    degenerate (every resample equal to the estimate: no spread to correct)."""
    from scipy.stats import norm

    boot = np.asarray(boot, dtype=np.float64)
    below = np.mean(boot < estimate) + 0.5 * np.mean(boot == estimate)
    if below <= 0 or below >= 1 or np.ptp(boot) == 0:
        return None
    z0 = float(norm.ppf(below))
    d = np.mean(jack) - np.asarray(jack, dtype=np.float64)
    ss = float((d * d).sum())
    a = float((d ** 3).sum() / (6 * ss ** 1.5)) if ss > 0 else 0.0
    ends = []
    for q in ((1 - level) / 2, (1 + level) / 2):
        zq = float(norm.ppf(q))
        adj = float(norm.cdf(z0 + (z0 + zq) / (1 - a * (z0 + zq))))
        ends.append(float(np.quantile(boot, min(max(adj, 0.0), 1.0))))
    return ends


def floored(estimate: float, interval: Sequence[float] | None, n: int, level: float = LEVEL) -> list[float]:
    """``interval`` widened, side by side, to at least the Clopper–Pearson interval of ``estimate`` read as
    a proportion of ``n``, then clipped to [0, 1] (see the module doc)."""
    lo_f, hi_f = clopper_pearson(estimate * n, n, level)
    lo, hi = (interval if interval is not None else (estimate, estimate))
    return [max(0.0, min(float(lo), lo_f, estimate)), min(1.0, max(float(hi), hi_f, estimate))]


# -- one run ---------------------------------------------------------------------------------------

def run_intervals(truth: Sequence[str], predicted: Sequence[str], scores: Sequence[Sequence[float]] | None,
                  tags: Sequence[str], *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict:
    """95 % intervals of one run's accuracy, macro-F1 and average precision on its test images:
    ``{"accuracy_ci", "macro_f1_ci", "average_precision_ci", "interval_methods"}`` (None where undefined).
    Same contract as :func:`core.analysis.stats.run_intervals`, with the methods of the module doc."""
    n = len(truth)
    out = {"accuracy_ci": None, "macro_f1_ci": None, "average_precision_ci": None, "interval_methods": METHODS}
    if n == 0:
        return out
    truth_a, pred_a = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    out["accuracy_ci"] = accuracy_interval((truth_a == pred_a).astype(np.float64), level)
    rng = np.random.default_rng([seed, n, 7])
    w, jack, full = bootstrap_weights(rng, resamples, n), jackknife_weights(n), np.ones((1, n))
    labels = list(dict.fromkeys(list(tags) + sorted(set(truth) - set(tags))))

    def f1(weights):
        return weighted_macro_f1(weights, truth_a, pred_a, labels)

    est = float(f1(full)[0])
    out["macro_f1_ci"] = floored(est, bca_interval(est, f1(w), f1(jack), level), n, level)
    if scores is not None and len(scores) == n:
        s = np.asarray(scores, dtype=np.float64)
        point = weighted_macro_ap(full, truth_a, s, list(tags))
        if point is not None:
            est = float(point[0])
            boot, jk = weighted_macro_ap(w, truth_a, s, list(tags)), weighted_macro_ap(jack, truth_a, s, list(tags))
            out["average_precision_ci"] = floored(est, bca_interval(est, boot, jk, level), n, level)
    return out


# -- an arm's point --------------------------------------------------------------------------------

def t_quantile(df: float, level: float = LEVEL) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def _repeat_sides(vals: list[float], mean: float, n: int, level: float) -> tuple[float, float]:
    """How far the repeat spread reaches below and above the mean: a t half-width on R − 1 df, and on each
    side at least as far as the same t interval taken on the logit scale (accuracies ``(k + ½)/(n + 1)``)
    reaches. Near 1 the repeats' distribution is skewed — most draws near the top, the odd bad one far below —
    and a symmetric interval on 3 repeats misses low (91 % coverage in simulation); the logit side fixes that."""
    r = len(vals)
    if r < 2:
        return 0.0, 0.0
    tq = t_quantile(r - 1, level)
    linear = tq * math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (r - 1)) / math.sqrt(r)
    logits = [math.log((v * n + 0.5) / (n - v * n + 0.5)) for v in vals]
    centre = math.fsum(logits) / r
    hw = tq * math.sqrt(math.fsum((x - centre) ** 2 for x in logits) / (r - 1)) / math.sqrt(r)
    mid, low, high = (1 / (1 + math.exp(-x)) for x in (centre, centre - hw, centre + hw))
    return max(linear, mid - low), max(linear, high - mid)


def combine_sides(values: Sequence[float], test_down: float, test_up: float, n: int | None = None,
                  level: float = LEVEL) -> tuple[float, float, float]:
    """``(lower, upper, repeat half-width)`` of an arm's point: the repeats' sides (:func:`_repeat_sides`;
    ``n`` the photos behind each value, for the logit side — None: values are not proportions, linear only)
    combined in quadrature with the test-set sides ``test_down``/``test_up`` (distances below and above the
    mean), clipped to [0, 1]. For a metric without a binomial form (macro-F1, AP) the test-set sides are the
    mean distances of the runs' own intervals."""
    vals = [float(v) for v in values]
    mean = math.fsum(vals) / len(vals)
    if n:
        down, up = _repeat_sides(vals, mean, max(int(n), 1), level)
    else:
        r = len(vals)
        down = up = (t_quantile(r - 1, level) * math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (r - 1))
                     / math.sqrt(r)) if r >= 2 else 0.0
    lower = max(0.0, mean - math.hypot(down, max(test_down, 0.0)))
    upper = min(1.0, mean + math.hypot(up, max(test_up, 0.0)))
    return lower, upper, max(down, up)


def arm_interval(values: Sequence[float], test_images: int, *, shared_test_set: bool = True,
                 level: float = LEVEL) -> dict:
    """An arm's mean accuracy over its repeats at one count, with a 95 % interval for the arm's accuracy
    (over training draws and test photos): see the module doc.

    ``values``: each repeat's accuracy; ``test_images``: photos each run was scored on. When the runs were
    scored on different photos (``shared_test_set=False``) the test-set part uses all of them together.
    Returns ``{"mean", "lower", "upper", "half_width", "repeat_half_width", "test_interval", "n",
    "test_images", "shared_test_set", "method"}`` (``half_width``: the larger side, for symmetric bars;
    ``repeat_half_width``: the repeat part's larger side)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no values")
    mean = math.fsum(vals) / len(vals)
    n = int(test_images) * (1 if shared_test_set else len(vals))
    t_lo, t_hi = clopper_pearson(mean * n, n, level)
    lower, upper, repeat_hw = combine_sides(vals, mean - t_lo, t_hi - mean, n, level)
    r = len(vals)
    return {"mean": mean, "lower": lower, "upper": upper, "half_width": max(mean - lower, upper - mean),
            "repeat_half_width": repeat_hw, "test_interval": [t_lo, t_hi], "n": r, "test_images": int(test_images),
            "shared_test_set": bool(shared_test_set), "method": METHODS["arm"]}


def shared_test_set_note(test_images: int, runs: int) -> str | None:
    """What a chart says when all its runs were scored on one test set (None for a single run)."""
    if runs < 2:
        return None
    return (f"every run here is scored on the same {test_images} test photos: the bars include that test set's "
            "uncertainty once — repeats agreeing with each other does not make it smaller")
