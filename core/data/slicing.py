"""Slices: immutable, content-hashed, nested and reproducible subsets of the store's images.

For each repeat, tag and source (``real``, ``synthetic``) the candidate images — never ``test``, never
rejected — are put in one seeded order: sorted by SHA-256 of (seed, repeat, tag, source, image id). That
order depends on nothing but those values, so it is the same in every store holding the same images, on
every machine and Python version. A slice of N per tag takes round(N·f) real and N − round(N·f) synthetic
images from the front of those orders, so within a repeat the slices nest (10 ⊂ 30 ⊂ …) and different
repeats draw different subsets. Sizes change pixels, never members: the 256 px and 1024 px slices of one
(count, repeat) hold the same images.

A slice is identified by the SHA-256 of its spec (one count, one repeat, one size) and its members: the
same spec over the same images gives the same hash, and the existing slice is returned, not a copy.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from PIL import Image

from core.data import filtering, repeats
from core.errors import InvalidInput, NotEnoughImages, NotFound
from core.store import imaging
from core.store.database import Store
from core.store.records import SliceRecord, now

TRAIN_SOURCES = ("real", "synthetic")
MAX_COUNT = 100_000
MAX_REPEATS = 100
NAME_MAX = 100
AZURE_MIN_IMAGES_PER_TAG = 5
AZURE_MIN_SIDE = 256

EXPERIMENT_PRESET: dict = {
    "name": "experiment",
    "counts": (10, 30, 50, 120, 170, 200),
    "sizes": (1024, 256),
    "real_fraction": 0.0,
    "repeats": 1,
    "seed": 0,
}


@dataclass(frozen=True)
class SliceSpec:
    """A sweep at one pixel size: one slice per (count, repeat).

    ``size`` None keeps the original pixels; ``fit`` is ``crop`` (shorter side + centre crop), ``pad`` or
    ``stretch``; ``tags`` empty means every tag; ``filter`` drops synthetic candidates first
    (:mod:`core.data.filtering`; it is part of the spec and the hash, and each slice lists what it dropped).
    """

    name: str
    counts: tuple[int, ...]
    size: int | None = None
    fit: str = "crop"
    resample: str = "lanczos"
    real_fraction: float = 0.0
    repeats: int = 1
    seed: int = 0
    tags: tuple[str, ...] = field(default=())
    filter: filtering.FilterSpec | None = None


def validate(spec: SliceSpec) -> SliceSpec:
    """The spec with its name trimmed and counts sorted and deduplicated, or :class:`InvalidInput`."""
    name = unicodedata.normalize("NFC", str(spec.name or "").strip())
    if not name:
        raise InvalidInput("slice name is empty")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"slice name is longer than {NAME_MAX} characters")
    if any(unicodedata.category(c)[0] == "C" for c in name):
        raise InvalidInput("slice name contains control characters")
    counts = tuple(spec.counts or ())
    if not counts:
        raise InvalidInput("give at least one count per tag")
    for n in counts:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 < n <= MAX_COUNT:
            raise InvalidInput(f"counts must be whole numbers from 1 to {MAX_COUNT}, not {n!r}")
    imaging.check_resize(spec.size, spec.fit, spec.resample)
    f = spec.real_fraction
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0 or math.isnan(f):
        raise InvalidInput(f"real fraction must be between 0 and 1, not {f!r}")
    if isinstance(spec.repeats, bool) or not isinstance(spec.repeats, int) or not 1 <= spec.repeats <= MAX_REPEATS:
        raise InvalidInput(f"repeats must be a whole number from 1 to {MAX_REPEATS}, not {spec.repeats!r}")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or abs(spec.seed) >= 2**63:
        raise InvalidInput(f"seed must be a whole number, not {spec.seed!r}")
    tags = tuple(sorted(set(str(t).strip() for t in spec.tags if str(t).strip())))
    return SliceSpec(name=name, counts=tuple(sorted(set(counts))), size=spec.size, fit=spec.fit,
                     resample=spec.resample, real_fraction=float(f), repeats=spec.repeats, seed=spec.seed,
                     tags=tags, filter=filtering.validate_filter(spec.filter))


def parse_ints(text: str, what: str = "counts") -> tuple[int, ...]:
    """``"10, 30 50"`` → ``(10, 30, 50)``; anything else is :class:`InvalidInput` naming ``what``."""
    parts = [p for p in re.split(r"[\s,;]+", str(text or "").strip()) if p]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise InvalidInput(f"{what} must be whole numbers separated by commas, not {text!r}") from None


def parse_sizes(text: str) -> tuple[int | None, ...]:
    """``"1024, 256"`` → ``(1024, 256)``; empty or ``original`` → ``(None,)``."""
    parts = [p for p in re.split(r"[\s,;]+", str(text or "").strip().lower()) if p]
    if not parts:
        return (None,)
    return tuple(None if p in ("original", "none", "full") else parse_ints(p, "sizes")[0] for p in parts)


def sweep(name: str, counts: Sequence[int], sizes: Sequence[int | None] = (None,), **options) -> list[SliceSpec]:
    """One :class:`SliceSpec` per size (same name, counts and options: same members at every size)."""
    return [SliceSpec(name=name, counts=tuple(counts), size=size, **options) for size in dict.fromkeys(sizes)]


# -- choosing members ----------------------------------------------------------------------------

def _order_key(seed: int, repeat: int, tag: str, source: str, image_id: str) -> str:
    return hashlib.sha256(json.dumps([seed, repeat, tag, source, image_id]).encode()).hexdigest()


def _real_count(count: int, fraction: float) -> int:
    """round(count·fraction), halves rounded up (2.5 → 3), immune to float noise like 0.29999…"""
    return min(count, int(math.floor(count * fraction + 0.5 + 1e-9)))


def _tags_of(store: Store, spec: SliceSpec) -> list[str]:
    known = set(store.tag_names())
    tags = list(dict.fromkeys(store.get_tag(t)["name"] for t in spec.tags)) or sorted(known)
    if not tags:
        raise InvalidInput("the store has no tags yet: add tags and images first")
    return tags


def _candidates(store: Store, tags: list[str]) -> dict[tuple[str, str], list[str]]:
    pool: dict[tuple[str, str], list[str]] = {(t, s): [] for t in tags for s in TRAIN_SOURCES}
    marks = ",".join("?" * len(tags))
    for row in store.query(
        f"SELECT id, tag, source FROM images WHERE rejected = 0 AND source IN ('real', 'synthetic') "
        f"AND tag IN ({marks}) ORDER BY id", tuple(tags)
    ):
        pool[(row["tag"], row["source"])].append(row["id"])
    return pool


def _shortages(spec: SliceSpec, tags: list[str], pool: dict) -> list[str]:
    top = max(spec.counts)
    need = {"real": _real_count(top, spec.real_fraction)}
    need["synthetic"] = top - need["real"]
    out = []
    for tag in tags:
        for source in TRAIN_SOURCES:
            have = len(pool[(tag, source)])
            if need[source] > have:
                out.append(f"tag {tag!r} has {have} {source} images, a slice of {top} per tag at real fraction "
                           f"{spec.real_fraction:g} needs {need[source]}")
    return out


def _plan(spec: SliceSpec, tags: list[str], pool: dict) -> list[dict]:
    """Every slice of the spec with its members, in memory (nothing written)."""
    planned = []
    for repeat in range(spec.repeats):
        orders = {
            key: sorted(ids, key=lambda i, k=key: _order_key(spec.seed, repeat, k[0], k[1], i))
            for key, ids in pool.items()
        }
        for count in spec.counts:
            n_real = _real_count(count, spec.real_fraction)
            members, composition = [], {}
            for tag in tags:
                real = orders[(tag, "real")][:n_real]
                synthetic = orders[(tag, "synthetic")][:count - n_real]
                members += real + synthetic
                composition[tag] = {"real": len(real), "synthetic": len(synthetic)}
            slice_spec = {
                "name": spec.name, "count_per_tag": count, "size": spec.size, "fit": spec.fit,
                "resample": spec.resample, "real_fraction": spec.real_fraction, "repeat": repeat,
                "seed": spec.seed, "tags": tags,
                **({"filter": filtering.describe(spec.filter)} if spec.filter else {}),
            }
            digest = hashlib.sha256(
                json.dumps({"spec": slice_spec, "images": members}, sort_keys=True).encode()
            ).hexdigest()
            planned.append({"spec": slice_spec, "images": members, "hash": digest, "composition": composition})
    return planned


# -- building ------------------------------------------------------------------------------------

def _with_stored_tag_names(store: Store, spec: SliceSpec) -> SliceSpec:
    """``spec`` naming its tags as the store spells them (``--tags CAFÉ`` is the tag ``café``)."""
    import dataclasses

    tags = tuple(sorted({store.get_tag(t)["name"] for t in spec.tags}))
    return dataclasses.replace(spec, tags=tags) if tags != spec.tags else spec


def build_slices(store: Store, spec: SliceSpec) -> list[dict]:
    """Create (or find) every slice of ``spec``; see :func:`build_sweep`."""
    return build_sweep(store, [spec])


def build_sweep(store: Store, specs: Sequence[SliceSpec]) -> list[dict]:
    """Create (or find) every slice of every spec, all or nothing.

    Every spec is checked — values, tags, enough images — before anything is written; then all slices
    are written in one transaction. An existing slice with the same hash is returned as it is
    (``"created": False``). A name already used for the same (count, size, repeat, …) with *other*
    members — the store changed since — is refused: slices are immutable, pick a new name.
    """
    specs = [_with_stored_tag_names(store, validate(s)) for s in specs]
    if not specs:
        raise InvalidInput("nothing to build")
    plans, problems = [], []
    for spec in specs:
        tags = _tags_of(store, spec)
        pool, dropped = filtering.filter_pool(store, _candidates(store, tags), spec.filter, tags)
        problems += [p for p in _shortages(spec, tags, pool) if p not in problems]
        plans.append([{**p, "filtered": dropped if spec.filter else None} for p in _plan(spec, tags, pool)])
    if problems:
        raise NotEnoughImages("not enough images: " + "; ".join(problems))
    out = []
    with store.tx() as conn:
        for planned in (p for plan in plans for p in plan):
            row = conn.execute("SELECT id FROM slices WHERE hash = ?", (planned["hash"],)).fetchone()
            if row is not None:
                out.append({"id": row[0], "created": False, **planned, "filtered": None if planned["filtered"] is None
                            else filtering.dropped_images(store, row[0])})
                continue
            s = planned["spec"]
            for other in conn.execute(
                "SELECT id, spec FROM slices WHERE name = ? AND count_per_tag = ? AND repeat = ?",
                (s["name"], s["count_per_tag"], s["repeat"]),
            ).fetchall():
                if json.loads(other[1]) == s:
                    raise InvalidInput(
                        f"slice {s['name']!r} (n={s['count_per_tag']}, repeat {s['repeat']}, size "
                        f"{s['size'] or 'original'}) already exists (id {other[0]}) with other images — the "
                        f"store changed since it was built; slices never change, so use a new name"
                    )
            cur = conn.execute(
                "INSERT INTO slices(hash, name, spec, count_per_tag, size, real_fraction, repeat, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (planned["hash"], s["name"], json.dumps(s, sort_keys=True), s["count_per_tag"], s["size"],
                 s["real_fraction"], s["repeat"], now()),
            )
            conn.executemany(
                "INSERT INTO slice_images(slice_id, image_id, position) VALUES (?, ?, ?)",
                [(cur.lastrowid, image_id, i) for i, image_id in enumerate(planned["images"])],
            )
            filtering.record_dropped(conn, cur.lastrowid, planned["filtered"] or [])
            out.append({"id": cur.lastrowid, "created": True, **planned})
    overlaps = repeats.planned_overlaps(out)
    views = [_view(p["id"], p["hash"], p["spec"], p["images"], p["composition"], p["created"], p["filtered"])
             for p in out]
    for view in views:
        view["repeat_overlap"] = overlaps.get(view["id"])
    return views


def _view(slice_id: int, digest: str, spec: dict, images: list[str], composition: dict,
          created: bool | None = None, filtered: list[dict] | None = None) -> SliceRecord:
    view = {
        "id": slice_id, "name": spec["name"], "count_per_tag": spec["count_per_tag"], "size": spec["size"],
        "real_fraction": spec["real_fraction"], "repeat": spec["repeat"], "hash": digest, "images": images,
        "spec": spec, "composition": composition,
    }
    if created is not None:
        view["created"] = created
    if "filter" in spec:
        view["filtered"] = filtered or []
    return view


# -- reading slices ------------------------------------------------------------------------------

def _load(store: Store, row: dict) -> SliceRecord:
    members = store.query(
        "SELECT i.id, i.tag, i.source FROM slice_images si JOIN images i ON i.id = si.image_id "
        "WHERE si.slice_id = ? ORDER BY si.position", (row["id"],)
    )
    spec = json.loads(row["spec"])
    composition = {t: {"real": 0, "synthetic": 0} for t in spec.get("tags", [])}
    for m in members:
        composition.setdefault(m["tag"], {"real": 0, "synthetic": 0})[m["source"]] += 1
    filtered = filtering.dropped_images(store, row["id"]) if "filter" in spec else None
    return _view(row["id"], row["hash"], spec, [m["id"] for m in members], composition, filtered=filtered)


def get_slice(store: Store, ref: int | str, *, overlap: bool = True) -> SliceRecord:
    """A slice by id, hash, hash prefix (≥ 6 characters) or a name that has exactly one slice, with its
    ``repeat_overlap`` (:mod:`core.data.repeats`) unless ``overlap`` is False (a trainer needs only members)."""
    found = _find_slice(store, ref)
    if overlap:
        found["repeat_overlap"] = repeats.repeat_overlaps(store, [found["id"]]).get(found["id"])
    return found


def _find_slice(store: Store, ref: int | str) -> dict:
    text = str(ref).strip()
    if isinstance(ref, int) or text.isdigit():
        row = store.query_one("SELECT * FROM slices WHERE id = ?", (int(text),))
        if row:
            return _load(store, row)
    rows = store.query("SELECT * FROM slices WHERE name = ? ORDER BY id", (text,))
    if len(rows) == 1:
        return _load(store, rows[0])
    if len(rows) > 1:
        raise InvalidInput(f"{text!r} names {len(rows)} slices: give a slice id or hash")
    if re.fullmatch(r"[0-9a-fA-F]{6,64}", text):
        rows = store.query("SELECT * FROM slices WHERE hash LIKE ? ORDER BY id", (text.lower() + "%",))
        if len(rows) == 1:
            return _load(store, rows[0])
        if len(rows) > 1:
            raise InvalidInput(f"hash prefix {text!r} matches {len(rows)} slices: give more characters")
    raise NotFound(f"no slice {text!r} (give a slice id, hash or name; see the Slice page or `slice --json`)")


def resolve_slices(store: Store, refs: Iterable[int | str]) -> list[dict]:
    """Slices for names, ids and hashes, without repeats: an id (a whole number) or a hash gives one slice;
    a name gives all of its slices, by size (largest first), repeat and count. Unknown → :class:`NotFound`."""
    out: dict[int, dict] = {}
    for ref in refs:
        text = str(ref).strip()
        by_id = store.query_one("SELECT * FROM slices WHERE id = ?", (int(text),)) if text.isdigit() else None
        rows = [by_id] if by_id else store.query(
            "SELECT * FROM slices WHERE name = ? ORDER BY COALESCE(size, 0) DESC, repeat, count_per_tag, id",
            (text,),
        )
        for found in ([_load(store, r) for r in rows] if rows else [_find_slice(store, text)]):
            out.setdefault(found["id"], found)
    return list(out.values())


def list_slices(store: Store, name: str | None = None) -> list[SliceRecord]:
    """Every slice (or those named ``name``), by name, size (largest first), repeat and count."""
    where, params = ("WHERE name = ?", (name,)) if name else ("", ())
    rows = store.query(
        f"SELECT * FROM slices {where} ORDER BY name, COALESCE(size, 0) DESC, repeat, count_per_tag, id", params
    )
    return [_load(store, r) for r in rows]


def slice_members(store: Store, slice_id: int | str) -> list[dict]:
    """The member images of a slice in slice order, as ``store.get_image`` rows (id, tag, source, …)."""
    s = get_slice(store, slice_id)
    rows = store.query(
        "SELECT i.* FROM slice_images si JOIN images i ON i.id = si.image_id WHERE si.slice_id = ? "
        "ORDER BY si.position", (s["id"],)
    )
    return [store._image_view(r) for r in rows]


def member_image(store: Store, slice_: dict, image_id: str) -> Image.Image:
    """One member at the slice's pixel size, fit and resample (through the resize cache)."""
    spec = slice_["spec"]
    return imaging.resized(store, image_id, spec["size"], spec.get("fit", "crop"), spec.get("resample", "lanczos"))


