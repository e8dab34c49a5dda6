"""Training runs: one model per slice on a backend, persisted in ``runs`` and executed as jobs.

A run is identified by (slice, backend, normalised params): asking again for the same models reuses
the same run rows, so a sweep killed half-way is resumed by asking again — finished runs are kept,
the others run (again). Each run is one job (``kind="train"``, params ``{"run": id}``): the CLI claims
and runs it in the foreground (:func:`train`), the app queues it for its worker
(:func:`submit_training`); either way it can be cancelled and retried, and it reports progress.

Run statuses: ``queued`` → ``running`` → ``done`` | ``failed`` | ``cancelled``. A zero-shot run has no
slice (``slice`` None, 0 images per tag): charts draw it as a reference line.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Optional

from core.data import slicing
from core.errors import InvalidInput, JobCancelled, NotFound, UserError
from core.progress import Progress
from core.redact import redact
from core.run import jobs
from core.store.database import Store
from core.store.records import RunRecord, now
from core.train.backends.registry import get_trainer

STATUSES = ("queued", "running", "done", "failed", "cancelled")

_foreground = threading.local()


class SweepCancelled(UserError):
    """A foreground sweep stopped because one of its runs was cancelled (``jobs cancel``)."""


# -- reading runs -------------------------------------------------------------------------------------

_RUN_SQL = (
    "SELECT r.*, s.name AS slice_name, s.hash AS slice_hash, s.spec AS slice_spec, s.count_per_tag, "
    "s.size AS slice_size, s.real_fraction, s.repeat FROM runs r LEFT JOIN slices s ON s.id = r.slice_id"
)


def _seconds(start: Optional[str], end: Optional[str]) -> Optional[float]:
    if not start:
        return None
    try:
        t0 = datetime.fromisoformat(start)
        t1 = datetime.fromisoformat(end) if end else datetime.now(t0.tzinfo)
    except ValueError:
        return None
    return round((t1 - t0).total_seconds(), 1)


def _view(row: dict) -> RunRecord:
    params = json.loads(row.pop("params") or "{}")
    metrics = json.loads(row.pop("metrics") or "{}")
    spec = json.loads(row.pop("slice_spec") or "{}")
    run_id = row.pop("id")
    slice_id = row.pop("slice_id")
    evaluation = metrics.get("evaluation") or {}
    view = {"id": run_id, "slice": slice_id, **row, "params": params, "metrics": metrics}
    if slice_id is None:
        encoder = str(params.get("encoder") or "")
        view.update({"slice_name": f"zero-shot · {Path(encoder).name if Path(encoder).is_absolute() else encoder}",
                     "count_per_tag": 0,
                     "size": params.get("size"), "fit": params.get("fit") or "crop",
                     "resample": params.get("resample") or "lanczos", "real_fraction": None, "repeat": 0})
    else:
        view.update({"size": row["slice_size"], "fit": spec.get("fit", "crop"),
                     "resample": spec.get("resample", "lanczos")})
    view.pop("slice_size", None)
    view.update({
        "encoder": params.get("encoder"), "mode": params.get("mode"),
        "tags": metrics.get("tags") or params.get("tags") or spec.get("tags") or [],
        "accuracy": evaluation.get("accuracy"), "accuracy_ci": evaluation.get("accuracy_ci"),
        "time": _seconds(view.get("started"), view.get("finished")),
        # what the model saw; a queued or running run has not seen anything yet (not the slice's size)
        "input_px": metrics.get("input_px") or (view.get("size") if view.get("status") == "done" else None),
    })
    return view


def get_run(store: Store, run_id: int) -> RunRecord:
    """One run: ``id``, ``slice`` (id or None), ``slice_name``, ``count_per_tag``, ``size``, ``fit``,
    ``resample``, ``real_fraction``, ``repeat``, ``backend``, ``params``, ``encoder``, ``mode``, ``status``,
    ``job_id``, ``artifact``, ``metrics``, ``tags``, ``error``, ``accuracy`` (None until evaluated),
    ``time`` (seconds), ``created``, ``started``, ``finished``."""
    try:
        run_id = int(run_id)
    except (TypeError, ValueError):
        raise InvalidInput(f"run ids are whole numbers, not {run_id!r}") from None
    row = store.query_one(_RUN_SQL + " WHERE r.id = ?", (run_id,))
    if row is None:
        raise NotFound(f"no run {run_id} (see `train --json` or the Train page for run ids)")
    return _view(row)


def list_runs(store: Store, run_ids: Iterable[int] | None = None, *, status: str | None = None,
              slice_name: str | None = None, backend: str | None = None) -> list[RunRecord]:
    """Runs (as :func:`get_run` gives them), oldest first, optionally filtered."""
    sql, params = _RUN_SQL + " WHERE 1 = 1", []
    if run_ids is not None:
        ids = [int(i) for i in run_ids]
        if not ids:
            return []
        sql += f" AND r.id IN ({','.join('?' * len(ids))})"
        params += ids
    if status:
        if status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        sql += " AND r.status = ?"
        params.append(status)
    if slice_name:
        sql += " AND s.name = ?"
        params.append(slice_name)
    if backend:
        sql += " AND r.backend = ?"
        params.append(backend)
    return [_view(r) for r in store.query(sql + " ORDER BY r.id", tuple(params))]


def summary(run: dict) -> dict:
    """The CLI's view of a run: ``{"id", "slice", "backend", "status"}`` and a few useful extras."""
    return {"id": run["id"], "slice": run["slice"], "backend": run["backend"], "status": run["status"],
            "slice_name": run["slice_name"], "count_per_tag": run["count_per_tag"], "size": run["size"],
            "repeat": run["repeat"], "encoder": run["encoder"], "mode": run["mode"], "error": run["error"],
            "input_px": run["input_px"],
            "train_accuracy": run["metrics"].get("train_accuracy"), "accuracy": run["accuracy"],
            "accuracy_ci": run["accuracy_ci"]}


