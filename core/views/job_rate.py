"""A running job's rate and ETA as text, measured from work only (a model load is its own phase)."""

from __future__ import annotations

import re
from typing import Optional

_STEP = re.compile(r"step (\d+)/(\d+)")


def _units(job: dict) -> float:
    """Work done in items, counting the steps of the item in progress (``… step 3/25``)."""
    m = _STEP.search(job.get("message") or "")
    part = int(m.group(1)) / max(int(m.group(2)), 1) if m else 0.0
    return job["done"] + min(part, 1.0)


def rate_text(job: dict, first: Optional[tuple[float, float]], clock: float) -> tuple[str, Optional[tuple]]:
    """Rate and ETA from work only: ``first`` is ``(clock, units)`` of the first poll that saw work under
    way (None before); a model load is its own phase (the job's message says ``loading …``) and never
    counts toward the rate. Returns the text and the ``first`` to keep for the next poll."""
    if (job.get("message") or "").startswith("loading"):
        return " · loading the model", None
    units = _units(job)
    if units <= 0 and first is None:
        return "", None
    if first is None:
        return " · measuring the rate…", (clock, units)
    elapsed = clock - first[0]
    if elapsed < 0.5 or units <= first[1]:
        return " · measuring the rate…", first
    rate = (units - first[1]) / elapsed
    remaining = max(job["total"] - units, 0) / rate
    return f" · {rate:.2f}/s · ETA {remaining:.0f} s", first