def slice_table(store: Store, name: str | None = None) -> list[dict]:
    """Flat rows for a table: one per slice, a column per (tag, source) count."""
    rows = []
    slices = list_slices(store, name)
    overlaps = repeats.repeat_overlaps(store, [s["id"] for s in slices])
    for s in slices:
        overlap = overlaps.get(s["id"])
        row = {"id": s["id"], "name": s["name"], "count/tag": s["count_per_tag"],
               "size": s["size"] or "original", "fit": s["spec"].get("fit", "crop"),
               "real fraction": s["real_fraction"], "repeat": s["repeat"], "hash": s["hash"][:12],
               "repeat overlap": None if overlap is None else round(overlap, 3)}
        for tag, by_source in sorted(s["composition"].items()):
            for source, n in by_source.items():
                row[f"{tag} · {source}"] = n
        rows.append(row)
    return rows


# -- planning warnings ---------------------------------------------------------------------------

def plan_warnings(store: Store, spec: SliceSpec, *, azure: bool = True) -> list[str]:
    """What to fix before building ``spec``: missing images per tag and source, Azure Custom Vision's
    floors (≥ 5 images per tag, ≥ 256 px shorter side; only with ``azure``), tags with no test photos.

    Invalid values raise :class:`InvalidInput` (the same check :func:`build_slices` does).
    """
    spec = validate(spec)
    tags = _tags_of(store, spec)
    pool = _candidates(store, tags)
    warnings = _shortages(spec, tags, pool)
    if azure:
        warnings += _azure_warnings(store, spec, tags)
    if spec.repeats > 1 and not _shortages(spec, tags, pool):
        for count, overlap in planned_overlap(spec, tags, pool).items():
            note = repeats.overlap_note(overlap)
            if note:
                warnings.append(f"{count} per tag: {note}")
    note = upscale_note(store, spec.size, tags, spec.real_fraction)
    if note:
        warnings.append(note)
    no_test = [t for t in tags if store.count_images(t, "test", include_rejected=False) == 0]
    if no_test:
        warnings.append("no test photos for " + ", ".join(repr(t) for t in no_test)
                        + ": evaluation will not cover them (import some with source test)")
    return warnings