# -- creating runs ------------------------------------------------------------------------------------

def slice_tags(store: Store, slice_id: int) -> list[str]:
    rows = store.query(
        "SELECT DISTINCT i.tag FROM slice_images si JOIN images i ON i.id = si.image_id WHERE si.slice_id = ? "
        "ORDER BY i.tag", (slice_id,))
    return [r["tag"] for r in rows]


def _checked_slices(store: Store, slice_refs: Iterable[int | str]) -> list[dict]:
    """The slices named, each with its ``tags``; a slice with fewer than two tags is refused."""
    refs = [r for r in (slice_refs or []) if str(r).strip()]
    if not refs:
        raise InvalidInput("pick at least one slice (a slice name trains every slice of that name)")
    slices = slicing.resolve_slices(store, refs)
    for s in slices:
        tags = slice_tags(store, s["id"])
        if len(tags) < 2:
            raise InvalidInput(
                f"slice {s['name']!r} (id {s['id']}) has images of {'only one tag' if tags else 'no tag'}"
                f"{' (' + tags[0] + ')' if tags else ''}: a classifier needs at least 2 tags")
        s["tags"] = tags
    return slices


def _targets(slices: list[dict], params: dict) -> list[tuple[Optional[int], dict]]:
    """(slice id, params) of each run to make: one per slice, or one zero-shot run per pixel view."""
    if params.get("mode") != "zeroshot":
        return [(s["id"], params) for s in slices]
    views: dict[tuple, set] = {}
    for s in slices:
        spec = s.get("spec") or {}
        views.setdefault((s["size"], spec.get("fit", "crop"), spec.get("resample", "lanczos")), set()).update(s["tags"])
    return [(None, {**params, "tags": sorted(tags), "size": size, "fit": fit, "resample": resample})
            for (size, fit, resample), tags in views.items()]


