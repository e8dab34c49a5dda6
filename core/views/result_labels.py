"""What a result is called on a chart or in a table: its slice label, whether it is the baseline, its mean average precision."""

from __future__ import annotations

import math
import statistics
from typing import Optional


def is_baseline(result: dict) -> bool:
    """A zero-shot baseline: trained on nothing (no slice, 0 images per tag)."""
    return not result.get("count_per_tag") or result.get("slice") is None


def slice_label(result: dict) -> str:
    if is_baseline(result):
        return baseline_label(result)
    return result.get("slice_name") or f"slice {result['slice']}"


def baseline_label(result: dict) -> str:
    parts = ["zero-shot", result.get("backend") or "?"]
    if result.get("encoder"):
        parts.append(short_encoder(result["encoder"]))
    if result.get("size"):
        parts.append(f"{result['size']}px")
    return " · ".join(parts)


def mean_average_precision(result: dict) -> Optional[float]:
    values = [v.get("average_precision") for v in (result.get("per_tag") or {}).values()]
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(values) if values else None


def short_encoder(encoder) -> str:
    return str(encoder).rstrip("/").rsplit("/", 1)[-1]
