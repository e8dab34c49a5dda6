"""Suspected wrong labels, found offline: out-of-fold probabilities from the default encoder's probe, then
confident learning (cleanlab's ``find_label_issues``). (Destined for ``core/analysis/label_issues.py``.)

Why this way: the only other label check (the zero-shot own-tag filter) needs a CLIP model that is often not
here. The embedded default encoder is always here, and a linear probe on its embeddings is what training
uses. Each image's probabilities come from a probe that never saw it (stratified k-fold over the images of
the tags checked), so an image whose label disagrees with what its look-alikes say stands out. Confident
learning (Northcutt et al. 2021) turns those probabilities into per-tag confidence thresholds and flags the
images whose given tag is below them while another tag is confidently above; ``cleanlab`` does that — it is
not written again here.

Each issue: ``{"image", "tag", "suggested", "score"}`` — ``score`` is how sure the flag is, ``1 − p(given
tag)`` under the out-of-fold probe (0 … 1, higher: more likely wrong), and ``suggested`` the most probable
other tag. Issues come most suspect first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FOLDS = 5
CV_REPEATS = 5
LARGE = 2000
MIN_PER_TAG = 3


class NotEnoughImages(ValueError):
    """Cross-validation needs a few images of every tag."""


def work_units(n: int) -> int:
    """The work of finding label issues among ``n`` images, in units of about one image embedded: the
    embedding (often cached) and the probe fits of the cross-validation."""
    return n + n * FOLDS * (CV_REPEATS if n <= LARGE else 1) // 4


def out_of_fold_probabilities(embeddings: np.ndarray, labels: Sequence[int], folds: int = FOLDS,
                              seed: int = 0, repeats: int = CV_REPEATS, progress=None) -> np.ndarray:
    """``n × K`` probabilities, each row from logistic-regression probes (standardised embeddings, as the
    local backend's probe) fitted without that row: stratified k-fold, averaged over ``repeats`` shuffles
    (one split's luck decides less: with one split, clean tags drew up to 5 of 30 flags; averaged over 5, 1–2)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(labels, dtype=int)
    counts = np.bincount(y)
    if len(counts) < 2 or counts.min() < MIN_PER_TAG:
        raise NotEnoughImages(f"label issues need at least {MIN_PER_TAG} images of each of at least 2 tags")
    x = np.asarray(embeddings, dtype=np.float64)
    repeats = repeats if len(y) <= LARGE else 1  # thousands of images: one split is already stable
    total = np.zeros((len(y), len(counts)))
    splits = int(min(folds, counts.min()))
    for r in range(repeats):
        cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed * 1000 + r)
        for k, (fit, held) in enumerate(cv.split(x, y)):  # cross_val_predict's folds, one report per fit
            if progress:
                progress(r * splits + k, repeats * splits, f"label-issue probe fit {r * splits + k + 1}/{repeats * splits}")
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
            model.fit(x[fit], y[fit])
            total[np.ix_(held, model.classes_)] += model.predict_proba(x[held])
    return total / repeats


def issues_from_probabilities(image_ids: Sequence[str], labels: Sequence[int], probabilities: np.ndarray,
                              tags: Sequence[str]) -> list[dict]:
    """Confident learning on out-of-fold ``probabilities`` (columns in the order of ``tags``; ``labels`` index
    ``tags``): the suspected wrong labels, most suspect first."""
    from cleanlab.filter import find_label_issues

    y = np.asarray(labels, dtype=int)
    p = np.asarray(probabilities, dtype=np.float64)
    # n_jobs=1: cleanlab's default forks a process pool, which from the app's threaded server stalled a
    # diagnosis for minutes after its last probe fit; one process takes ~0.02 s for thousands of images
    flagged = find_label_issues(labels=y, pred_probs=p, filter_by="prune_by_noise_rate",
                                return_indices_ranked_by="self_confidence", n_jobs=1)
    out = []
    for i in flagged:
        others = p[i].copy()
        others[y[i]] = -1.0
        out.append({"image": str(image_ids[i]), "tag": tags[y[i]], "suggested": tags[int(np.argmax(others))],
                    "score": round(float(1.0 - p[i, y[i]]), 4)})
    return out


def find_issues(image_ids: Sequence[str], tag_of: Sequence[str], embeddings: np.ndarray,
                tags: Sequence[str] | None = None, seed: int = 0, progress=None) -> list[dict]:
    """:func:`issues_from_probabilities` on :func:`out_of_fold_probabilities` of ``embeddings`` (one row per
    image, ``tag_of`` its given tag)."""
    tags = list(tags or sorted(set(tag_of)))
    index = {t: i for i, t in enumerate(tags)}
    labels = [index[t] for t in tag_of]
    return issues_from_probabilities(image_ids, labels,
                                     out_of_fold_probabilities(embeddings, labels, seed=seed, progress=progress), tags)


def relabel(store, image_id: str, tag: str) -> dict:
    """Move a training image to another existing tag (the Diagnostics page's one-click relabel).

    Slices are immutable, so an image that is already in a slice is refused (its slices would change their
    meaning under the same hash): reject it instead, and slice again. Returns ``{"image", "tag", "was"}``."""
    from core.errors import InvalidInput, NotFound

    row = store.query_one("SELECT id, tag, source FROM images WHERE id = ?", (image_id,))
    if row is None:
        raise NotFound(f"no image {image_id!r}")
    new = store.canonical_tag(tag)
    if row["source"] == "test":
        raise InvalidInput("test photos are relabelled by importing them again under the right tag")
    used = [r["slice_id"] for r in store.query("SELECT DISTINCT slice_id FROM slice_images WHERE image_id = ?",
                                                 (image_id,))]
    if used:
        raise InvalidInput(f"image {image_id[:12]} is in slice(s) {', '.join(map(str, sorted(used)))}: slices are "
                           "immutable, so it cannot change tag — reject it instead, and cut the slices again")
    with store.tx() as conn:
        conn.execute("UPDATE images SET tag = ? WHERE id = ?", (new, image_id))
    return {"image": image_id, "tag": new, "was": row["tag"]}


def store_label_issues(store, tags: Sequence[str] | None = None, encoder: str | None = None,
                       size: int | None = None, progress=None) -> list[dict]:
    """Label issues among a store's training images (``real`` and ``synthetic``, not rejected) of ``tags``
    (default: all), embedded by ``encoder`` (default: the embedded default) at ``size`` px (default: the
    images' own size, as the encoder sees them), through the shared embedding cache."""
    from core.models import embedding_cache, encoder_resolution

    images = [im for im in store.list_images(include_rejected=False)
              if im["source"] in ("real", "synthetic") and (tags is None or im["tag"] in set(tags))]
    images.sort(key=lambda im: (im["tag"], im["id"]))
    if not images:
        return []
    counts = {t: sum(im["tag"] == t for im in images) for t in {im["tag"] for im in images}}
    if len(counts) < 2 or min(counts.values()) < MIN_PER_TAG:
        raise NotEnoughImages(f"label issues need at least {MIN_PER_TAG} images of each of at least 2 tags")
    ref = encoder_resolution.resolve_encoder(encoder)
    n = len(images)
    share = n / max(work_units(n), 1)  # one progress scale over the embedding, then the fits

    def embedding(i: int, m: int, text: str) -> None:
        if progress:
            progress(int(i / max(m, 1) * share * 1000), 1000, text)

    def fitting(i: int, m: int, text: str) -> None:
        if progress:
            progress(int((share + i / max(m, 1) * (1 - share)) * 1000), 1000, text)

    vectors = embedding_cache.embed_images(store, ref, images, embedding_cache.View.of(size), progress=embedding)
    return find_issues([im["id"] for im in images], [im["tag"] for im in images], vectors,
                       sorted({im["tag"] for im in images}), progress=fitting)


def label_issues_or_why(store, tags: Sequence[str], encoder: str | None, size: int | None,
                        progress=None) -> tuple[list[dict], str | None]:
    """:func:`store_label_issues`, or ``([], why)`` when the tags have too few images to look (for diagnose)."""
    try:
        return store_label_issues(store, tags, encoder, size, progress), None
    except NotEnoughImages as exc:
        return [], str(exc)


def gallery_items(store, issues: list[dict], limit: int) -> list[tuple[int, dict, bool, str]]:
    """The first ``limit`` issues whose image is still stored, as ``(position, issue, rejected, caption)``."""
    items = []
    for n, issue in enumerate(issues[:limit]):
        image = store.query_one("SELECT id, rejected FROM images WHERE id = ?", (issue["image"],))
        if image is not None:
            caption = f"{issue['tag']} → {issue['suggested']}? ({issue['score']:.2f})" + (" · rejected" if image["rejected"] else "")
            items.append((n, issue, bool(image["rejected"]), caption))
    return items
