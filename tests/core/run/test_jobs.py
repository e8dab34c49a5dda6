import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core.errors import InvalidInput, UserError
from core.run import job_threads, jobs, registry
from core.store.database import Store

registry.register("count-up", "tests.core.job_handlers:count_up")
registry.register("refuse", "tests.core.job_handlers:refuse")
registry.register("crash", "tests.core.job_handlers:crash")


def _steps(store, job_id):
    return store.conn.execute("SELECT COUNT(*) FROM steps WHERE job = ?", (job_id,)).fetchone()[0]


def test_foreground_job_runs_to_done_with_progress(store):
    job_id = jobs.submit(store, "count-up", {"n": 3}, claim=True)
    job = jobs.run_job(store, job_id)
    assert job["status"] == "done" and job["result"] == {"steps": 3}
    assert (job["done"], job["total"]) == (3, 3)
    assert _steps(store, job_id) == 3


def test_identical_unfinished_job_is_reused_not_duplicated(store):
    first = jobs.submit(store, "count-up", {"n": 2})
    assert jobs.submit(store, "count-up", {"n": 2}) == first
    assert jobs.submit(store, "count-up", {"n": 5}) != first


def test_worker_runs_queued_jobs_and_cancel_stops_a_running_one(store):
    worker = job_threads.Worker(store, poll_seconds=0.05)
    worker.start()
    try:
        quick = jobs.submit(store, "count-up", {"n": 2})
        assert jobs.wait(store, quick, timeout=20)["status"] == "done"
        slow = jobs.submit(store, "count-up", {"n": 500, "delay": 0.02})
        deadline = time.monotonic() + 20
        while jobs.get_job(store, slow)["done"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        jobs.cancel(store, slow)
        job = jobs.wait(store, slow, timeout=20)
        assert job["status"] == "cancelled"
        assert 3 <= _steps(store, slow) < 500
    finally:
        worker.stop()


def test_cancelling_a_queued_job_ends_it_at_once(store):
    job_id = jobs.submit(store, "count-up", {"n": 2})
    assert jobs.cancel(store, job_id)["status"] == "cancelled"
    assert jobs.retry(store, job_id)["status"] == "queued"


def test_user_error_fails_the_job_with_its_message(store):
    job_id = jobs.submit(store, "refuse", {}, claim=True)
    with pytest.raises(InvalidInput):
        jobs.run_job(store, job_id)
    job = jobs.get_job(store, job_id)
    assert job["status"] == "failed" and job["error"] == "that will not do"


def test_crash_fails_the_job_and_logs_the_traceback(store):
    job_id = jobs.submit(store, "crash", {}, claim=True)
    with pytest.raises(RuntimeError):
        jobs.run_job(store, job_id)
    assert jobs.get_job(store, job_id)["error"] == "RuntimeError: boom"
    assert "RuntimeError: boom" in (store.root / "logs" / "jobs.log").read_text()


def test_unknown_job_kind_is_refused(store):
    with pytest.raises(UserError, match="unknown job kind"):
        jobs.submit(store, "nope", {})


def test_job_of_a_killed_process_resumes_where_it_stopped(home):
    script = textwrap.dedent(
        f"""
        from core.run import job_threads, jobs, registry
        from core.store.database import Store
        registry.register("count-up", "tests.core.job_handlers:count_up")
        s = Store({str(home)!r})
        job = jobs.submit(s, "count-up", {{"n": 40, "delay": 0.05}}, claim=True)
        print(job, flush=True)
        jobs.run_job(s, job)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})
    job_id = int(proc.stdout.readline())
    store = Store(home)
    deadline = time.monotonic() + 30
    while jobs.get_job(store, job_id)["done"] < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert jobs.get_job(store, job_id)["status"] == "running"
    assert jobs.requeue_orphans(store) == [job_id]
    before = _steps(store, job_id)
    assert 5 <= before < 40
    worker = job_threads.Worker(store, poll_seconds=0.05)
    worker.start()
    try:
        assert jobs.wait(store, job_id, timeout=30)["status"] == "done"
    finally:
        worker.stop()
    assert _steps(store, job_id) == 40
    assert store.integrity_check() == "ok"
