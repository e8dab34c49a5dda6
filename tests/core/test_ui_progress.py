"""Progress shown by the pages: an ETA from work only (a model load is its own phase) and one overall number
across a batch of jobs."""

from __future__ import annotations

from core.run import jobs
from core.views.job_rate import rate_text


def _job(done: int, total: int, message: str) -> dict:
    return {"id": 1, "done": done, "total": total, "message": message}


def test_the_eta_never_counts_the_model_load():
    # 100 s of model load, then 2 s per image of 4: the ETA must be ~6 s after the first image, not ~300 s
    text, first = rate_text(_job(0, 4, "loading runwayml/stable-diffusion-v1-5"), None, 0.0)
    assert text == " · loading the model" and first is None
    text, first = rate_text(_job(0, 4, "image 1 of 4: step 1/10"), None, 100.0)
    assert "measuring" in text and first == (100.0, 0.1)
    text, first = rate_text(_job(1, 4, "image 2 of 4: step 1/10"), first, 102.0)
    rate = float(text.split("/s")[0].split("· ")[-1])
    eta = float(text.split("ETA ")[1].split(" s")[0])
    assert rate == 0.5 and 5 <= eta <= 7, text


def test_batch_totals_count_planned_work_of_jobs_not_started(store):
    a = jobs.submit(store, "train", {"run": 1, "spec": {"count": 10}})
    b = jobs.submit(store, "train", {"run": 2, "spec": {"count": 30}})
    with store.tx() as conn:
        conn.execute("UPDATE jobs SET status = 'running', done = 5, total = 10 WHERE id = ?", (a,))
    assert jobs.batch_totals(store, [a, b]) == {"jobs": 2, "done": 5, "total": 40, "finished": 0, "failed": 0}
    with store.tx() as conn:
        conn.execute("UPDATE jobs SET status = 'done', done = 10 WHERE id = ?", (a,))
        conn.execute("UPDATE jobs SET status = 'failed' WHERE id = ?", (b,))
    assert jobs.batch_totals(store, [a, b, 999]) == {"jobs": 2, "done": 10, "total": 40, "finished": 2, "failed": 1}
