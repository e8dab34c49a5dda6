"""Intervals a reviewer can check: bootstrap over test images, combined with the spread over repeats.

Two sources of noise sit in every accuracy Synthlab reports:

* **test-set uncertainty** — a different set of test photos would give another number. Handled by the
  bootstrap over test images (resampling with replacement, as multiplicity weights).
* **repeat spread** — a different draw of training images (a slice's repeat) gives another model.
  Handled by resampling the repeats of an arm. With few repeats the plain bootstrap understates that
  spread, so each repeat's deviation from the arm mean is scaled by ``sqrt(R/(R-1)) · t(R-1)/z`` first:
  the repeat part of the interval then matches a Student-t interval on R − 1 degrees of freedom (with
  3 repeats the spread is known to 2 degrees of freedom, and the interval says so by being wide).
  One repeat carries no spread information: its interval covers test-set uncertainty only. When two
  arms are compared, the degrees of freedom are Welch–Satterthwaite's for the difference of their
  repeat means (both arms' deviations get the same t/z factor).

:func:`paired_difference` compares two arms on the **same** test images (paired): each bootstrap
draw resamples the test images once for both arms and the repeats of each arm independently. The 95 %
interval is the percentile interval of the resampled differences; the two-sided p-value is the
bootstrap tail mass on the far side of zero; the verdict is ``a better`` / ``b better`` when the
interval excludes zero, else ``within noise``. Everything is seeded: the same inputs give the same
interval. Only numpy (and scipy's t quantile) — no store, no UI.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

Z95 = 1.959963984540054
RESAMPLES = 2000
RUN_RESAMPLES = 1000
LEVEL = 0.95
VERDICTS = ("a better", "b better", "within noise")
_CHUNK = 250


def _np():
    import numpy as np

    return np


def t_factor(repeats: int) -> float:
    """``t(0.975, R-1) / z(0.975)``: how much wider a t interval on R − 1 degrees of freedom is."""
    if repeats < 2:
        return 0.0
    from scipy.stats import t

    return float(t.ppf(0.5 + LEVEL / 2, repeats - 1) / Z95)


def repeat_scale(repeats: int) -> float:
    """Scale for repeat deviations so the bootstrap of R repeats matches a t interval (see module doc)."""
    if repeats < 2:
        return 0.0
    return math.sqrt(repeats / (repeats - 1)) * t_factor(repeats)


def percentile_interval(values, level: float = LEVEL) -> list[float]:
    np = _np()
    lo, hi = np.percentile(np.asarray(values, dtype=np.float64), [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


# -- one run: accuracy, macro-F1 and average precision over test images ---------------------------------

def run_intervals(truth: Sequence[str], predicted: Sequence[str], scores: Optional[Sequence[Sequence[float]]],
                  tags: Sequence[str], *, resamples: int = RUN_RESAMPLES, seed: int = 0) -> dict:
    """95 % bootstrap intervals over the test images of one run.

    ``truth``/``predicted``: one tag per test image; ``scores``: per image, the probability of each of
    ``tags`` (None skips average precision). Macro-F1 averages the tags present in each resample, like
    the point estimate. Returns ``{"accuracy_ci", "macro_f1_ci", "average_precision_ci"}`` as
    ``[lo, hi]`` (None where undefined, e.g. no test images)."""
    np = _np()
    n = len(truth)
    if n == 0:
        return {"accuracy_ci": None, "macro_f1_ci": None, "average_precision_ci": None}
    from core.analysis.intervals import bootstrap_weights, weighted_macro_ap

    rng = np.random.default_rng([seed, n, 1])
    w = bootstrap_weights(rng, resamples, n)
    truth_a, pred_a = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    accuracy = w @ (truth_a == pred_a).astype(np.float64) / n
    labels = list(dict.fromkeys(list(tags) + sorted(set(truth) - set(tags))))
    f1_sum, present_n = np.zeros(resamples), np.zeros(resamples)
    for tag in labels:
        is_t, said_t = (truth_a == tag), (pred_a == tag)
        tp = w @ (is_t & said_t).astype(np.float64)
        fp = w @ (~is_t & said_t).astype(np.float64)
        fn = w @ (is_t & ~said_t).astype(np.float64)
        denom = 2 * tp + fp + fn
        present = (w @ is_t.astype(np.float64)) > 0
        f1_sum += np.where(present & (denom > 0), 2 * tp / np.where(denom > 0, denom, 1), 0.0)
        present_n += present
    macro_f1 = f1_sum / np.maximum(present_n, 1)
    out = {"accuracy_ci": percentile_interval(accuracy), "macro_f1_ci": percentile_interval(macro_f1),
           "average_precision_ci": None}
    if scores is not None and len(scores) == n:
        ap = weighted_macro_ap(w, truth_a, np.asarray(scores, dtype=np.float64), list(tags))
        if ap is not None:
            out["average_precision_ci"] = percentile_interval(ap)
    return out


def standard_error(interval: Optional[Sequence[float]]) -> float:
    """The standard error a 95 % interval implies (its width / 3.92); 0 when there is none."""
    if not interval or interval[0] is None or interval[1] is None:
        return 0.0
    return max(0.0, (float(interval[1]) - float(interval[0])) / (2 * Z95))


# -- an arm's point: repeats and test images together ---------------------------------------------------

def combined_interval(values: Sequence[float], standard_errors: Sequence[float] = ()) -> dict:
    """Mean of an arm's repeats at one count and a 95 % half-width combining the repeat spread (a t
    interval on R − 1 degrees of freedom) with the runs' mean test-set variance:
    ``sqrt((t·s/√R)² + z²·mean(se²))``. ``{"mean", "half_width", "repeat_half_width", "test_half_width", "n"}``."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(vals) / n
    repeat_hw = 0.0
    if n >= 2:
        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
        repeat_hw = t_factor(n) * Z95 * sd / math.sqrt(n)
    ses = [float(s) for s in standard_errors if s is not None]
    test_hw = Z95 * math.sqrt(math.fsum(s * s for s in ses) / len(ses)) if ses else 0.0
    return {"mean": mean, "half_width": math.hypot(repeat_hw, test_hw), "repeat_half_width": repeat_hw,
            "test_half_width": test_hw, "n": n}