def prepare_runs(store: Store, slice_refs: Iterable[int | str], backend: str = "local",
                 params: dict | None = None) -> list[int]:
    """Find or create the run rows for these slices (failed and cancelled ones go back to ``queued``)."""
    trainer = get_trainer(backend)
    slices = _checked_slices(store, slice_refs)
    params = dict(params or {})
    validate = getattr(trainer, "validate", None)
    if validate is not None:
        params = validate(store, params)
    targets = _targets(slices, params)
    if params.get("mode") == "zeroshot":
        targets = [(sid, validate(store, p) if validate else p) for sid, p in targets]
    plan = getattr(trainer, "plan", None)
    if plan is not None:  # a backend's check of the whole sweep (Azure: quotas) before any run row is written
        plan(store, [slicing.get_slice(store, sid) for sid, _ in targets if sid is not None], params)
    ids = []
    with store.tx() as conn:
        for slice_id, run_params in targets:
            text = json.dumps(run_params, sort_keys=True)
            row = conn.execute(
                "SELECT id, status FROM runs WHERE slice_id IS ? AND backend = ? AND params = ? ORDER BY id DESC LIMIT 1",
                (slice_id, backend, text)).fetchone()
            if row is None:
                cur = conn.execute("INSERT INTO runs(slice_id, backend, params, status, created) VALUES (?, ?, ?, 'queued', ?)",
                                   (slice_id, backend, text, now()))
                ids.append(cur.lastrowid)
                continue
            if row["status"] in ("failed", "cancelled"):
                _reset(conn, row["id"])
            ids.append(row["id"])
    return ids


def _reset(conn, run_id: int) -> None:
    conn.execute("DELETE FROM predictions WHERE run_id = ?", (run_id,))
    conn.execute("UPDATE runs SET status = 'queued', error = NULL, started = NULL, finished = NULL, metrics = '{}', "
                 "artifact = NULL WHERE id = ?", (run_id,))


# -- running ------------------------------------------------------------------------------------------

def train(store: Store, slice_refs: list[str], backend: str = "local", params: dict | None = None,
          progress: Progress = None) -> list[dict]:
    """Train one model per slice in the foreground (each run a claimed job). Returns
    ``[{"id", "slice", "backend", "status", …}]``. Runs already done are not redone; a user error in a
    run marks it failed and is raised (the runs after it stay queued, ready to resume)."""
    from core.models.embedding_cache import held_in_memory

    run_ids = prepare_runs(store, slice_refs, backend, params)
    total = len(run_ids)
    with held_in_memory():  # the sweep's runs share images: each vector is read from the store once
        todo = [r for r in list_runs(store, run_ids) if r["status"] != "done"]
        _foreground.slices = {r["id"]: slice_for_run(store, r) for r in todo}
        try:
            _train_runs(store, run_ids, todo, progress)
        finally:
            _foreground.slices = {}
    if progress:
        progress(total, total, "done")
    return [summary(r) for r in list_runs(store, run_ids)]


def _train_runs(store: Store, run_ids: list[int], todo: list[dict], progress: Progress) -> None:
    total = len(run_ids)
    try:
        embed_sweep(store, todo, progress, _foreground.slices)
    except UserError:
        pass  # e.g. a damaged member file: each run embeds its own images in its job, which fails saying why
    for i, run_id in enumerate(run_ids):
        if get_run(store, run_id)["status"] == "done":
            continue
        job_id = jobs.submit(store, "train", {"run": run_id}, claim=True)
        with store.tx() as conn:
            conn.execute("UPDATE runs SET job_id = ? WHERE id = ?", (job_id, run_id))

        def relay(done: int, of: int, message: str, i=i, run_id=run_id) -> None:
            if progress:
                progress(i, total, f"run {run_id} ({i + 1}/{total}): {message}")

        _foreground.relay = relay
        try:
            job = jobs.run_job(store, job_id)
        finally:
            _foreground.relay = None
        if job["status"] == "cancelled":
            left = [r for r in run_ids[i + 1:] if get_run(store, r)["status"] != "done"]
            raise SweepCancelled(
                f"cancelled: run {run_id} (job {job_id}) was stopped"
                + (f"; runs {', '.join(map(str, left))} were not started (they stay queued: run the same "
                   "command again to resume)" if left else ""))


