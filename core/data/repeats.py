"""Repeats of one slice: the stored slices whose spec differs only in ``repeat``, and how much their
members overlap (mean pairwise Jaccard, :func:`repeat_overlap`). Repeats drawn from one
finite pool share images; at a count equal to the pool every repeat is the same set and the spread
over repeats is zero for no good reason — the overlap makes that visible."""

from __future__ import annotations

import json
import math
from itertools import combinations
from typing import Iterable, Optional, Sequence

from core.store.database import Store


def repeat_group(spec: dict) -> str:
    """What repeats of one slice share: the whole spec but the repeat."""
    return json.dumps({k: v for k, v in spec.items() if k != "repeat"}, sort_keys=True, default=str)


def planned_overlaps(planned: Sequence[dict]) -> dict[int, float | None]:
    groups: dict[str, list[dict]] = {}
    for p in planned:
        groups.setdefault(repeat_group(p["spec"]), []).append(p)
    out: dict[int, float | None] = {}
    for members in groups.values():
        overlap = repeat_overlap([m["images"] for m in members])
        out.update((m["id"], overlap) for m in members)
    return out


def repeat_overlaps(store: Store, slice_ids: Iterable[int]) -> dict[int, float | None]:
    """``{slice id: mean pairwise Jaccard of the members of its repeats}`` (None with one repeat):
    the repeats of a slice are the stored slices whose spec differs only in ``repeat``."""
    ids = sorted({int(i) for i in slice_ids if i is not None})
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    wanted = store.query(f"SELECT id, name, count_per_tag, spec FROM slices WHERE id IN ({marks})", tuple(ids))
    keys = {(r["name"], r["count_per_tag"]) for r in wanted}
    siblings: dict[str, list[int]] = {}
    for name, count in keys:
        for r in store.query("SELECT id, spec FROM slices WHERE name = ? AND count_per_tag = ?", (name, count)):
            siblings.setdefault(repeat_group(json.loads(r["spec"])), []).append(r["id"])
    out: dict[int, float | None] = {}
    for group in siblings.values():
        if not set(group) & set(ids):
            continue
        members = []
        for sid in group:
            members.append([row["image_id"] for row in store.query(
                "SELECT image_id FROM slice_images WHERE slice_id = ?", (sid,))])
        overlap = repeat_overlap(members)
        out.update((sid, overlap) for sid in group if sid in ids)
    return out


def jaccard(a: Iterable, b: Iterable) -> float:
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def repeat_overlap(member_sets: Sequence[Iterable]) -> Optional[float]:
    """Mean pairwise Jaccard similarity of the repeats' members (0 disjoint … 1 identical); None for
    fewer than two repeats."""
    sets = [set(m) for m in member_sets]
    if len(sets) < 2:
        return None
    pairs = [jaccard(x, y) for x, y in combinations(sets, 2)]
    return math.fsum(pairs) / len(pairs)


OVERLAP_WARNING = 0.5


def overlap_note(overlap: Optional[float]) -> Optional[str]:
    """The warning the Slice page and the charts show for a repeat overlap, or None."""
    if overlap is None:
        return None
    if overlap >= 1.0 - 1e-12:
        return "identical repeats: the count reaches the pool, every repeat holds the same images (no spread)"
    if overlap > OVERLAP_WARNING:
        return (f"repeats share {overlap:.0%} of their images (mean pairwise Jaccard): the spread over "
                "repeats understates how much another draw of images would change the result")
    return None
