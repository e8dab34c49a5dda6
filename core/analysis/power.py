"""Power and design advice for `compare`: the smallest difference a design could detect, and how many repeats
(or test photos) would resolve a difference of the size observed. (Destined for ``core/analysis/power.py``.)

The design is the one `compare` analyses (:func:`core.analysis.stats.paired_difference`): two arms scored on the
**same** test photos (paired over photos), each with its own repeats (training draws). The variance of the
difference of the arms' mean accuracies splits into parts that shrink differently:

* ``photo``: how much the arms' per-photo difference varies across photos beyond repeat noise — shrinks
  only with more test photos (``/ n``);
* ``within``: each arm's per-photo disagreement between its repeats (the mean over photos of the variance
  over repeats) — shrinks with repeats and photos (``/ (R·n)``);
* ``repeat``: each arm's spread of its repeats' mean accuracies beyond what ``within`` explains (model
  skill varying between training draws) — shrinks only with repeats (``/ R``).

``V(R, n) = (photo + Σ within/R) / n + Σ (skill + within/n) / R`` — at the current design this equals the
variance the paired bootstrap estimates (photos resampled once for both arms, repeats per arm), so the advice
and the verdict speak of the same interval. The detectable difference at power ``1 − β`` and level ``α`` is
``(c · t(1 − α/2, df) + t(1 − β, df)) · √V`` with Welch's degrees of freedom for the repeat part, where ``c``
is how much wider the verdict's own bootstrap interval is than ``t · √V`` at the current design (so advice
and verdict agree: following the advice gets the verdict, not only a t-test).
Pure numpy/scipy; no store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.8
MAX_REPEATS = 100
MAX_TEST_IMAGES = 100_000


@dataclass(frozen=True)
class VarianceParts:
    """What one paired comparison says about its noise (see the module doc)."""
    photo: float
    within: tuple[float, float]
    skill: tuple[float, float]
    repeats: tuple[int, int]
    test_images: int


def variance_parts(correct_a, correct_b) -> VarianceParts:
    """Split the noise of a paired comparison: ``correct_a``/``correct_b`` are ``repeats × photos`` of 0/1
    on the same photo columns."""
    a = np.atleast_2d(np.asarray(correct_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(correct_b, dtype=np.float64))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError("both arms need the same, non-empty set of test photos")
    n = a.shape[1]
    within, skill = [], []
    for rows in (a, b):
        r = rows.shape[0]
        w = float(rows.var(axis=0, ddof=1).mean()) if r >= 2 else 0.0
        between = float(rows.mean(axis=1).var(ddof=1)) if r >= 2 else 0.0
        within.append(w)
        skill.append(max(0.0, between - w / n))
    per_photo = a.mean(axis=0) - b.mean(axis=0)
    photo = max(0.0, float(per_photo.var(ddof=1)) - within[0] / a.shape[0] - within[1] / b.shape[0]) if n > 1 else 0.0
    return VarianceParts(photo, (within[0], within[1]), (skill[0], skill[1]), (a.shape[0], b.shape[0]), n)


def _repeat_terms(parts: VarianceParts, repeats: tuple[int, int], n: int) -> list[tuple[float, int]]:
    """Each arm's repeat variance of its mean and its degrees of freedom (arms with one repeat have none)."""
    return [((s + w / n) / r, r - 1) for s, w, r in zip(parts.skill, parts.within, repeats) if r >= 2]


def variance(parts: VarianceParts, repeats: tuple[int, int] | None = None, test_images: int | None = None) -> float:
    """``V(R, n)`` of the module doc, for a design of ``repeats`` (per arm) and ``test_images`` photos."""
    ra, rb = repeats or parts.repeats
    n = test_images or parts.test_images
    photo = (parts.photo + parts.within[0] / ra + parts.within[1] / rb) / n
    return photo + sum(v for v, _ in _repeat_terms(parts, (ra, rb), n))


def degrees_of_freedom(parts: VarianceParts, repeats: tuple[int, int] | None = None,
                       test_images: int | None = None) -> float:
    """Welch–Satterthwaite df of the whole variance (the photo part counted as known); ∞ with no repeat part."""
    repeats = repeats or parts.repeats
    n = test_images or parts.test_images
    terms = [(v, df) for v, df in _repeat_terms(parts, repeats, n) if v > 0]
    if not terms:
        return math.inf
    total = variance(parts, repeats, n)
    return total ** 2 / sum(v * v / df for v, df in terms)


def _quantile(q: float, df: float) -> float:
    from scipy.stats import norm, t

    return float(norm.ppf(q) if math.isinf(df) else t.ppf(q, df))