def embed_sweep(store: Store, runs: list[dict], progress: Progress = None,
                slices: dict[int, dict] | None = None) -> dict:
    """Embed every image the local linear-probe runs of a sweep will need, once, before any of them runs.

    One pass per pixel view over the union of the slices' members: the encoder is loaded once, batches
    are full across slice boundaries, and an image shared by nested slices (10 ⊂ 30 ⊂ …) or repeats is
    embedded once. Each run then reads its embeddings from the cache. Other backends and modes are left
    to themselves. ``slices`` maps run ids to their :func:`slice_for_run` when the caller has them already.
    Returns ``{"views", "images"}`` (what was asked for, cached or not)."""
    from core.models.embedding_cache import View, embed_images
    from core.models.encoder_resolution import resolve_encoder

    groups: dict[tuple, dict[str, dict]] = {}
    for run in runs:
        p = run["params"]
        if run["backend"] != "local" or p.get("mode") != "probe" or run["slice"] is None or p.get("tiles"):
            continue
        s = (slices or {}).get(run["id"]) or slice_for_run(store, run)
        spec = s.get("spec") or {}
        view = View.of(s.get("size"), spec.get("fit"), spec.get("resample"))
        groups.setdefault((p.get("encoder"), view), {}).update({m["id"]: m for m in s["members"]})
    images = 0
    for n, ((encoder, view), members) in enumerate(groups.items()):
        ref = resolve_encoder(encoder)

        def relay(done: int, of: int, message: str, n=n) -> None:
            if progress:
                progress(0, len(runs), f"embedding the sweep's images, view {n + 1}/{len(groups)}: {message}")

        embed_images(store, ref, list(members.values()), view, relay, batch_size=64)
        images += len(members)
    return {"views": len(groups), "images": images}


def submit_training(store: Store, slice_refs: list[str], backend: str = "local",
                    params: dict | None = None) -> list[int]:
    """Queue one job per run that is not done, for the app's worker. Returns the run ids (all of them)."""
    run_ids = prepare_runs(store, slice_refs, backend, params)
    for run_id in run_ids:
        if get_run(store, run_id)["status"] in ("queued", "running"):
            job_id = jobs.submit(store, "train", {"run": run_id})
            with store.tx() as conn:
                conn.execute("UPDATE runs SET job_id = ? WHERE id = ?", (job_id, run_id))
    return run_ids


def sweep_status(store: Store, run_ids: Iterable[int]) -> dict:
    """Where a batch of runs stands: ``{"total", status: count…, "job": the running (else next) job id}``."""
    runs = list_runs(store, list(run_ids))
    out: dict[str, Any] = {"total": len(runs), **{s: 0 for s in STATUSES}, "job": None}
    for r in runs:
        out[r["status"]] += 1
    active = [r for r in runs if r["status"] in ("running", "queued") and r["job_id"]]
    active.sort(key=lambda r: (r["status"] != "running", r["id"]))
    if active:
        out["job"] = active[0]["job_id"]
    return out


def cancel_run(store: Store, run_id: int) -> dict:
    """Stop a queued or running run (its job is cancelled; a running one stops at its next progress report)."""
    run = get_run(store, run_id)
    if run["status"] not in ("queued", "running"):
        raise InvalidInput(f"run {run['id']} is {run['status']}: only queued or running runs can be cancelled")
    if run["job_id"]:
        jobs.cancel(store, run["job_id"])
    with store.tx() as conn:
        conn.execute("UPDATE runs SET status = 'cancelled', error = 'cancelled by the user', finished = ? "
                     "WHERE id = ? AND status IN ('queued', 'running')", (now(), run["id"]))
    return get_run(store, run["id"])


def retry_run(store: Store, run_id: int) -> dict:
    """Queue a failed or cancelled run again (a new job for the worker)."""
    run = get_run(store, run_id)
    if run["status"] not in ("failed", "cancelled"):
        raise InvalidInput(f"run {run['id']} is {run['status']}: only failed or cancelled runs can be retried")
    with store.tx() as conn:
        _reset(conn, run["id"])
    job_id = jobs.submit(store, "train", {"run": run["id"]})
    with store.tx() as conn:
        conn.execute("UPDATE runs SET job_id = ? WHERE id = ?", (job_id, run["id"]))
    return get_run(store, run["id"])


