"""Diagnostics: why synthetic images help or hurt a classifier.

Every number answers a question a user asks after seeing a bad curve:

* **diversity** — are the synthetic images of a tag as varied as the real ones? (mean pairwise cosine
  distance of encoder embeddings, distinct expanded prompts, near-duplicate clusters by perceptual hash);
* **domain gap** — how far is the synthetic distribution from the real one? (Fréchet distance of
  embeddings, with the real-vs-real split-half distance as its floor so the number has a scale);
* **generator fingerprint** — can a linear probe tell synthetic from real, and does downscaling remove
  what separates them? Two probes per pixel size, each a cross-validated ROC AUC with a 95 % interval: one on
  encoder embeddings (bootstrap), one on pixels alone (:mod:`core.analysis.fingerprint`'s features, which see
  high-frequency traces an encoder's own resize throws away; the interval, ``pixel_null`` band and alarm from
  :mod:`core.analysis.calibrated_probe`, a permutation null over repeated cross-validation); plus the mean radial power spectrum out
  to the corner radius and the 2-D synthetic/real spectrum ratio.

Near-duplicates come from :mod:`core.data.similarity` (cached hashes, a chunked index, confirmation by
aligned pixel correlation), the same search the slice filter uses. Everything per image is cached
(embeddings, pixel features, signatures), so a second diagnosis of an unchanged store only reads.

The metric functions are pure functions on arrays (tested on constructed cases); :func:`diagnose`
gathers the images and embeddings from the store. A metric that needs images a tag lacks (e.g. real
photos for the domain gap) is reported as ``null`` with the reason under ``"notes"`` — one missing
source must not hide the other numbers. Unknown tags, bad sizes and a selection with no images at all
raise a :class:`~core.errors.UserError`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from core.analysis import diagnostic_metrics
from core.analysis.fingerprint import greyscale_array, mean_radial_spectrum, radial_power_spectrum  # noqa: F401 (re-exported)
from core.data.similarity import MAX_HAMMING as DUPLICATE_THRESHOLD  # noqa: E402
from core.data.similarity import MIN_CORRELATION as DUPLICATE_MIN_CORRELATION  # noqa: E402
from core.errors import InvalidInput, UserError
from core.progress import Progress
from core.store.records import DiagnosisRecord

MAX_SIZE = 4096



# -- diversity -----------------------------------------------------------------------------------

def mean_pairwise_cosine_distance(embeddings: np.ndarray) -> float:
    """Mean of ``1 - cos(a, b)`` over all pairs of distinct rows (0 when all rows point the same way).

    Needs at least two rows. Zero rows (no direction) are treated as orthogonal to everything.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) < diagnostic_metrics.MIN_FOR_DIVERSITY:
        raise ValueError("need a 2-D array with at least two rows")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    n = len(x)
    total = unit.sum(axis=0)  # Σ_ij cos = |Σ u|², in O(n·d) memory instead of an n×n matrix
    off_diagonal = (total @ total - (unit * unit).sum()) / (n * (n - 1))
    return float(max(0.0, 1.0 - off_diagonal))


# -- domain gap ----------------------------------------------------------------------------------


# -- generator fingerprint -----------------------------------------------------------------------


# -- gathering from the store --------------------------------------------------------------------

def find_duplicate_clusters(store, image_ids: Sequence[str], threshold: int = DUPLICATE_THRESHOLD,
                            min_correlation: float = DUPLICATE_MIN_CORRELATION, progress: Progress = None,
                            stats=None) -> list[list[str]]:
    """Near-duplicate clusters of stored images: :func:`core.data.similarity.find_duplicate_clusters`."""
    from core.data.similarity import DuplicateRule
    from core.data.similarity import find_duplicate_clusters as find

    return find(store, image_ids, DuplicateRule(threshold, min_correlation), progress, stats)


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    from core.store.imaging import check_resize

    out = tuple(dict.fromkeys(sizes or ()))
    if not out:
        raise InvalidInput("give at least one pixel size, e.g. 256")
    for size in out:
        check_resize(size)
    return out