# -- two arms: paired difference -----------------------------------------------------------------------

def welch_df(a, b) -> Optional[float]:
    """Welch–Satterthwaite degrees of freedom of the difference of two arms' repeat means (rows:
    repeats' per-image 0/1); None when neither arm has two repeats or neither varies."""
    np = _np()
    parts = []
    for rows in (a, b):
        r = rows.shape[0]
        if r >= 2:
            v = float(np.var(rows.mean(axis=1), ddof=1)) / r
            parts.append((v, r - 1))
    total = sum(v for v, _ in parts)
    if not parts or total <= 0:
        return None
    return total ** 2 / sum(v * v / df for v, df in parts if v > 0)


def _scaled_repeats(correct, factor: float):
    """Repeat rows moved away from their mean by ``sqrt(R/(R-1)) · factor`` (unchanged for one repeat)."""
    mean = correct.mean(axis=0, keepdims=True)
    r = correct.shape[0]
    return mean + math.sqrt(r / (r - 1)) * factor * (correct - mean) if r >= 2 else correct


def paired_difference(correct_a, correct_b, *, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Accuracy of arm a minus arm b on the same test images, with its bootstrap interval.

    ``correct_a``: ``repeats_a × images`` of 0/1 (1 = that repeat's model got that image right), and
    the same for b with the same image columns. Returns ``{"a", "b", "difference", "ci", "p_value",
    "verdict", "repeats": [Ra, Rb], "test_images"}`` and a ``note`` when an arm has one repeat."""
    from core.analysis.intervals import bootstrap_weights

    np = _np()
    a = np.atleast_2d(np.asarray(correct_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(correct_b, dtype=np.float64))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError("both arms need predictions on the same, non-empty set of test images")
    n = a.shape[1]
    acc_a, acc_b = float(a.mean()), float(b.mean())
    df = welch_df(a, b)
    factor = 1.0
    if df is not None:
        from scipy.stats import t as student

        factor = float(student.ppf(0.5 + LEVEL / 2, df) / Z95)
    sa, sb = _scaled_repeats(a, factor), _scaled_repeats(b, factor)
    rng = np.random.default_rng([seed, n, a.shape[0], b.shape[0], 2])
    draws = []
    for start in range(0, resamples, _CHUNK):
        k = min(_CHUNK, resamples - start)
        w = bootstrap_weights(rng, k, n)
        va = rng.multinomial(a.shape[0], np.full(a.shape[0], 1.0 / a.shape[0]), size=k) / a.shape[0]
        vb = rng.multinomial(b.shape[0], np.full(b.shape[0], 1.0 / b.shape[0]), size=k) / b.shape[0]
        per_image = va @ sa - vb @ sb
        draws.append((w * per_image).sum(axis=1) / n)
    d = np.concatenate(draws)
    ci = percentile_interval(d)
    below, above = int((d <= 0).sum()), int((d >= 0).sum())
    p = min(1.0, 2 * (min(below, above) + 1) / (len(d) + 1))
    out = {"a": acc_a, "b": acc_b, "difference": acc_a - acc_b, "ci": ci, "p_value": p,
           "verdict": verdict(ci), "repeats": [int(a.shape[0]), int(b.shape[0])], "test_images": n}
    if min(a.shape[0], b.shape[0]) < 2:
        out["note"] = ("an arm has one repeat: its spread over training draws is unknown, so the interval "
                       "covers test-set uncertainty (and the other arm's repeats) only; add repeats")
    return out


def verdict(ci: Sequence[float]) -> str:
    """``a better`` when the whole interval is above 0, ``b better`` when below, else ``within noise``."""
    lo, hi = ci
    if lo > 0:
        return "a better"
    if hi < 0:
        return "b better"
    return "within noise"
