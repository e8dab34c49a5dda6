"""Results the moment a run ends: scoring finished runs on the test photos as a follow-on job.

A run that finishes in the app's worker queues one ``evaluate`` job (kind :data:`KIND`, params
``{"auto": True}``, so there is at most one unfinished at a time). The job scores every *pending*
run — finished, with test photos to score, never evaluated or evaluated on an older set of test
photos — and loops until none is left, so runs finishing while it works are scored too. Importing
test photos queues it again (the test set changed, every result went stale). The CLI's ``train``
scores its runs in the foreground instead (:func:`evaluate_runs`).

A run whose scoring fails (a model gone from disk, an Azure key missing) is recorded in the job's
result under ``errors`` and not retried by the same job; it stays pending for the next one.
"""

from __future__ import annotations

from typing import Iterable, Optional

from core.errors import UserError
from core.run import jobs
from core.store.database import Store

KIND = "evaluate"
PARAMS = {"auto": True}


def pending_runs(store: Store) -> list[int]:
    """Finished runs with no result on the current test photos (none when there are no test photos)."""
    from core.analysis.evaluation import results, test_images
    from core.train.training import list_runs

    if not test_images(store):
        return []
    current = {r["run"] for r in results(store) if not r["stale"]}
    return [run["id"] for run in list_runs(store, status="done") if run["id"] not in current]


def active_job(store: Store) -> Optional[int]:
    """The queued or running follow-on evaluation, if any."""
    for job in jobs.list_jobs(store, kind=KIND, limit=10):
        if job["status"] in jobs.ACTIVE:
            return job["id"]
    return None


def submit_if_needed(store: Store) -> Optional[int]:
    """Queue the follow-on evaluation when some finished run lacks a current result. Returns its job id."""
    if not pending_runs(store):
        return None
    return jobs.submit(store, KIND, dict(PARAMS))


def after_import(store: Store, role: str, imported: int) -> Optional[int]:
    """The rule for a changed test set: importing test photos makes every result stale, so the finished runs
    are queued to be scored again (the follow-on job). Other roles change nothing. Returns the job id, if any."""
    if role == "test" and imported:
        return submit_if_needed(store)
    return None


def stale_runs(results: Iterable[dict]) -> list[int]:
    """The runs of ``results`` scored on an older set of test photos."""
    return [r["run"] for r in results if r.get("stale")]


def rescore(store: Store, run_ids: Optional[Iterable[int]] = None) -> None:
    """Score these runs (default: every finished run) now, in the foreground, on the current test photos
    (the Results page's *Evaluate* and *Re-evaluate* for stale results)."""
    from core.analysis.evaluation import evaluate

    evaluate(store, None if run_ids is None else list(run_ids))


def evaluate_runs(store: Store, run_ids: Iterable[int]) -> dict:
    """Score these runs, each on its own, where they are done and not yet scored on the current test
    photos. Returns ``{"evaluated": [run ids], "errors": {run id: message}}``; no test photos, nothing to do."""
    wanted = set(pending_runs(store))
    evaluated, errors = [], {}
    for run_id in run_ids:
        if run_id not in wanted:
            continue
        try:
            from core.analysis.evaluation import evaluate

            evaluate(store, [run_id])
            evaluated.append(run_id)
        except UserError as exc:
            errors[run_id] = str(exc)
    return {"evaluated": evaluated, "errors": errors}


def run_evaluate_job(ctx: jobs.JobContext) -> dict:
    """Job handler (kind ``evaluate``): score pending runs until none is left that this job has not tried."""
    store = ctx.store
    tried: set[int] = set()
    evaluated: list[int] = []
    errors: dict[int, str] = {}
    while True:
        todo = [r for r in pending_runs(store) if r not in tried]
        if not todo:
            break
        base = len(tried)
        for n, run_id in enumerate(todo):
            ctx.progress(base + n, base + len(todo), f"scoring run {run_id} on the test photos")
            tried.add(run_id)
            out = evaluate_runs(store, [run_id])
            evaluated += out["evaluated"]
            errors.update(out["errors"])
    ctx.progress(len(tried), max(len(tried), 1), "evaluated", force=True)
    return {"evaluated": evaluated, "errors": {str(k): v for k, v in errors.items()}}