def _check_tags(store, tags: Optional[Sequence[str]]) -> list[str]:
    known = store.tag_names()
    if not known:
        raise InvalidInput("the store has no tags yet: add tags and images first")
    if isinstance(tags, str):
        tags = [tags]
    chosen = list(dict.fromkeys(t.strip() for t in (tags or ()) if t and t.strip())) or known
    return list(dict.fromkeys(store.get_tag(tag)["name"] for tag in chosen))


def _train_images(store, tag: str) -> dict[str, list[dict]]:
    return {source: store.list_images(tag=tag, source=source, include_rejected=False)
            for source in ("synthetic", "real")}


def _round(value: Optional[float], digits: int = 4) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def _tag_report(store, tag: str, images: dict[str, list[dict]], ref, sizes: tuple[int, ...],
                rule, step: Callable[[str, int], None], progress: Progress, cache: dict) -> dict:
    from core.analysis.calibrated_probe import calibrated_probe
    from core.analysis.fingerprint import stored_features

    synthetic, real = images["synthetic"], images["real"]
    notes: dict[str, str] = {}
    vectors: dict[int, dict[str, np.ndarray]] = {}
    both = min(len(synthetic), len(real)) >= diagnostic_metrics.MIN_PER_CLASS_FOR_AUC
    n = len(synthetic) + len(real)
    for size in sizes:
        step(f"{tag}: embedding at {size} px", n)
        vectors[size] = {source: embeddings(store, ref, images[source], size, _share(progress, images, source),
                                            cache["embeddings"]) for source in ("synthetic", "real")}
    first = vectors[sizes[0]]

    diversity = {}
    for source in ("synthetic", "real"):
        if len(images[source]) >= diagnostic_metrics.MIN_FOR_DIVERSITY:
            diversity[source] = _round(mean_pairwise_cosine_distance(first[source]))
        else:
            diversity[source] = None
            notes[f"diversity.{source}"] = f"needs at least {diagnostic_metrics.MIN_FOR_DIVERSITY} {source} images, tag has {len(images[source])}"

    frechet: dict[str, Optional[float]] = {"synthetic_vs_real": None, "real_vs_real_floor": None}
    if len(real) >= diagnostic_metrics.MIN_REAL_FOR_FLOOR and len(synthetic) >= diagnostic_metrics.MIN_FOR_FRECHET:
        gap, floor = diagnostic_metrics.matched_frechet(first["synthetic"], first["real"])
        frechet = {"synthetic_vs_real": _round(gap), "real_vs_real_floor": _round(floor)}
    else:
        notes["frechet"] = (f"needs at least {diagnostic_metrics.MIN_FOR_FRECHET} synthetic and {diagnostic_metrics.MIN_REAL_FOR_FLOOR} real images, "
                            f"tag has {len(synthetic)} and {len(real)}")

    auc: dict[str, Optional[float]] = {}
    auc_ci: dict[str, Optional[list]] = {}
    pixel_auc: dict[str, Optional[float]] = {}
    pixel_auc_ci: dict[str, Optional[list]] = {}
    pixel_null: dict[str, Optional[dict]] = {}
    probe_n: dict[str, dict] = {}
    for size in sizes:
        key = str(size)
        auc[key] = auc_ci[key] = pixel_auc[key] = pixel_auc_ci[key] = pixel_null[key] = None
        if not both:
            continue
        encoded = diagnostic_metrics.probe_with_interval(vectors[size]["synthetic"], vectors[size]["real"])
        auc[key], auc_ci[key] = _round(encoded["auc"]), [_round(v) for v in encoded["ci"]]
        step(f"{tag}: pixel probe at {size} px", n)
        feats = {source: stored_features(store, [im["id"] for im in images[source]], size,
                                         _share(progress, images, source), cache["pixel_features"])
                 for source in ("synthetic", "real")}
        pixel = calibrated_probe(feats["synthetic"], feats["real"])
        pixel_auc[key], pixel_auc_ci[key] = _round(pixel["auc"]), [_round(v) for v in pixel["ci"]]
        pixel_null[key] = {"band": [_round(v) for v in pixel["null_band"]], "p_value": _round(pixel["p_value"]),
                           "alarm": pixel["alarm"]}
        probe_n[key] = pixel["n"]
    if not both:
        notes["auc"] = (f"needs at least {diagnostic_metrics.MIN_PER_CLASS_FOR_AUC} synthetic and {diagnostic_metrics.MIN_PER_CLASS_FOR_AUC} real "
                        f"images, tag has {len(synthetic)} and {len(real)}")

    step(f"{tag}: near-duplicates", n)
    clusters = find_duplicate_clusters(store, [im["id"] for im in synthetic + real], rule.max_hamming,
                                       rule.min_correlation, progress, cache["duplicates"])
    return {
        "counts": {"synthetic": len(synthetic), "real": len(real)},
        "diversity": diversity,
        "distinct_prompts": diagnostic_metrics.distinct_prompts(im["provenance"].get("prompt") for im in synthetic),
        "duplicate_clusters": clusters,
        "frechet": frechet,
        "auc": auc,
        "auc_ci": auc_ci,
        "pixel_auc": pixel_auc,
        "pixel_auc_ci": pixel_auc_ci,
        "pixel_null": pixel_null,
        "probe_n": probe_n,
        "notes": notes,
    }


