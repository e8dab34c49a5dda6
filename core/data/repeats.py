"""Repeats of one slice: the stored slices whose spec differs only in ``repeat``, and how much their
members overlap (mean pairwise Jaccard, :func:`core.analysis.stats.repeat_overlap`). Repeats drawn from one
finite pool share images; at a count equal to the pool every repeat is the same set and the spread
over repeats is zero for no good reason — the overlap makes that visible."""

from __future__ import annotations

import json
from typing import Iterable, Sequence

from core.analysis import stats
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
        overlap = stats.repeat_overlap([m["images"] for m in members])
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
        overlap = stats.repeat_overlap(members)
        out.update((sid, overlap) for sid in group if sid in ids)
    return out
