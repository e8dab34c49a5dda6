"""Arms: what one chart line means — runs alike in everything but the repeat.

An arm is the slice spec without its repeat and seed (sweep name, tags, size, fit, resample, real
fraction, filter) plus backend, encoder, mode and the other training parameters. Its ``id`` is the
first 10 hex digits of the SHA-256 of that spec as canonical JSON, so it is stable across stores,
machines and re-evaluations; its ``label`` is for people. Count per tag is the chart's x axis, not
part of the arm. Nothing with different arms is ever averaged together.

Zero-shot runs (no slice) form arms of their own from their backend and parameters.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from core.errors import InvalidInput, NotFound

SLICE_KEYS = ("name", "tags", "size", "fit", "resample", "real_fraction", "filter")
_NOT_TRAINING = {"encoder", "mode", "input_px", "tags"}
_SECRETISH = ("key", "secret", "token", "password")
_LABEL_PARAMS = ("epochs", "C", "lr", "unfreeze", "input_size", "tiles", "augment", "budget_hours", "training_type")


def arm_spec(slice_spec: Optional[dict], backend: Optional[str], params: Optional[dict]) -> dict:
    """The canonical spec of an arm (see the module docstring)."""
    params = dict(params or {})
    training = {k: v for k, v in sorted(params.items())
                if k not in _NOT_TRAINING and not any(s in k.lower() for s in _SECRETISH)}
    spec: dict[str, Any] = {"backend": backend, "encoder": params.get("encoder"), "mode": params.get("mode"),
                            "training": training}
    if slice_spec:
        spec["slice"] = {k: slice_spec.get(k) for k in SLICE_KEYS if k in slice_spec}
        if spec["slice"].get("tags") is not None:
            spec["slice"]["tags"] = sorted(spec["slice"]["tags"])
    else:
        spec["slice"] = None
        spec["zero_shot"] = {"tags": sorted(params.get("tags") or []), "size": params.get("size")}
    return spec


def arm_id(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _short(encoder: Any) -> str:
    text = str(encoder or "")
    return Path(text).name if "/" in text or "\\" in text else text


def arm_label(spec: dict) -> str:
    """``digits · 4 tags · 32 px · real 100% · local cnn-small · epochs=2`` (readable, not unique: only the
    training parameters people usually vary are shown; the id tells arms apart)."""
    s = spec.get("slice")
    parts: list[str] = []
    if s is None:
        parts.append("zero-shot")
        size = (spec.get("zero_shot") or {}).get("size")
        if size:
            parts.append(f"{size} px")
    else:
        parts.append(str(s.get("name") or "?"))
        tags = s.get("tags") or []
        if tags:
            parts.append(", ".join(tags) if len(tags) <= 3 else f"{len(tags)} tags")
        parts.append(f"{s['size']} px" if s.get("size") else "original size")
        real = s.get("real_fraction")
        parts.append(f"real {real:.0%}" if isinstance(real, (int, float)) else "real n/a")
        if s.get("filter"):
            parts.append("filtered")
    model = " ".join(p for p in (spec.get("backend") or "?", _short(spec.get("encoder")),
                                 spec.get("mode") if spec.get("mode") not in (None, "probe") else "") if p)
    parts.append(model)
    training = spec.get("training") or {}
    extra = {k: training[k] for k in _LABEL_PARAMS if k in training}
    if extra:
        parts.append(", ".join(f"{k}={v}" for k, v in extra.items()))
    return " · ".join(parts)


def describe(slice_spec: Optional[dict], backend: Optional[str], params: Optional[dict]) -> dict:
    """``{"arm", "arm_label", "arm_spec"}`` for one run."""
    spec = arm_spec(slice_spec, backend, params)
    return {"arm": arm_id(spec), "arm_label": arm_label(spec), "arm_spec": spec}


def of_result(result: dict) -> tuple[str, str]:
    """``(arm id, label)`` of a result; results without an ``arm`` (older evaluations, hand-built
    dicts) get one from the fields they carry."""
    if result.get("arm"):
        return result["arm"], result.get("arm_label") or result["arm"]
    baseline = not result.get("count_per_tag") or result.get("slice") is None
    slice_spec = None if baseline else {
        "name": result.get("slice_name"), "tags": result.get("tags"), "size": result.get("size"),
        "real_fraction": result.get("real_fraction")}
    params = {"encoder": result.get("encoder"), "mode": result.get("mode"), **(result.get("params") or {})}
    spec = arm_spec(slice_spec, result.get("backend"), params)
    if baseline:
        spec["zero_shot"]["size"] = result.get("size")
    return arm_id(spec), arm_label(spec)


def arm_table(results: Sequence[dict]) -> list[dict]:
    """One row per arm: ``{"id", "label", "runs", "counts", "repeats", "real_fraction", "spec"}``."""
    table: dict[str, dict] = {}
    for r in results:
        aid, label = of_result(r)
        row = table.setdefault(aid, {"id": aid, "label": label, "runs": [], "counts": [], "repeats": {},
                                     "real_fraction": r.get("real_fraction"), "spec": r.get("arm_spec")})
        row["runs"].append(r["run"])
        count = int(r.get("count_per_tag") or 0)
        if count not in row["counts"]:
            row["counts"].append(count)
        row["repeats"][count] = row["repeats"].get(count, 0) + 1
    for row in table.values():
        row["counts"].sort()
        row["repeats"] = {str(c): row["repeats"][c] for c in row["counts"]}
    return list(table.values())


def resolve(results: Sequence[dict], ref: str) -> dict:
    """The arm ``ref`` names: an arm id, an id prefix (≥ 4 characters), an exact label, or a sweep name
    with exactly one arm. Unknown or ambiguous → a clear error listing the arms."""
    text = str(ref or "").strip()
    table = arm_table(results)
    if not text:
        raise InvalidInput("give an arm (an id from `arms --json` or `evaluate --json`)")
    for match in (lambda a: a["id"] == text, lambda a: a["label"] == text,
                  lambda a: len(text) >= 4 and a["id"].startswith(text.lower()),
                  lambda a: (a["spec"] or {}).get("slice") and a["spec"]["slice"].get("name") == text):
        found = [a for a in table if match(a)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidInput(f"{text!r} matches {len(found)} arms: "
                               + "; ".join(f"{a['id']} ({a['label']})" for a in found[:6]))
    known = "; ".join(f"{a['id']} ({a['label']})" for a in table[:8]) or "none: evaluate some runs first"
    raise NotFound(f"no arm {text!r} among the evaluated runs; arms: {known}")


def real_only_match(results: Sequence[dict], arm: str) -> Optional[str]:
    """The id of the real-only arm matching ``arm`` (same tags, size, fit, resample, backend, encoder,
    mode and training parameters; real fraction 1, any sweep name), or None."""
    by_id = {r.get("arm"): r.get("arm_spec") for r in results if r.get("arm_spec")}
    spec = by_id.get(arm)
    if not spec or not spec.get("slice"):
        return None
    for other_id, other in by_id.items():
        if other_id != arm and _real_only_twin(spec, other):
            return other_id
    return None


def proposed_pair(results: Sequence[dict]) -> Optional[tuple[str, str]]:
    """The comparison that answers Synthlab's question, for Compare's default: a synthetic arm against its
    real-only twin (:func:`real_only_match`), else against any real-only arm, on the most shared counts;
    else the first two arms. None with fewer than two arms."""
    table = arm_table(results)
    counts = {row["id"]: set(row["counts"]) - {0} for row in table}
    real_only = [row["id"] for row in table if row["real_fraction"] == 1.0]
    best: Optional[tuple] = None
    for row in table:
        if row["real_fraction"] is None or row["real_fraction"] >= 1.0:
            continue
        twin = real_only_match(results, row["id"])
        for other in [twin] if twin else real_only:
            key = (twin is not None, len(counts[row["id"]] & counts.get(other, set())))
            if key[1] and (best is None or key > best[0]):
                best = (key, (row["id"], other))
    if best:
        return best[1]
    return (table[0]["id"], table[1]["id"]) if len(table) >= 2 else None


def _real_only_twin(spec: dict, other: dict) -> bool:
    s, o = spec.get("slice") or {}, other.get("slice") or {}
    if not o or o.get("real_fraction") != 1.0:
        return False
    same = ("tags", "size", "fit", "resample")
    return all(s.get(k) == o.get(k) for k in same) and all(
        spec.get(k) == other.get(k) for k in ("backend", "encoder", "mode", "training"))


def make_real_only_sweep(store, results: Sequence[dict], arm: str, *, submit: bool = True) -> dict:
    """Build the real-only slices matching ``arm`` (same counts, repeats, size, tags; real fraction 1;
    sweep ``NAME-real-only``) and queue training with the arm's backend and parameters.
    Returns ``{"name", "slices": [ids], "runs": [ids]}``; too few real photos → :class:`NotEnoughImages`."""
    from core.data.slicing import SliceSpec, build_slices

    rows = [r for r in results if of_result(r)[0] == arm and r.get("slice") is not None]
    if not rows:
        raise NotFound(f"no evaluated runs of arm {arm!r} with slices")
    spec = rows[0].get("arm_spec") or {}
    s = spec.get("slice") or {}
    if s.get("real_fraction") == 1.0:
        raise InvalidInput("this arm is already real-only")
    counts = tuple(sorted({int(r["count_per_tag"]) for r in rows}))
    repeats = max(int(r.get("repeat") or 0) for r in rows) + 1
    seed = next((r["slice_seed"] for r in rows if r.get("slice_seed") is not None), 0)
    name = f"{s.get('name') or 'sweep'}-real-only"
    built = build_slices(store, SliceSpec(name=name, counts=counts, size=s.get("size"), fit=s.get("fit") or "crop",
                                          resample=s.get("resample") or "lanczos", real_fraction=1.0,
                                          repeats=repeats, seed=int(seed), tags=tuple(s.get("tags") or ())))
    runs: list[int] = []
    if submit:
        from core.train.training import submit_training

        params = {"encoder": spec.get("encoder"), "mode": spec.get("mode"), **(spec.get("training") or {})}
        runs = submit_training(store, [str(b["id"]) for b in built], backend=spec.get("backend") or "local",
                               params=params)
    return {"name": name, "slices": [b["id"] for b in built], "runs": runs}


def with_arms(results: Iterable[dict]) -> list[dict]:
    """Copies of ``results`` with ``arm`` and ``arm_label`` filled in where they are missing."""
    out = []
    for r in results:
        aid, label = of_result(r)
        out.append({**r, "arm": aid, "arm_label": label})
    return out
