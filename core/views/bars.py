"""Error bars of the charts as intervals: each point's ``(lower, upper)`` inside [0, 1], asymmetric near the
bounds, and the note a chart carries when all its runs share one test set. (:mod:`core.charts` draws them.)"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Optional

from core.analysis import arms, intervals, stats


def error_bars(point_stats: list[dict]) -> dict:
    """Plotly error bars from each point's interval: ``array`` above the mean, ``arrayminus`` below (they
    differ near 0 and 1, where intervals are asymmetric; both stop at the [0, 1] bounds)."""
    return {"type": "data", "symmetric": False, "visible": True,
            "array": [s["upper"] - s["mean"] for s in point_stats],
            "arrayminus": [s["mean"] - s["lower"] for s in point_stats]}


def shared_test_set_note(results: Sequence[dict], error: str) -> str | None:
    """With the combined bars, say when every run of the chart was scored on the same test photos (and more
    than one run stands behind a point): the bars then hold that test set's uncertainty once."""
    if error != "combined" or len(results) < 2:
        return None
    sets = {r.get("test_set") for r in results}
    counts = defaultdict(int)
    for r in results:
        counts[(arms.of_result(r)[0], r.get("count_per_tag"))] += 1
    if len(sets) != 1 or None in sets or max(counts.values()) < 2:
        return None
    return intervals.shared_test_set_note(int(results[0].get("test_images") or 0), max(counts.values()))


def point_interval(points: list[dict], values: list[float], mean: float, error: str,
                   spread: Callable[[Sequence[float], str], float]) -> tuple[float, float]:
    """A point's bar as ``(lower, upper)`` inside [0, 1]. ``combined``: accuracy by
    :func:`core.analysis.intervals.arm_interval` (repeats with the shared test set's Clopper–Pearson interval, once);
    other metrics with the runs' own intervals as the test-set part (:func:`core.analysis.intervals.combine_sides`);
    probabilities with their standard errors. ``std`` / ``ci95``: ``spread`` (the repeat spread), cut at 0 and 1."""
    if error == "combined":
        photos = [p.get("photos") for p in points]
        if all(photos):
            shared = len({p["result"].get("test_set") for p in points}) == 1
            out = intervals.arm_interval(values, int(photos[0]), shared_test_set=shared)
            return out["lower"], out["upper"]
        cis = [p.get("ci") for p in points]
        if all(cis):
            down = statistics.fmean(max(0.0, v - c[0]) for v, c in zip(values, cis))
            up = statistics.fmean(max(0.0, c[1] - v) for v, c in zip(values, cis))
        else:
            ses = [p.get("se") or 0.0 for p in points]
            down = up = stats.Z95 * math.sqrt(math.fsum(s * s for s in ses) / len(ses))
        lower, upper, _ = intervals.combine_sides(values, down, up)
        return lower, upper
    half = spread(values, error)
    return max(0.0, mean - half), min(1.0, mean + half)


def test_part(result: dict, metric: str, metric_interval: Callable[[dict, str], Optional[Sequence[float]]]) -> dict:
    """What a metric point needs for the combined bar: accuracy its number of test photos (``photos``; the
    interval is binomial), other metrics the run's own interval (``ci``: stored, else ``metric_interval``'s),
    else no test-set part (``se`` 0)."""
    if metric == "accuracy" and result.get("test_images"):
        return {"photos": int(result["test_images"])}
    ci = metric_interval(result, metric)
    if ci and None not in ci:
        return {"ci": list(ci)}
    return {"se": 0.0}