def detectable_difference(parts: VarianceParts, repeats: tuple[int, int] | None = None,
                          test_images: int | None = None, alpha: float = ALPHA, power: float = POWER,
                          scale: float = 1.0) -> float:
    """The smallest true difference in accuracy the design finds with probability ``power`` at level ``alpha``:
    ``(scale · t(1 − α/2, df) + t(power, df)) · √V``. ``scale`` (see :func:`interval_scale`) makes the critical
    value the one the verdict's own interval uses."""
    df = degrees_of_freedom(parts, repeats, test_images)
    critical = scale * _quantile(1 - alpha / 2, df)
    return (critical + _quantile(power, df)) * math.sqrt(variance(parts, repeats, test_images))


def interval_scale(parts: VarianceParts, ci, alpha: float = ALPHA) -> float:
    """How much wider the verdict's interval (``ci``, from the paired bootstrap) is than ``t(1 − α/2, df) · √V``
    at the current design (1 when it cannot be told). The bootstrap scales repeat deviations by a Welch t
    factor and counts per-photo repeat noise in both of its resampling steps, so it is somewhat wider; the
    advice uses the same width so that following it gets the verdict, not only a t-test."""
    if not ci or ci[0] is None or ci[1] is None:
        return 1.0
    sd = math.sqrt(variance(parts))
    if sd <= 0:
        return 1.0
    ratio = (float(ci[1]) - float(ci[0])) / 2 / (sd * _quantile(1 - alpha / 2, degrees_of_freedom(parts)))
    return min(max(ratio, 0.5), 3.0)


def required_repeats(parts: VarianceParts, difference: float, alpha: float = ALPHA, power: float = POWER,
                     limit: int = MAX_REPEATS, scale: float = 1.0) -> int | None:
    """Repeats per arm (the same for both, at least the current) at which ``difference`` is detectable on the
    current photos; None when more repeats alone cannot get there (the photos limit it) within ``limit``."""
    d = abs(float(difference))
    if d <= 0:
        return None
    for r in range(max(2, *parts.repeats), limit + 1):
        if detectable_difference(parts, (r, r), None, alpha, power, scale) <= d:
            return r
    return None


def required_test_images(parts: VarianceParts, difference: float, alpha: float = ALPHA, power: float = POWER,
                         limit: int = MAX_TEST_IMAGES, scale: float = 1.0) -> int | None:
    """Test photos (at the current repeats) at which ``difference`` is detectable; None beyond ``limit``
    (the repeats limit it)."""
    d = abs(float(difference))
    if d <= 0:
        return None
    n = parts.test_images
    if detectable_difference(parts, None, n, alpha, power, scale) <= d:
        return n
    hi = n
    while hi < limit and detectable_difference(parts, None, hi, alpha, power, scale) > d:
        hi *= 2
    if detectable_difference(parts, None, min(hi, limit), alpha, power, scale) > d:
        return None
    lo = max(n, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if detectable_difference(parts, None, mid, alpha, power, scale) <= d:
            hi = mid
        else:
            lo = mid + 1
    return hi


def design_advice(correct_a, correct_b, difference: float, verdict: str, ci=None, alpha: float = ALPHA,
                  power: float = POWER) -> dict:
    """What a `compare` result adds about its design: ``{"detectable_difference", "power", "alpha",
    "required_repeats", "required_test_images", "design", "advice"}`` (the two ``required_*`` only when the
    verdict is ``within noise``; None there means that lever alone cannot resolve it). ``ci``: the verdict's
    interval, so the advice is sized to the interval the verdict will use (:func:`interval_scale`)."""
    parts = variance_parts(correct_a, correct_b)
    scale = interval_scale(parts, ci, alpha)
    mdd = detectable_difference(parts, alpha=alpha, power=power, scale=scale)
    out = {"detectable_difference": round(mdd, 4), "power": power, "alpha": alpha,
           "required_repeats": None, "required_test_images": None,
           "design": {"repeats": list(parts.repeats), "test_images": parts.test_images, "paired_on": "test photos"}}
    ra, rb = parts.repeats
    base = (f"With {ra} and {rb} repeats on {parts.test_images} shared test photos, this design detects a "
            f"difference of {mdd:.3f} or more ({power:.0%} power at α = {alpha:g})")
    if verdict != "within noise":
        out["advice"] = base + "."
        return out
    if abs(difference) >= mdd:
        out["advice"] = base + "; the observed difference is that large, yet within noise this time."
        return out
    reps = required_repeats(parts, difference, alpha, power, scale=scale)
    photos = required_test_images(parts, difference, alpha, power, scale=scale)
    out.update(required_repeats=reps, required_test_images=photos)
    levers = []
    if reps is not None:
        levers.append(f"{reps} repeats per arm")
    if photos is not None:
        levers.append(f"{photos} test photos")
    tail = (" or ".join(levers) + f" would resolve a difference of the observed size ({abs(difference):.3f})"
            if levers else f"neither more repeats (≤ {MAX_REPEATS}) nor more test photos alone would resolve a "
            f"difference of {abs(difference):.3f}: add both")
    out["advice"] = f"{base}; {tail}."
    return out
