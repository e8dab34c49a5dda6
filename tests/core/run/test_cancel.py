"""``jobs cancel ID`` stops any job within 5 s and says so: a message line, status ``cancelled``."""

from __future__ import annotations

import json
import time

from core.cli.main import main
from core.run import job_threads, jobs, registry

registry.register("busy-silent", "tests.core.job_handlers:busy_silent")
registry.register("swallows-errors", "tests.core.job_handlers:swallows_errors")


def _running(store, kind: str) -> tuple[job_threads.Worker, int]:
    job_id = jobs.submit(store, kind, {"seconds": 60})
    worker = job_threads.Worker(store, poll_seconds=0.05)
    worker.start()
    deadline = time.monotonic() + 10
    while jobs.get_job(store, job_id)["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert jobs.get_job(store, job_id)["status"] == "running"
    return worker, job_id


def test_cli_cancel_stops_a_job_that_never_reports_within_5_s(store, capsys):
    for kind in ("busy-silent", "swallows-errors"):
        worker, job_id = _running(store, kind)
        try:
            started = time.monotonic()
            rc = main(["--home", str(store.root), "jobs", "cancel", str(job_id), "--json"])
            took = time.monotonic() - started
            out, err = capsys.readouterr()
        finally:
            worker.stop()
        assert rc == 0, err
        lines = out.strip().splitlines()
        assert lines[0] == f"job {job_id} ({kind}) cancelled"
        assert json.loads(lines[-1])["job"]["status"] == "cancelled"
        assert took < 5, took
        job = jobs.get_job(store, job_id)
        assert job["status"] == "cancelled" and job["error"] == "cancelled by the user"
        assert not worker.is_alive()  # the worker thread itself survived to stop cleanly


def test_cancel_of_a_job_whose_process_is_gone_ends_it_cancelled_not_interrupted(store, capsys):
    job_id = jobs.submit(store, "busy-silent", {"seconds": 60})
    with store.tx() as conn:  # running, owned by a process that no longer exists
        conn.execute("UPDATE jobs SET status = 'running', owner = 'nohost-here:999999' WHERE id = ?", (job_id,))
    import socket
    with store.tx() as conn:
        conn.execute("UPDATE jobs SET owner = ? WHERE id = ?", (f"{socket.gethostname()}:999999", job_id))
    assert jobs.list_jobs(store, status="interrupted")[0]["id"] == job_id
    assert main(["--home", str(store.root), "jobs", "cancel", str(job_id)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[0] == f"job {job_id} (busy-silent) cancelled"
    assert jobs.get_job(store, job_id)["status"] == "cancelled"
    assert jobs.requeue_orphans(store) == []  # a restarting worker does not resume it


def test_cancel_of_a_finished_job_says_so_and_changes_nothing(store, capsys):
    registry.register("count-up", "tests.core.job_handlers:count_up")
    job_id = jobs.submit(store, "count-up", {"n": 2}, claim=True)
    jobs.run_job(store, job_id)
    before = jobs.get_job(store, job_id)
    assert main(["--home", str(store.root), "jobs", "cancel", str(job_id)]) == 0
    assert capsys.readouterr().out.strip() == f"job {job_id} is already done: nothing to cancel"
    assert jobs.get_job(store, job_id) == before


def test_cancel_of_an_unknown_job_is_a_user_error(store, capsys):
    assert main(["--home", str(store.root), "jobs", "cancel", "999"]) == 2
    out, err = capsys.readouterr()
    assert err.strip().splitlines()[-1].endswith("no job 999")
