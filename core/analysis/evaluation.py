"""Scoring finished runs on the labelled ``test`` images: probabilities per image, metrics per run.

Each finished run predicts each test image once: predictions are cached in the ``predictions``
table (a run's model never changes once done; retraining a run clears them), so evaluating again,
or after adding test photos, only predicts what is new. Metrics come from scikit-learn and are
stored under ``runs.metrics["evaluation"]``; :func:`results` reads them back without recomputing.

One result (the shape the Results page, the charts and the report build on)::

    {"run", "slice", "slice_name", "arm", "arm_label", "arm_spec", "count_per_tag", "size", "input_px",
     "real_fraction", "repeat", "repeat_overlap", "backend", "encoder", "mode", "tags",
     "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "average_precision_ci", "log_loss",
     "per_tag": {tag: {"precision", "recall", "f1", "average_precision", "support"}},
     "confusion": {"labels": [...], "matrix": [[...]]},   # rows: true tag, columns: predicted
     "per_image": [{"image", "tag", "probabilities": {tag: p}}],
     "test_images", "test_set", "evaluated"}

``arm`` is the run's arm (:mod:`core.analysis.arms`: what a chart line means); ``*_ci`` are 95 % intervals over the
test images (:func:`core.analysis.intervals.run_intervals`: Clopper–Pearson for accuracy, a floored BCa bootstrap
for macro-F1 and average precision; ``interval_version`` says which method made them); ``input_px`` is the side the model
actually saw; ``repeat_overlap`` is the mean Jaccard of the slice's repeats' members (None: one repeat).
Arms, overlaps and missing intervals are refreshed by :func:`results` on read, so older evaluations
carry them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from typing import Iterable, Optional

import numpy as np

from core.analysis import arms, intervals
from core.data import repeats
from core.errors import InvalidInput, StoreWriteFailed, UserError
from core.progress import Progress
from core.store.database import Store, png_bytes
from core.store.records import ResultRecord, now
from core.train.backends.registry import get_trainer
from core.train.training import get_run, list_runs

NO_TEST_IMAGES = "no test images: import some with `import --source test`"
_BATCH = 64


def test_images(store: Store) -> list[dict]:
    """The labelled test photos (not rejected), in a stable order."""
    return sorted(store.list_images(source="test", include_rejected=False), key=lambda im: (im["tag"], im["id"]))


def _test_set_key(images: list[dict]) -> str:
    return hashlib.sha256("\n".join(sorted(im["id"] for im in images)).encode()).hexdigest()[:16]


def predict_images(store: Store, run: dict, images: list[dict], progress: Progress = None) -> list[dict[str, float]]:
    """``{tag: probability}`` per stored image for a finished run, from the cache where it can."""
    ids = [im["id"] for im in images]
    cached: dict[str, dict] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows = store.conn.execute(
            f"SELECT image_id, probabilities FROM predictions WHERE run_id = ? AND image_id IN ({','.join('?' * len(chunk))})",
            (run["id"], *chunk)).fetchall()
        cached.update((r[0], json.loads(r[1])) for r in rows)
    missing = [im for im in dict((im["id"], im) for im in images).values() if im["id"] not in cached]
    if missing:
        trainer = get_trainer(run["backend"])
        for start in range(0, len(missing), _BATCH):
            chunk = missing[start:start + _BATCH]
            probs = trainer.predict(store, run, chunk)
            with store.tx() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO predictions(run_id, image_id, probabilities, created) VALUES (?, ?, ?, ?)",
                    [(run["id"], im["id"], json.dumps(p, sort_keys=True), now()) for im, p in zip(chunk, probs)])
            cached.update((im["id"], p) for im, p in zip(chunk, probs))
            if progress:
                progress(min(start + _BATCH, len(missing)), len(missing), f"run {run['id']}: predicting")
    return [cached[i] for i in ids]


def _metrics(tags: list[str], images: list[dict], probs: list[dict[str, float]]) -> dict:
    from sklearn.metrics import average_precision_score, confusion_matrix, log_loss, precision_recall_fscore_support

    truth = [im["tag"] for im in images]
    labels = list(tags) + sorted(set(truth) - set(tags))
    matrix_p = np.array([[p.get(t, 0.0) for t in tags] for p in probs], dtype=np.float64)
    predicted = [tags[i] for i in matrix_p.argmax(axis=1)]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0)
    per_tag = {}
    for i, tag in enumerate(labels):
        positives = np.array([t == tag for t in truth])
        ap = None
        if positives.any() and tag in tags:
            ap = float(average_precision_score(positives, matrix_p[:, tags.index(tag)]))
        elif positives.any():
            ap = 0.0
        per_tag[tag] = {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "average_precision": ap, "support": int(support[i])}
    present = [t for t in labels if per_tag[t]["support"] > 0]
    known = [i for i, t in enumerate(truth) if t in tags]
    loss = None
    if known:
        loss = float(log_loss([tags.index(truth[i]) for i in known], matrix_p[known], labels=list(range(len(tags)))))
    return {
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)])),
        "macro_f1": float(np.mean([per_tag[t]["f1"] for t in present])) if present else None,
        "log_loss": loss,
        "per_tag": per_tag,
        "confusion": {"labels": labels,
                      "matrix": confusion_matrix(truth, predicted, labels=labels).astype(int).tolist()},
    }


INTERVAL_KEYS = ("accuracy_ci", "macro_f1_ci", "average_precision_ci")
INTERVAL_VERSION = 2  # 2: Clopper-Pearson accuracy, floored BCa macro-F1 and AP (core.analysis.intervals)


def _intervals(tags: list[str], images: list[dict], probs: list[dict[str, float]], seed: int) -> dict:
    truth = [im["tag"] for im in images]
    scores = [[p.get(t, 0.0) for t in tags] for p in probs]
    predicted = [tags[int(np.argmax(row))] if row else None for row in scores]
    out = intervals.run_intervals(truth, predicted, scores, tags, seed=seed)
    out.pop("interval_methods", None)
    return {**out, "interval_version": INTERVAL_VERSION}


def input_px(run: dict) -> Optional[int]:
    """The side the run's model saw: the run's own ``input_px`` (backends record it), else its metrics
    or params; None when unknown."""
    for value in (run.get("input_px"), (run.get("metrics") or {}).get("input_px"),
                  (run.get("params") or {}).get("input_px")):
        if value is not None:
            return int(value)
    return None


def _slice_specs(store: Store, slice_ids: Iterable[Optional[int]]) -> dict[int, dict]:
    ids = sorted({int(i) for i in slice_ids if i is not None})
    if not ids:
        return {}
    rows = store.query(f"SELECT id, spec FROM slices WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))
    return {r["id"]: json.loads(r["spec"] or "{}") for r in rows}


def _context(store: Store, run: dict, spec: Optional[dict], overlap: Optional[float]) -> dict:
    """What a result says about its run beyond the metrics: arm, input size, repeat overlap."""
    return {**arms.describe(spec, run["backend"], run.get("params")), "input_px": input_px(run),
            "repeat_overlap": overlap, "slice_seed": (spec or {}).get("seed")}


def _result(store: Store, run: dict, images: list[dict], probs: list[dict[str, float]]) -> dict:
    tags = list(run["tags"]) or (sorted(probs[0]) if probs else [])
    spec = _slice_specs(store, [run["slice"]]).get(run["slice"])
    overlap = repeats.repeat_overlaps(store, [run["slice"]]).get(run["slice"])
    return {
        "run": run["id"], "slice": run["slice"], "slice_name": run["slice_name"],
        "count_per_tag": run["count_per_tag"], "size": run["size"], "real_fraction": run["real_fraction"],
        "repeat": run["repeat"], "backend": run["backend"], "encoder": run["encoder"], "mode": run["mode"],
        **_context(store, run, spec, overlap),
        "tags": tags, **_metrics(tags, images, probs), **_intervals(tags, images, probs, run["id"]),
        "per_image": [{"image": im["id"], "tag": im["tag"], "probabilities": p} for im, p in zip(images, probs)],
        "test_images": len(images), "test_set": _test_set_key(images), "evaluated": now(),
    }


def _finished_runs(store: Store, run_ids: Iterable[int] | None) -> list[dict]:
    if run_ids is None:
        runs = list_runs(store, status="done")
        if not runs:
            raise InvalidInput("no finished runs to evaluate: train some first (`train --slices …`)")
        return runs
    runs = [get_run(store, i) for i in dict.fromkeys(run_ids)]
    for run in runs:
        if run["status"] != "done":
            raise InvalidInput(f"run {run['id']} is {run['status']}: only finished runs can be evaluated")
    return runs


def evaluate(store: Store, run_ids: list[int] | None = None, progress: Progress = None) -> list[ResultRecord]:
    """Score runs (default: every finished run) on all test images; store and return one result per run."""
    images = test_images(store)
    if not images:
        raise UserError(NO_TEST_IMAGES)
    runs = _finished_runs(store, run_ids)
    out = []
    for i, run in enumerate(runs):
        relay = None
        if progress:
            def relay(done: int, total: int, message: str, i=i) -> None:
                progress(i, len(runs), message)
        result = _result(store, run, images, predict_images(store, run, images, relay))
        with store.tx() as conn:
            row = conn.execute("SELECT metrics FROM runs WHERE id = ?", (run["id"],)).fetchone()
            metrics = json.loads(row[0] or "{}")
            metrics["evaluation"] = result
            conn.execute("UPDATE runs SET metrics = ? WHERE id = ?", (json.dumps(metrics, sort_keys=True), run["id"]))
        out.append(result)
    if progress:
        progress(len(runs), len(runs), "evaluated")
    return out


def results(store: Store, run_ids: list[int] | None = None) -> list[ResultRecord]:
    """The stored evaluation results (metrics are not recomputed; arm, input size and repeat overlap are
    read fresh from the store), oldest run first; runs never evaluated are left out. ``stale`` is True
    where the test set changed since the run was evaluated."""
    current = _test_set_key(test_images(store))
    runs = [r for r in list_runs(store, run_ids, status="done") if r["metrics"].get("evaluation")]
    specs = _slice_specs(store, [r["slice"] for r in runs])
    overlaps = repeats.repeat_overlaps(store, [r["slice"] for r in runs])
    out, refreshed = [], {}
    for run in runs:
        result = dict(run["metrics"]["evaluation"])
        result.update(_context(store, run, specs.get(run["slice"]), overlaps.get(run["slice"])))
        if result.get("interval_version") != INTERVAL_VERSION:
            result.update(_refreshed_intervals(result))
            refreshed[run["id"]] = {k: result[k] for k in (*INTERVAL_KEYS, "interval_version") if k in result}
        out.append({**result, "stale": result.get("test_set") != current})
    _keep_refreshed(store, refreshed)
    return out


def _keep_refreshed(store: Store, refreshed: dict[int, dict]) -> None:
    """Store intervals re-scored on read, so the next read does not compute them again; a store that
    cannot be written (read-only) just computes them again next time."""
    if not refreshed:
        return
    try:
        with store.tx() as conn:
            for run_id, intervals_now in refreshed.items():
                row = conn.execute("SELECT metrics FROM runs WHERE id = ?", (run_id,)).fetchone()
                metrics = json.loads(row[0] or "{}")
                metrics.setdefault("evaluation", {}).update(intervals_now)
                conn.execute("UPDATE runs SET metrics = ? WHERE id = ?", (json.dumps(metrics, sort_keys=True), run_id))
    except (StoreWriteFailed, sqlite3.OperationalError):
        pass


def _refreshed_intervals(result: dict) -> dict:
    """Intervals for an evaluation stored before they existed (or before the current method), from its
    per-image probabilities."""
    per_image = result.get("per_image") or []
    tags = list(result.get("tags") or (sorted(per_image[0]["probabilities"]) if per_image else []))
    return _intervals(tags, [{"tag": p["tag"]} for p in per_image], [p["probabilities"] for p in per_image],
                      result["run"])


# -- quick test: one photo, several runs ----------------------------------------------------------------

def _upload(store: Store, data: bytes) -> dict:
    """An uploaded photo as an image dict (decoded and checked like an import, kept out of the store)."""
    from core.data.ingest import Rejected, decode

    try:
        png = png_bytes(decode(data))
    except Rejected as exc:
        raise InvalidInput(f"cannot use this photo: {exc}") from None
    image_id = hashlib.sha256(png).hexdigest()
    folder = store.cache_dir / "uploads"
    path = folder / f"{image_id}.png"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{image_id}-{os.getpid()}-{threading.get_ident()}"
        tmp.write_bytes(png)
        os.replace(tmp, path)
    return {"id": image_id, "path": str(path), "tag": None, "source": "upload"}


def run_label(run: dict) -> str:
    size = f"{run['size']} px" if run["size"] else "original"
    return f"run {run['id']} · {run['slice_name']} · n={run['count_per_tag']} · {size} · repeat {run['repeat']}"


def quick_test(store: Store, run_ids: list[int], image: str | bytes) -> list[dict]:
    """Each tag's probability for one photo under each run: ``image`` is a stored image id or the bytes of
    an uploaded file. Returns ``[{"run", "label", "probabilities": {tag: p}, "top"}]``."""
    if not run_ids:
        raise InvalidInput("pick at least one finished run")
    runs = _finished_runs(store, run_ids)
    if isinstance(image, (bytes, bytearray)):
        picture, stored = _upload(store, bytes(image)), False
    else:
        picture, stored = store.get_image(str(image)), True
    out = []
    for run in runs:
        if stored:
            probs = predict_images(store, run, [picture])[0]
        else:
            probs = get_trainer(run["backend"]).predict(store, run, [picture])[0]
        out.append({"run": run["id"], "label": run_label(run), "probabilities": probs,
                    "top": max(probs, key=probs.get)})
    return out
