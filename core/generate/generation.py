"""Stable Diffusion generation with diffusers: text-to-image and image-to-image, batched, idempotent.

A *series* is everything that decides the pixels of its images — tag, prompt and negative templates,
model id and revision, size, steps, guidance, scheduler, init images and strength, fast decode, seed
and prompt expansion. Its key is a hash of those; the batch size is not part of it. Image ``i`` of a
series has seed ``S + i`` and the prompt ``prompts.prompt_for(template, i, S, expansion)``, so a
crashed or extended run makes exactly the missing indices, each committed as soon as it is decoded.

Everything a user can get wrong is checked by :func:`plan` before anything is written. Pipelines are
loaded once per (model, task, device, dtype, variant) per process, never changed after loading, and
each is used under its own lock. torch and diffusers are imported only when a pipeline is needed, so
the CLI's error paths stay fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
import time
from typing import Optional

from core import config
from core.errors import UserError
from core.generate import pipelines, planning
from core.progress import Progress
from core.run import jobs
from core.store.database import Store

# -- validation ----------------------------------------------------------------------------------


# -- pipelines -----------------------------------------------------------------------------------


# -- running -------------------------------------------------------------------------------------

_foreground = threading.local()


def _fit(image, width: int, height: int):
    from PIL import Image, ImageOps

    with Image.open(image) as im:
        return ImageOps.fit(im.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def batches_of(missing: list[int], batch_size: int) -> list[list[int]]:
    """The pipeline calls a run makes: the missing indices in order, ``batch_size`` at a time."""
    return [missing[k:k + batch_size] for k in range(0, len(missing), batch_size)]


def _save(ctx: jobs.JobContext, pl: planning.Plan, i: int, image, text: str, neg: str, *, device: str, dtype: str,
          scheduler: str, engine: Optional[str] = None) -> bool:
    """Commit image ``i`` of the series (file, then row). Returns whether a new image was stored."""
    s = pl.spec
    extra = {"device": device, "dtype": dtype, "expansion": s.expansion, "template": pl.template,
             "batch_size": s.batch_size}
    if pl.init_hashes:
        extra.update(init_image=pl.init_hashes[i % len(pl.init_hashes)], strength=s.strength)
    if pl.taesd:
        extra["fast_decode"] = pl.taesd
    if engine:
        extra["engine"] = engine
    _, created = ctx.store.add_image(
        image, tag=s.tag, source="synthetic", extra=extra, model_id=pl.model.id,
        model_revision=pl.model.revision, prompt=text, negative=neg, seed=s.seed + i, steps=s.steps,
        guidance=s.guidance, scheduler=scheduler, series=pl.series, series_index=i, job_id=ctx.job_id,
    )
    return created


def run_generate_job(ctx: jobs.JobContext) -> dict:
    """Job handler ``generate``: make the missing images of the job's series, committing each one.

    With ``workers`` in the params the pipeline calls run on that many Ray actors
    (:mod:`core.generate.remote` on :mod:`core.run.pool`); this process still decides what is missing and writes every image.
    """
    p = ctx.params
    spec = planning.GenerationSpec(**{**p["spec"], "init_images": tuple(p["spec"].get("init_images") or ())})
    pl = planning.plan(ctx.store, spec, template=p["template"], negative=p["negative"])
    s = pl.spec
    workers = int(p.get("workers") or 0)
    existing = ctx.store.series_indices(pl.series)
    missing = [i for i in range(s.count) if i not in existing]
    skipped = s.count - len(missing)
    user_progress: Optional[Progress] = getattr(_foreground, "progress", None)

    def report(done: int, message: str, force: bool = False) -> None:
        ctx.progress(done, len(missing), message, force=force)
        if user_progress:
            user_progress(done, len(missing), message)

    where = f" on {workers} Ray worker(s)" if workers else ""
    report(0, f"loading {pl.model.id}{where}" + (f" ({skipped} already exist)" if skipped else ""), force=True)
    if missing and s.batch_size is None:
        s = dataclasses.replace(s, batch_size=pipelines.default_batch_size(config.device()))
        pl = dataclasses.replace(pl, spec=s)
    inits = [_fit(path, s.width, s.height) for path in s.init_images] if missing else []
    generated = duplicates = 0
    if workers and missing:
        from PIL import Image

        from core.generate.remote import render_on_cluster
        from core.store.database import png_bytes

        results = render_on_cluster(pl, batches_of(missing, s.batch_size),
                                    [png_bytes(im) for im in inits], workers,
                                    tick=lambda: ctx.check_cancelled())
        have = set(existing)
        with contextlib.closing(results):
            for result in results:
                for item in result["images"]:
                    if item["index"] in have:
                        continue
                    have.add(item["index"])
                    with Image.open(io.BytesIO(item["png"])) as raw:
                        image = raw.convert("RGB")
                    created = _save(ctx, pl, item["index"], image, item["prompt"], item["negative"],
                                    device=result["device"], dtype=result["dtype"], scheduler=result["scheduler"],
                                    engine="ray")
                    generated += 1
                    duplicates += 0 if created else 1
                    report(generated, f"image {item['index'] + 1} of {s.count} saved{where}")
    elif missing:
        device = config.device()
        loaded = pipelines.get_pipeline(pl.model, pl.task, device, scheduler=s.scheduler, taesd=pl.taesd, compile=s.compile)
        steps_run = int(s.steps * s.strength) if inits else s.steps
        for chunk in batches_of(missing, s.batch_size):
            label = f"image {chunk[0] + 1}" + (f"–{chunk[-1] + 1}" if len(chunk) > 1 else "") + f" of {s.count}"

            def on_step(pipe, step, timestep, tensors, _label=label, _done=generated):
                report(_done, f"{_label}: step {step + 1}/{steps_run}")
                return tensors

            for i, image, text, neg in pipelines.render_batch(pl, loaded, chunk, inits, on_step):
                created = _save(ctx, pl, i, image, text, neg, device=device, dtype=pipelines.dtype_name(device),
                                scheduler=type(loaded.pipe.scheduler).__name__)
                generated += 1
                duplicates += 0 if created else 1
                report(generated, f"{label} saved")
    report(len(missing), "done", force=True)
    ids = ctx.store.series_indices(pl.series)
    return {
        "job": ctx.job_id, "generated": generated, "skipped": skipped, "duplicates": duplicates,
        "series": pl.series, "images": [ids[i] for i in range(s.count) if i in ids],
        "engine": "ray" if workers else "local", "workers": workers,
    }


def _job_params(store: Store, spec: planning.GenerationSpec, workers: int) -> dict:
    from core.run import cluster

    workers = cluster.check_workers(workers)
    params = planning.plan(store, spec).job_params()
    if workers:
        cluster.ensure_reachable()
        params["workers"] = workers
    return params


def submit_generation(store: Store, spec: planning.GenerationSpec, workers: int = 0) -> int:
    """Validate a spec and queue its job for the app's worker thread. Returns the job id.

    ``workers`` > 0 runs the pipeline calls on that many Ray actors (the job still writes the store).
    """
    return jobs.submit(store, "generate", _job_params(store, spec, workers))


def generate(store: Store, spec: planning.GenerationSpec, progress: Optional[Progress] = None, workers: int = 0) -> dict:
    """Validate, then run a generation job in this thread (the CLI's path).

    Returns ``{"job", "generated", "skipped", "images": [ids of the series, in index order], …}``.
    Nothing is written when the spec is invalid. ``workers`` > 0: on that many Ray actors
    (``"engine": "ray"`` in the result).
    """
    job_id = jobs.submit(store, "generate", _job_params(store, spec, workers), claim=True)
    _foreground.progress = progress
    started = time.monotonic()
    try:
        job = jobs.run_job(store, job_id)
    finally:
        _foreground.progress = None
    if job["status"] == "cancelled":
        have = len(store.series_indices(job["params"]["series"]))
        raise UserError(f"job {job_id} was cancelled with {have} of {spec.count} images made; "
                        "run the same command again to finish")
    result = dict(job["result"] or {})
    result["seconds"] = round(time.monotonic() - started, 3)
    return result
