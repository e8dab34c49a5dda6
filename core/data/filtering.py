"""Filtering synthetic images out of a slice's candidates, as a slicing option.

Three reasons to drop a synthetic image before slicing: a CLIP model does not see its own tag in it
(zero-shot probability of its tag, among the candidate tags, under a threshold), its label is a suspected
wrong label (:mod:`core.data.label_issues`: the default encoder's out-of-fold probe and confident learning
over the candidates of every tag, real photos included as evidence), or it sits in a near-duplicate cluster
(:mod:`core.data.similarity`: perceptual-hash candidates confirmed by aligned pixel
correlation — the same search the diagnostics use; the first image of a cluster, in candidate order, is kept).
Real photos are never filtered: they are the ground truth the filter is measured against.

The filter is part of a slice's spec (so of its hash), and the slice records what it dropped and why
(:func:`record_dropped` / :func:`dropped_images`), so a chart can set filtered against unfiltered sweeps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np

from core.data.similarity import MAX_HAMMING as DUPLICATE_THRESHOLD
from core.data.similarity import MIN_CORRELATION as DUPLICATE_MIN_CORRELATION
from core.data.similarity import DuplicateRule, find_duplicate_clusters
from core.errors import InvalidInput

ZERO_SHOT_TEMPLATE = "a photo of {tag}"  # the local backend's zero-shot default


@dataclass(frozen=True)
class FilterSpec:
    """What to drop from the synthetic candidates of a slice.

    ``min_own_tag_probability``: drop images whose zero-shot probability of their own tag is below it
    (None: no zero-shot filter); ``drop_near_duplicates``: keep one image per near-duplicate cluster;
    ``clip_model``: hub id or folder of a full CLIP model (None: the default encoder);
    ``duplicate_threshold``: largest phash Hamming distance that makes two images candidates;
    ``duplicate_min_correlation``: smallest aligned thumbnail correlation that confirms them;
    ``drop_label_issues``: drop synthetic images flagged as suspected wrong labels.
    """

    min_own_tag_probability: Optional[float] = None
    drop_near_duplicates: bool = False
    clip_model: Optional[str] = None
    duplicate_threshold: int = DUPLICATE_THRESHOLD
    duplicate_min_correlation: float = DUPLICATE_MIN_CORRELATION
    drop_label_issues: bool = False

    @property
    def active(self) -> bool:
        return self.min_own_tag_probability is not None or self.drop_near_duplicates or self.drop_label_issues


def validate_filter(spec: Optional[FilterSpec]) -> Optional[FilterSpec]:
    """The filter with its CLIP model pinned to a canonical name, None when it filters nothing, or
    :class:`InvalidInput` for out-of-range values or a model without a text tower."""
    if spec is None:
        return None
    if not isinstance(spec, FilterSpec):
        raise InvalidInput(f"filter must be a FilterSpec, not {type(spec).__name__}")
    p = spec.min_own_tag_probability
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or not 0 < p < 1):
        raise InvalidInput(f"minimum own-tag probability must be between 0 and 1 (exclusive), not {p!r}")
    t = spec.duplicate_threshold
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 32:
        raise InvalidInput(f"duplicate threshold must be a whole number from 0 to 32, not {t!r}")
    c = spec.duplicate_min_correlation
    if isinstance(c, bool) or not isinstance(c, (int, float)) or math.isnan(c) or not 0 < c <= 1:
        raise InvalidInput(f"duplicate minimum correlation must be above 0 and at most 1, not {c!r}")
    if not spec.active:
        return None
    clip_model = None
    if p is not None:
        from core.models import encoder_resolution

        ref = encoder_resolution.resolve_clip(spec.clip_model, "the own-tag filter")
        if not ref.has_text:
            raise InvalidInput(f"the own-tag filter needs a full CLIP model (image and text towers); "
                               f"{ref.name!r} has no text tower")
        clip_model = ref.name
    return FilterSpec(None if p is None else float(p), bool(spec.drop_near_duplicates), clip_model, t, float(c),
                      bool(spec.drop_label_issues))


def describe(spec: Optional[FilterSpec]) -> Optional[dict]:
    """The filter as it goes into a slice's spec (and so its hash); None when there is none.

    With the zero-shot filter the CLIP model's revision is included: another checkpoint, another hash; with
    the label-issue filter, the default encoder's name and revision. (Without it the key is left out, so
    slices made before it existed keep their hashes.)
    """
    spec = validate_filter(spec)
    if spec is None:
        return None
    out = asdict(spec)
    if not spec.drop_label_issues:
        out.pop("drop_label_issues")
    else:
        from core.models import encoder_resolution

        ref = encoder_resolution.resolve_encoder(None)
        out["label_issue_encoder"] = {"name": ref.name, "revision": ref.revision}
    if spec.min_own_tag_probability is not None:
        from core.models import encoder_resolution

        out["clip_revision"] = encoder_resolution.resolve_clip(spec.clip_model, "the own-tag filter").revision
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def zero_shot_probabilities(image_embeddings: np.ndarray, text_embeddings: np.ndarray, logit_scale: float) -> np.ndarray:
    """CLIP zero-shot: softmax over classes of ``scale · cos(image, text)``; ``(n_images, n_classes)``."""
    img = np.asarray(image_embeddings, dtype=np.float64)
    txt = np.asarray(text_embeddings, dtype=np.float64)
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    txt = txt / np.maximum(np.linalg.norm(txt, axis=1, keepdims=True), 1e-12)
    return softmax(logit_scale * img @ txt.T)


def own_tag_probabilities(store, images: Sequence[dict], tags: Sequence[str], clip_model: Optional[str]) -> np.ndarray:
    """Zero-shot probability of each image's own tag among ``tags`` (embeddings from the shared cache)."""
    from core.models import embedding_cache, encoder_resolution, encoders

    ref = encoder_resolution.resolve_clip(clip_model, "the own-tag filter")
    tags = list(tags)
    vectors = (embedding_cache.embed_images(store, ref, list(images), embedding_cache.View.of(None)) if images
               else np.zeros((0, 0), dtype=np.float32))
    text, scale = encoders.text_features(ref, [ZERO_SHOT_TEMPLATE.format(tag=t) for t in tags])
    probs = zero_shot_probabilities(vectors, text, scale)
    return np.array([probs[i, tags.index(im["tag"])] for i, im in enumerate(images)])


