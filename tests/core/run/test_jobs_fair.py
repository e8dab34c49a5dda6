"""The one worker serves demo workspaces round-robin, not first-come; jobs and runs record who started them."""

from __future__ import annotations

from core.run import job_threads, jobs, registry
from core.store.database import Store
from core.store.records import now

registry.register("count_up", "tests.core.job_handlers:count_up")


def _queue(store, n):
    return [jobs.submit(store, "count_up", {"n": 1, "k": k}) for k in range(n)]


def test_fair_share_alternates_between_two_workspaces(tmp_path):
    a, b = Store(tmp_path / "ws" / "a"), Store(tmp_path / "ws" / "b")
    a_jobs = _queue(a, 3)  # A queued everything first
    b_jobs = _queue(b, 2)
    worker = job_threads.FairWorker(lambda: [b, a])
    while worker.step():
        pass
    order = [(root.rsplit("/", 1)[-1], job) for root, job in worker.served]
    assert order == [("a", a_jobs[0]), ("b", b_jobs[0]), ("a", a_jobs[1]), ("b", b_jobs[1]), ("a", a_jobs[2])]
    assert all(jobs.get_job(s, j)["status"] == "done" for s, ids in ((a, a_jobs), (b, b_jobs)) for j in ids)


def test_a_workspace_that_joins_later_is_served_next(tmp_path):
    a, b = Store(tmp_path / "ws" / "a"), Store(tmp_path / "ws" / "b")
    a_jobs = _queue(a, 3)
    stores = [a]
    worker = job_threads.FairWorker(lambda: stores)
    assert worker.step()
    stores.append(b)
    b_jobs = _queue(b, 1)
    while worker.step():
        pass
    assert [job for _, job in worker.served] == [a_jobs[0], b_jobs[0], a_jobs[1], a_jobs[2]]


def test_fair_worker_thread_runs_every_workspace_to_the_end(tmp_path):
    stores = [Store(tmp_path / "ws" / name) for name in "abc"]
    queued = {s.root: _queue(s, 2) for s in stores}
    worker = job_threads.FairWorker(lambda: stores, poll_seconds=0.05)
    worker.start()
    try:
        for s in stores:
            for job_id in queued[s.root]:
                assert jobs.wait(s, job_id, timeout=60)["status"] == "done"
    finally:
        worker.stop()
    firsts = [root.rsplit("/", 1)[-1] for root, _ in worker.served[:3]]
    assert firsts == ["a", "b", "c"]


def test_jobs_and_their_runs_record_who_started_them(store, monkeypatch):
    monkeypatch.delenv("SYNTHLAB_USER", raising=False)
    jobs.set_actor("ana@example.com")
    try:
        job_id = jobs.submit(store, "count_up", {"n": 1})
    finally:
        jobs.set_actor(None)
    with store.tx() as conn:
        conn.execute("INSERT INTO runs(slice_id, backend, job_id, created) VALUES (NULL, 'local', ?, ?)",
                     (job_id, now()))
    jobs.run_job(store, job_id)
    assert jobs.get_job(store, job_id)["started_by"] == "ana@example.com"
    assert store.query_one("SELECT started_by FROM runs WHERE job_id = ?", (job_id,))["started_by"] == "ana@example.com"
    monkeypatch.setenv("SYNTHLAB_USER", "cli-bob")
    other = jobs.submit(store, "count_up", {"n": 2})
    assert jobs.get_job(store, other)["started_by"] == "cli-bob"