def slice_for_run(store: Store, run: dict) -> dict:
    """The slice a backend trains on: the slice with ``tags`` and ``members``, or the zero-shot pseudo-slice."""
    if run["slice"] is None:
        p = run["params"]
        return {"id": None, "name": run["slice_name"], "hash": None, "count_per_tag": 0, "size": p.get("size"),
                "spec": {"fit": p.get("fit", "crop"), "resample": p.get("resample", "lanczos")},
                "real_fraction": None, "repeat": 0, "images": [], "tags": list(p.get("tags") or []), "members": []}
    s = slicing.get_slice(store, run["slice"], overlap=False)
    members = store.query(
        "SELECT i.id, i.tag, i.source, i.path FROM slice_images si JOIN images i ON i.id = si.image_id "
        "WHERE si.slice_id = ? ORDER BY si.position", (s["id"],))
    root = f"{store.root}{os.sep}"  # string joins: a Path per member cost more than the probe's own fit on small slices
    for m in members:
        m["path"] = root + m["path"]
    s["members"] = members
    s["tags"] = sorted({m["tag"] for m in members})
    return s


def _given_px(store: Store, run: dict) -> Optional[int]:
    """The side of the images a run's backend received: the slice's size, else the largest shorter side
    among its members (original size)."""
    if run.get("size"):
        return int(run["size"])
    if run["slice"] is None:
        return None
    row = store.query_one("SELECT MAX(MIN(i.width, i.height)) AS px FROM slice_images si JOIN images i "
                          "ON i.id = si.image_id WHERE si.slice_id = ?", (run["slice"],))
    return int(row["px"]) if row and row["px"] else None


def _finish(store: Store, run_id: int, **values: Any) -> None:
    cols = ", ".join(f"{k} = ?" for k in values)
    with store.tx() as conn:
        conn.execute(f"UPDATE runs SET {cols} WHERE id = ? AND status = 'running'", (*values.values(), run_id))


def run_train_job(ctx: jobs.JobContext) -> dict:
    """Job handler (kind ``train``): train run ``ctx.params["run"]`` unless it is already done."""
    store = ctx.store
    run = get_run(store, ctx.params["run"])
    if run["status"] in ("done", "cancelled"):
        return {"run": run["id"], "status": run["status"], "skipped": True}
    with store.tx() as conn:
        conn.execute("UPDATE runs SET status = 'running', started = ?, finished = NULL, error = NULL, job_id = ? "
                     "WHERE id = ?", (now(), ctx.job_id, run["id"]))
    relay = getattr(_foreground, "relay", None)

    def report(done: int, total: int, message: str = "") -> None:
        if relay:
            relay(done, total, message)
        ctx.progress(done, total, message)

    try:
        report(0, 1, "starting")
        held = getattr(_foreground, "slices", None) or {}  # a foreground sweep read them once, up front
        out = get_trainer(run["backend"]).train(store, held.pop(run["id"], None) or slice_for_run(store, run),
                                                run["params"], report)
    except JobCancelled:
        _finish(store, run["id"], status="cancelled", error="cancelled by the user", finished=now())
        raise
    except BaseException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _finish(store, run["id"], status="failed", error=redact(message)[:500], finished=now())
        raise
    metrics = dict(out.get("metrics") or {})
    if metrics.get("input_px") is None:  # a backend that does not say (Azure): the side it was given
        metrics["input_px"] = _given_px(store, run)
    with store.tx() as conn:
        conn.execute("DELETE FROM predictions WHERE run_id = ?", (run["id"],))
        conn.execute("UPDATE runs SET status = 'done', artifact = ?, metrics = ?, finished = ? "
                     "WHERE id = ? AND status = 'running'",
                     (out.get("artifact"), json.dumps(metrics, sort_keys=True, default=str), now(), run["id"]))
    return {"run": run["id"], "status": get_run(store, run["id"])["status"], "artifact": out.get("artifact")}