def _image_rows(store, candidates: Sequence[str | dict]) -> list[dict]:
    rows = []
    for c in candidates:
        image_id = c if isinstance(c, str) else c["id"]
        row = store.query_one("SELECT id, tag, source, path FROM images WHERE id = ?", (image_id,))
        if row is None:
            raise InvalidInput(f"no image {image_id!r} in the store")
        row["path"] = str(store.image_file(image_id))
        rows.append(row)
    return rows


def apply_filter(store, candidate_images: Sequence[str | dict], filter_spec: Optional[FilterSpec],
                 tags: Optional[Sequence[str]] = None) -> tuple[list[str], list[dict]]:
    """Split candidates (ids or image dicts) into ``(kept ids, [{"id", "tag", "reason"}])``, order kept.

    Only synthetic images are dropped. The zero-shot filter runs first, over ``tags`` (default: the
    candidates' tags; it needs two or more), then near-duplicates are found among the survivors of
    each tag. Without a filter everything is kept.
    """
    spec = validate_filter(filter_spec)
    rows = _image_rows(store, candidate_images)
    if spec is None:
        return [r["id"] for r in rows], []
    dropped: dict[str, dict] = {}
    synthetic = [r for r in rows if r["source"] == "synthetic"]
    if spec.min_own_tag_probability is not None and synthetic:
        labels = sorted(set(tags or (r["tag"] for r in rows)))
        if len(labels) < 2:
            raise InvalidInput("the own-tag filter compares a tag with the others: it needs at least two tags")
        missing = {r["tag"] for r in synthetic} - set(labels)
        if missing:
            raise InvalidInput(f"candidates have tags outside the filter's tags: {', '.join(sorted(missing))}")
        probs = own_tag_probabilities(store, synthetic, labels, spec.clip_model)
        for r, p in zip(synthetic, probs):
            if p < spec.min_own_tag_probability:
                dropped[r["id"]] = {"id": r["id"], "tag": r["tag"], "reason":
                                    f"own-tag probability {p:.3f} < {spec.min_own_tag_probability:g}"}
    if spec.drop_label_issues and synthetic:
        dropped.update(_label_issue_drops(store, rows, dropped))
    if spec.drop_near_duplicates:
        for tag in sorted({r["tag"] for r in synthetic}):
            ids = [r["id"] for r in synthetic if r["tag"] == tag and r["id"] not in dropped]
            rule = DuplicateRule(spec.duplicate_threshold, spec.duplicate_min_correlation)
            for cluster in find_duplicate_clusters(store, ids, rule):
                for image_id in cluster[1:]:
                    dropped[image_id] = {"id": image_id, "tag": tag,
                                         "reason": f"near-duplicate of {cluster[0]}"}
    kept = [r["id"] for r in rows if r["id"] not in dropped]
    return kept, [dropped[r["id"]] for r in rows if r["id"] in dropped]