def upscale_note(store: Store, size: int | None, tags: Sequence[str], real_fraction: float = 0.0) -> str | None:
    """A sentence when the synthetic images such a slice would take are smaller than ``size``: they are
    upscaled, so the size axis shows the resize, not detail the generator made (``None`` otherwise)."""
    if size is None or real_fraction >= 1 or not tags:
        return None
    marks = ",".join("?" * len(tags))
    row = store.query(f"SELECT COUNT(*) AS n, MAX(MAX(width, height)) AS side FROM images WHERE source = 'synthetic' "
                      f"AND rejected = 0 AND tag IN ({marks}) AND MAX(width, height) < ?", (*tags, int(size)))[0]
    if not row["n"]:
        return None
    return (f"{row['n']} synthetic image(s) are at most {row['side']} px and will be upscaled to {size} px: at this "
            "size the chart shows the resize, not generator detail (the built-in fashion-mini makes 32 px images)")


def _azure_warnings(store: Store, spec: SliceSpec, tags: list[str]) -> list[str]:
    warnings = []
    if min(spec.counts) < AZURE_MIN_IMAGES_PER_TAG:
        warnings.append(f"Azure Custom Vision needs at least {AZURE_MIN_IMAGES_PER_TAG} images per tag; "
                        f"count {min(spec.counts)} is below that (the local backend is fine)")
    if spec.size is not None and spec.size < AZURE_MIN_SIDE:
        warnings.append(f"Azure Custom Vision wants images of at least {AZURE_MIN_SIDE} px on the shorter side; "
                        f"size {spec.size} is below that")
    if spec.size is None:
        marks = ",".join("?" * len(tags))
        small = store.query_one(
            f"SELECT COUNT(*) AS n FROM images WHERE rejected = 0 AND source IN ('real', 'synthetic') "
            f"AND tag IN ({marks}) AND MIN(width, height) < ?", (*tags, AZURE_MIN_SIDE)
        )["n"]
        if small:
            warnings.append(f"{small} candidate images are under {AZURE_MIN_SIDE} px on the shorter side "
                            f"(Azure Custom Vision's floor); pick a size to resize them")
    return warnings


def planned_overlap(spec: SliceSpec, tags: list[str], pool: dict) -> dict[int, float | None]:
    """``{count: repeat overlap}`` the spec would give on ``pool`` (nothing written)."""
    by_count: dict[int, list[list[str]]] = {}
    for p in _plan(spec, tags, pool):
        by_count.setdefault(p["spec"]["count_per_tag"], []).append(p["images"])
    return {count: repeats.repeat_overlap(members) for count, members in by_count.items()}


# -- export --------------------------------------------------------------------------------------