def _share(progress: Progress, images: dict[str, list[dict]], source: str) -> Progress:
    """``progress`` for one source's part of a phase over both (synthetic first, then real)."""
    if progress is None:
        return None
    before = len(images["synthetic"]) if source == "real" else 0
    whole = max(len(images["synthetic"]) + len(images["real"]), 1)
    part = len(images[source])

    def report(i: int, n: int, text: str) -> None:
        progress(int((before + part * min(i, n) / max(n, 1)) * 1000 / whole), 1000, text)

    return report


def embeddings(store, ref, images: list[dict], size: Optional[int], progress: Progress = None,
               stats=None) -> np.ndarray:
    """Embeddings of stored images at ``size`` px (centre crop, as slices resize them; None: original),
    through the shared cache of :mod:`core.models.encoders` (no second cache here)."""
    from core.models import embedding_cache

    if not images:
        return np.zeros((0, 0), dtype=np.float32)
    return embedding_cache.embed_images(store, ref, list(images), embedding_cache.View.of(size), progress=progress,
                                        stats=stats, batch_size=EMBED_BATCH)


def spectra(store, images: Sequence[dict], sizes: Sequence[int], max_images: int = 100) -> dict[str, dict]:
    """Mean power spectra of synthetic and real images per size (at most ``max_images`` each).

    ``{str(size): {"frequency": [cycles/pixel], "nyquist_index", "synthetic": [...] | None, "real": [...] |
    None, "log_ratio_2d": [[…]] | None}}``: the radial means out to the corner radius (indices past
    ``nyquist_index`` are the corners), and ``log10`` of the synthetic/real ratio of the mean 2-D spectra
    (zero frequency at the centre, pooled to at most 64×64 cells; ``log_ratio_extent`` is its frequency
    range in cycles/pixel). Images are resized as slices resize them (:func:`core.store.imaging.resized`).
    """
    from core.analysis.fingerprint import corner_bins, mean_spectrum_2d, spectrum_log_ratio
    from core.store.imaging import resized

    out: dict[str, dict] = {}
    for size in sizes:
        entry: dict = {"frequency": [round(k / size, 6) for k in range(corner_bins(size, size))],
                       "nyquist_index": size // 2}
        planes: dict[str, np.ndarray] = {}
        for source in ("synthetic", "real"):
            chosen = sorted((im for im in images if im["source"] == source), key=lambda im: im["id"])[:max_images]
            if not chosen:
                entry[source] = None
                continue
            greys = [greyscale_array(resized(store, im["id"], size)) for im in chosen]
            entry[source] = [float(f"{v:.6g}") for v in mean_radial_spectrum(greys)]
            planes[source] = mean_spectrum_2d(greys)
            del greys
        entry["log_ratio_2d"] = None
        if len(planes) == 2:
            ratio = spectrum_log_ratio(planes["synthetic"], planes["real"])
            entry["log_ratio_2d"] = [[round(float(v), 3) for v in row] for row in ratio]
            entry["log_ratio_extent"] = [-0.5, 0.5]
        out[str(size)] = entry
    return out


def check_request(store, tags: Optional[Sequence[str]] = None, sizes: Sequence[int] = (256,),
                  encoder: Optional[str] = None) -> dict:
    """Validate a diagnose request before any work: tags exist, sizes are valid, the encoder loads.

    Returns the normalised parameters (tags listed, encoder pinned to its canonical name).
    """
    from core.models import encoder_resolution

    chosen = _check_tags(store, tags)
    sizes = _check_sizes(sizes)
    ref = encoder_resolution.resolve_encoder(encoder)
    have = sum(store.count_images(t, s, include_rejected=False) for t in chosen for s in ("synthetic", "real"))
    if not have:
        raise UserError("no synthetic or real images for " + ", ".join(repr(t) for t in chosen)
                        + ": generate or import some first (test images are not diagnosed)")
    return {"tags": chosen, "sizes": list(sizes), "encoder": ref.name}


def diagnose(store, tags: Optional[Sequence[str]] = None, sizes: Sequence[int] = (256,),
             encoder: Optional[str] = None, progress: Progress = None, *,
             duplicate_threshold: int = DUPLICATE_THRESHOLD,
             duplicate_min_correlation: float = DUPLICATE_MIN_CORRELATION, spectrum: bool = True) -> DiagnosisRecord:
    """Diagnose the synthetic images of ``tags`` (default: every tag) against the real ones.

    Returns ``{"encoder", "sizes", "embedding_size", "duplicate_threshold", "duplicates": {thresholds},
    "cache": {hits and misses}, "tags": {tag: {"counts", "diversity": {"synthetic", "real"},
    "distinct_prompts", "duplicate_clusters": [[ids]], "frechet": {"synthetic_vs_real",
    "real_vs_real_floor"}, "auc": {"<size>": value}, "auc_ci": {"<size>": [lo, hi]}, "pixel_auc":
    {"<size>": value}, "pixel_auc_ci": {"<size>": [lo, hi]}, "probe_n", "notes": {metric: reason}}},
    "spectrum": {"<size>": …}, "label_issues": [{"image", "tag", "suggested", "score"}]}`` (suspected wrong
    labels, :mod:`core.data.label_issues`; ``label_issues_note`` says why there are none to look for).
    Non-rejected ``synthetic`` and ``real`` images only (``test`` images
    stay unseen). Diversity and the Fréchet distance use embeddings at the first size; both probes run
    at each size (intervals: 95 % bootstrap); duplicate clusters are sought among the tag's synthetic
    and real images together (an image-to-image copy of a photo shows up). A metric the tag lacks
    images for is ``null`` and its reason is under ``notes``.
    Raises a :class:`UserError` for unknown tags, bad sizes, an encoder that does not load, or a
    selection without any synthetic or real image.
    """
    from core.data.similarity import DuplicateRule, SearchStats
    from core.models import encoder_resolution

    request = check_request(store, tags, sizes, encoder)
    sizes = tuple(request["sizes"])
    ref = encoder_resolution.resolve_encoder(request["encoder"])
    chosen = request["tags"]
    rule = DuplicateRule(int(duplicate_threshold), float(duplicate_min_correlation))
    work = _work_plan(store, chosen, sizes, spectrum)
    total = max(sum(work.values()), 1)
    done = 0
    span = 0
    message = ""

    def step(text: str, units: int = 1) -> None:
        """A phase of ``units`` of work begins (units ~ images handled, so the rate and ETA settle)."""
        nonlocal done, span, message
        done += span
        message, span = text, max(int(units), 0)
        if progress:
            progress(done, total, text)

    reported = 0

    def inner(i: int, n: int, text: str) -> None:
        nonlocal reported  # a phase's second pass (hashes, then the search) never moves the bar back
        reported = max(reported, done + int(span * min(i, n) / max(n, 1)))
        if progress:
            progress(reported, total, f"{message} · {text}")

    from core.models import embedding_cache

    cache = {"embeddings": embedding_cache.CacheStats(), "pixel_features": {"hits": 0, "misses": 0},
             "duplicates": SearchStats()}
    report: dict = {
        "encoder": ref.describe(),
        "sizes": list(sizes),
        "embedding_size": sizes[0],
        "duplicate_threshold": rule.max_hamming,
        "duplicates": rule.describe(),
        "tags": {},
    }
    _load_encoder(ref, step)
    pooled: list[dict] = []
    for tag in chosen:
        images = _train_images(store, tag)
        pooled += images["synthetic"] + images["real"]
        report["tags"][tag] = _tag_report(store, tag, images, ref, sizes, rule, step, inner, cache)
    from core.data.label_issues import label_issues_or_why

    step("suspected wrong labels", work["label_issues"])
    report["label_issues"], note = label_issues_or_why(store, chosen, request["encoder"], sizes[0], inner)
    if note:
        report["label_issues_note"] = note
    if spectrum:
        report["spectrum"] = {}
        for size in sizes:
            step(f"power spectrum at {size} px", work["spectrum"] // max(len(sizes), 1))
            report["spectrum"].update(spectra(store, pooled, [size]))
    report["cache"] = {"embeddings": cache["embeddings"].as_dict(), "pixel_features": cache["pixel_features"],
                       "signatures": {"hits": cache["duplicates"].signatures_cached,
                                      "misses": cache["duplicates"].signatures_computed},
                       "duplicate_searches_cached": cache["duplicates"].cached_searches,
                       "duplicate_candidates": cache["duplicates"].candidates,
                       "duplicate_pairs_confirmed": cache["duplicates"].confirmed,
                       "crop_candidates": cache["duplicates"].crop_candidates,
                       "crop_pairs_confirmed": cache["duplicates"].crop_confirmed}
    if progress:
        progress(total, total, "done")
    return report


def _load_encoder(ref, step: Callable[[str, int], None]) -> None:
    """Load the encoder as a phase of its own: the job says ``loading …``, not a first batch standing still."""
    from core.models import encoders
    from core.models.remote import current_pool

    if current_pool() is None:  # with --workers the actors load it
        step(f"loading the encoder {ref.name}", 0)
        encoders.load_vision_model(ref)


def _work_plan(store, tags: Sequence[str], sizes: Sequence[int], spectrum: bool) -> dict[str, int]:
    """The work of a diagnosis in units of about one image handled: per tag, its images once per size for
    embeddings and (with both sources) for pixel features, once for the duplicate search; then the
    label-issue fits and the spectra. Progress moves through these, so its rate is steady."""
    from core.data.label_issues import work_units

    out: dict[str, int] = {}
    everything = 0
    for tag in tags:
        syn = store.count_images(tag, "synthetic", include_rejected=False)
        real = store.count_images(tag, "real", include_rejected=False)
        both = min(syn, real) >= diagnostic_metrics.MIN_PER_CLASS_FOR_AUC
        out[tag] = (syn + real) * (len(sizes) * (2 if both else 1) + 1)
        everything += syn + real
    out["label_issues"] = work_units(everything)
    out["spectrum"] = min(everything, 200) * len(sizes) if spectrum else 0
    return out


# -- jobs: the page runs a diagnosis in the worker, the CLI in the foreground --------------------

JOB_KIND = "diagnose"
EMBED_BATCH = 16  # progress moves once a batch: 16 move it every few seconds on a loaded CPU (32 stood 13 s)


def run_diagnose_job(ctx) -> dict:
    """Job handler (``registry.HANDLERS["diagnose"]``): :func:`diagnose` with the job's params; progress goes
    to the job row (and to the caller's own callback when :func:`run_diagnosis` runs it in this thread)."""
    p = ctx.params
    return diagnose(ctx.store, p.get("tags"), p.get("sizes") or (256,), p.get("encoder"), progress=ctx.progress,
                    duplicate_threshold=int(p.get("duplicate_threshold", DUPLICATE_THRESHOLD)),
                    duplicate_min_correlation=float(p.get("duplicate_min_correlation", DUPLICATE_MIN_CORRELATION)))


def submit_diagnosis(store, tags: Optional[Sequence[str]] = None, sizes: Sequence[int] = (256,),
                     encoder: Optional[str] = None, *, claim: bool = False) -> int:
    """Validate the request (user errors raise here, before anything is queued) and queue a job."""
    from core.run import jobs

    return jobs.submit(store, JOB_KIND, check_request(store, tags, sizes, encoder), claim=claim)


def run_diagnosis(store, tags: Optional[Sequence[str]] = None, sizes: Sequence[int] = (256,),
                  encoder: Optional[str] = None, progress: Progress = None) -> dict:
    """Run a diagnosis in this thread as a job (so its result is kept, like the page's); returns it.
    ``progress`` (e.g. the CLI's terminal line) sees what the job row sees."""
    from core.run import jobs

    job = jobs.run_here(store, submit_diagnosis(store, tags, sizes, encoder, claim=True), progress)
    job_id = job["id"]
    if job["status"] != "done":
        raise UserError(f"diagnosis job {job_id} {job['status']}: {job['error']}")
    return {"job": job_id, **job["result"]}


def latest_diagnosis(store) -> Optional[DiagnosisRecord]:
    """The result of the most recent finished diagnosis (with ``job`` and ``finished``), or None."""
    from core.run import jobs

    for job in jobs.list_jobs(store, kind=JOB_KIND, status="done", limit=1):
        return {"job": job["id"], "finished": job["finished"], **(job["result"] or {})}
    return None


def active_diagnosis(store) -> Optional[int]:
    """The id of a queued or running diagnosis job, if any."""
    from core.run import jobs

    for status in ("running", "queued"):
        for job in jobs.list_jobs(store, kind=JOB_KIND, status=status, limit=1):
            return job["id"]
    return None


def diagnosis_to_show(store) -> Optional[int]:
    """The diagnosis job the page shows the status of: the queued or running one, else the latest one when it
    ended *cancelled* or *failed* (so the page says so until the next diagnosis, not "No diagnosis yet")."""
    from core.run import jobs

    active = active_diagnosis(store)
    if active is not None:
        return active
    for job in jobs.list_jobs(store, kind=JOB_KIND, limit=1):
        return job["id"] if job["status"] in ("cancelled", "failed") else None
    return None


# -- views for the page and the report -----------------------------------------------------------

def suggested_sizes(store) -> list[int]:
    """The pixel sizes the store's slices use (largest first), else ``[256]``: what to probe at."""
    rows = store.query("SELECT DISTINCT size FROM slices WHERE size IS NOT NULL ORDER BY size DESC")
    return [int(r["size"]) for r in rows] or [256]


def cluster_images(store, cluster: Sequence[str]) -> list[dict]:
    """The images of a duplicate cluster that are still in the store: id, path, source, rejected."""
    out = []
    for image_id in cluster:
        rows = store.query("SELECT id, source, rejected FROM images WHERE id = ?", (image_id,))
        if rows:
            out.append({"id": image_id, "path": str(store.image_file(image_id)), "source": rows[0]["source"],
                        "rejected": bool(rows[0]["rejected"])})
    return out


def reject_duplicates(store, cluster: Sequence[str]) -> list[str]:
    """Reject every image of a cluster but its first: one click on the page. Returns the rejected ids."""
    rest = list(dict.fromkeys(cluster))[1:]
    with store.tx():
        for image_id in rest:
            store.set_rejected(image_id, True)
    return rest