def _label_issue_drops(store, rows: list[dict], dropped: dict) -> dict[str, dict]:
    """Synthetic candidates flagged by :func:`core.data.label_issues.find_issues` (all candidates as evidence)."""
    from core.data.label_issues import MIN_PER_TAG, NotEnoughImages, find_issues
    from core.models import embedding_cache, encoder_resolution

    counts = {t: sum(r["tag"] == t for r in rows) for t in {r["tag"] for r in rows}}
    if len(counts) < 2 or min(counts.values()) < MIN_PER_TAG:
        have = ", ".join(f"{t} {n}" for t, n in sorted(counts.items()))
        raise InvalidInput(f"the label-issue filter needs at least {MIN_PER_TAG} candidate images of each of at "
                           f"least 2 tags (have: {have})")
    ref = encoder_resolution.resolve_encoder(None)
    vectors = embedding_cache.embed_images(store, ref, rows, embedding_cache.View.of(None))
    try:
        issues = find_issues([r["id"] for r in rows], [r["tag"] for r in rows], vectors)
    except NotEnoughImages as exc:
        raise InvalidInput(f"the label-issue filter cannot run: {exc}") from None
    source = {r["id"]: r["source"] for r in rows}
    return {i["image"]: {"id": i["image"], "tag": i["tag"],
                         "reason": f"suspected wrong label (looks like {i['suggested']}, score {i['score']:.2f})"}
            for i in issues if source[i["image"]] == "synthetic" and i["image"] not in dropped}


def filter_pool(store, pool: dict[tuple[str, str], list[str]], filter_spec: Optional[FilterSpec],
                tags: Sequence[str]) -> tuple[dict[tuple[str, str], list[str]], list[dict]]:
    """:func:`apply_filter` on slicing's candidate pool (``{(tag, source): [ids]}``, orders kept)."""
    if filter_spec is None:
        return pool, []
    kept, dropped = apply_filter(store, [i for ids in pool.values() for i in ids], filter_spec, tags)
    keep = set(kept)
    return {key: [i for i in ids if i in keep] for key, ids in pool.items()}, dropped


def record_dropped(conn, slice_id: int, dropped: Sequence[dict]) -> None:
    """Write a slice's dropped images (inside the transaction that writes the slice)."""
    conn.executemany(
        "INSERT OR IGNORE INTO slice_filtered(slice_id, image_id, reason) VALUES (?, ?, ?)",
        [(slice_id, d["id"], d["reason"]) for d in dropped],
    )


def dropped_images(store, slice_id: int) -> list[dict]:
    """What the filter of a slice dropped: ``[{"id", "tag", "reason"}]`` (empty without a filter)."""
    return store.query(
        "SELECT f.image_id AS id, i.tag AS tag, f.reason AS reason FROM slice_filtered f "
        "JOIN images i ON i.id = f.image_id WHERE f.slice_id = ? ORDER BY i.tag, f.image_id", (slice_id,)
    )
