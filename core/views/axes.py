"""Axes that read at a glance: a value range fitted to the data and its intervals, and category axes that
never carry more than about twenty labels.

Why: accuracies near 1.0 drawn on a 0–1 axis are a flat line at the top, and thirty-six angled run labels
merge into a grey band. Probabilities and metrics stay inside [0, 1]; the range only narrows.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

MAX_LABELS = 20
MIN_SPAN = 0.1


def fitted_range(values: Iterable[Optional[float]], lo: float = 0.0, hi: float = 1.0,
                 min_span: float = MIN_SPAN, pad: float = 0.08) -> list[float]:
    """A ``[low, high]`` axis range holding every value (means and interval ends) with ``pad`` of the span
    around them, at least ``min_span`` wide, clipped to ``[lo, hi]`` plus a hair so markers at the bounds
    stay visible. No values: the whole ``[lo, hi]``."""
    seen = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not seen:
        return [lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo)]
    low, high = min(seen), max(seen)
    span = max(high - low, min_span)
    centre = (low + high) / 2
    low, high = centre - span / 2 - pad * span, centre + span / 2 + pad * span
    if low < lo:
        high, low = min(high + (lo - low), hi), lo
    if high > hi:
        low, high = max(low - (high - hi), lo), hi
    hair = 0.02 * (high - low)
    return [round(low - hair, 4), round(high + hair, 4)]


def thinned_ticks(labels: Sequence, max_labels: int = MAX_LABELS) -> dict:
    """Layout for an axis ticked at ``labels`` (categories, or numbers such as counts per tag): every label when
    there are at most ``max_labels``, else every k-th one (the first and the last always), so no more than
    ``max_labels`` are drawn. Tick texts are strings."""
    labels = list(labels)
    if len(labels) <= max_labels:
        return {"tickmode": "array", "tickvals": labels, "ticktext": [str(v) for v in labels]}
    step = math.ceil((len(labels) - 1) / (max_labels - 1))
    keep = list(range(0, len(labels), step))
    if keep[-1] != len(labels) - 1:
        keep[-1] = len(labels) - 1
    return {"tickmode": "array", "tickvals": [labels[i] for i in keep], "ticktext": [str(labels[i]) for i in keep]}


def figure_notes(fig) -> list[str]:
    """The plain-words warnings of a chart, to show as its caption (never drawn over the plot)."""
    meta = fig.layout.meta if fig.layout.meta is not None else {}
    return list(meta.get("notes", [])) if isinstance(meta, dict) else []
