"""Two arms side by side: at every count both have, the paired difference in accuracy on the same
test images, with a 95 % interval, a p-value and a verdict (:func:`core.analysis.stats.paired_difference`).

Only results on the current test set count by default; the images compared are those every run of
both arms at that count scored (normally all of them), so the pairing is exact.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Optional, Sequence

from core.analysis import arms, power, stats
from core.errors import InvalidInput, UserError

JSON_KEYS = ("count_per_tag", "a", "b", "difference", "ci", "p_value", "verdict")


class NothingToCompare(UserError):
    """The two arms share no count, or no test image."""


def _predicted(per_image: dict, labels: Sequence[str]) -> str:
    """The most probable tag (ties: first in ``labels``), as :func:`core.views.charts.predicted_tag` says."""
    probabilities = per_image["probabilities"]
    if per_image.get("predicted"):
        return per_image["predicted"]
    order = list(labels or sorted(probabilities)) + [t for t in probabilities if t not in (labels or ())]
    return max(order, key=lambda t: (probabilities.get(t, float("-inf")), -order.index(t)))


def _correct(result: dict, images: Sequence[str]) -> list[float]:
    labels = (result.get("confusion") or {}).get("labels") or result.get("tags") or []
    by_image = {p["image"]: p for p in result.get("per_image") or ()}
    return [float(_predicted(by_image[i], labels) == by_image[i]["tag"]) for i in images]


def _by_count(results: Iterable[dict], arm: str) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for r in results:
        if arms.of_result(r)[0] == arm and not r.get("stale"):
            out[int(r.get("count_per_tag") or 0)].append(r)
    return out


def compare_results(results: Sequence[dict], a: str, b: str, *, resamples: int = stats.RESAMPLES) -> dict:
    """``{"a": {arm row}, "b": {arm row}, "comparisons": [...]}``, one comparison per shared count:
    ``{"count_per_tag", "a", "b", "difference", "ci", "p_value", "verdict", "repeats", "test_images"}``
    (``a``/``b``: each arm's mean accuracy over its repeats on the compared images), and the design advice of
    :func:`core.analysis.power.design_advice`: ``detectable_difference`` (80 % power at α 0.05, paired over the shared
    test photos), ``required_repeats`` / ``required_test_images`` when within noise, and ``advice`` in words."""
    arm_a, arm_b = arms.resolve(results, a), arms.resolve(results, b)
    if arm_a["id"] == arm_b["id"]:
        raise InvalidInput(f"--a and --b name the same arm ({arm_a['id']}): pick two different arms")
    runs_a, runs_b = _by_count(results, arm_a["id"]), _by_count(results, arm_b["id"])
    shared = sorted(set(runs_a) & set(runs_b))
    if not shared:
        raise NothingToCompare(
            f"arms {arm_a['id']} and {arm_b['id']} share no count per tag on the current test set "
            f"(a: {sorted(runs_a) or 'none'}, b: {sorted(runs_b) or 'none'}); evaluate both on the same counts")
    comparisons = []
    for count in shared:
        group = runs_a[count] + runs_b[count]
        images = sorted(set.intersection(*({p["image"] for p in r.get("per_image") or ()} for r in group)))
        if not images:
            raise NothingToCompare(f"at {count} per tag the two arms share no scored test image")
        a_rows = [_correct(r, images) for r in sorted(runs_a[count], key=lambda r: r["run"])]
        b_rows = [_correct(r, images) for r in sorted(runs_b[count], key=lambda r: r["run"])]
        result = stats.paired_difference(a_rows, b_rows, resamples=resamples, seed=count)
        result.update(power.design_advice(a_rows, b_rows, result["difference"], result["verdict"], result["ci"]))
        comparisons.append({"count_per_tag": count, **result,
                            "runs": {"a": [r["run"] for r in runs_a[count]], "b": [r["run"] for r in runs_b[count]]}})
    strip = ("spec",)
    return {"a": {k: v for k, v in arm_a.items() if k not in strip},
            "b": {k: v for k, v in arm_b.items() if k not in strip},
            "comparisons": comparisons}


def compare(store, a: str, b: str, run_ids: Optional[Sequence[int]] = None) -> dict:
    """:func:`compare_results` on the store's evaluated runs."""
    from core.analysis.evaluation import results

    evaluated = results(store, run_ids)
    if not evaluated:
        raise InvalidInput("no evaluated runs: train and evaluate first (`train --slices …`, `evaluate`)")
    return compare_results(evaluated, a, b)


def parse_pairs(items: Iterable[str]) -> list[tuple[str, str]]:
    """``["A:B", …]`` → ``[("A", "B"), …]`` (for ``report --compare``)."""
    pairs = []
    for item in items or ():
        left, sep, right = str(item).partition(":")
        if not sep or not left.strip() or not right.strip():
            raise InvalidInput(f"--compare takes ARM_A:ARM_B, not {item!r}")
        pairs.append((left.strip(), right.strip()))
    return pairs


def sentence(c: dict) -> str:
    """What a person reads: ``n=30: a 0.9 vs b 0.85, difference +0.051 [+0.012, +0.094], p = 0.012 → a better``,
    then the design advice (the smallest difference the design could detect; within noise, what would resolve it)."""
    lo, hi = c["ci"]
    if lo == hi:  # every run of both arms scored alike on every image: there is no spread to put a bound on
        return (f"n={c['count_per_tag']}: a {c['a']:.3f} vs b {c['b']:.3f}, difference {c['difference']:+.3f} — "
                "identical repeats — no spread to measure" + (f". {c['advice']}" if c.get("advice") else ""))
    return (f"n={c['count_per_tag']}: a {c['a']:.3f} vs b {c['b']:.3f}, difference {c['difference']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}], p = {c['p_value']:.3g} → {c['verdict']}"
            + (f" ({c['note']})" if c.get("note") else "") + (f". {c['advice']}" if c.get("advice") else ""))
