"""Results the moment a run ends: the follow-on evaluation job, again when the test photos change, and
`train --json` carrying each finished run's accuracy."""

from __future__ import annotations

import json
import shutil

from PIL import Image

from core.analysis import autoeval, evaluation
from core.cli.main import main
from core.run import job_threads, jobs
from core.train import training


def _count(store, table: str) -> int:
    return store.query_one(f"SELECT COUNT(*) AS n FROM {table}")["n"]


def _run_worker(store, job_id: int, timeout: float = 120) -> dict:
    worker = job_threads.Worker(store, poll_seconds=0.05)
    worker.start()
    try:
        return jobs.wait(store, job_id, timeout=timeout)
    finally:
        worker.stop()


def test_runs_finished_by_the_worker_are_scored_by_a_follow_on_job(digits):
    ids = training.submit_training(digits, ["digits"], "local", {"encoder": "cnn-small", "epochs": 1})
    last_train = training.get_run(digits, ids[-1])["job_id"]
    _run_worker(digits, last_train)
    scoring = jobs.list_jobs(digits, kind=autoeval.KIND)
    # scoring jumps the queue (issue 25): a follow-on job per finished run at most, never one per run twice
    assert 1 <= len(scoring) <= len(ids)
    for job in scoring:
        assert _run_worker(digits, job["id"])["status"] == "done"
    evaluated = [i for job in jobs.list_jobs(digits, kind=autoeval.KIND) for i in job["result"]["evaluated"]]
    assert sorted(evaluated) == sorted(ids)
    runs = training.list_runs(digits, ids)
    assert all(r["accuracy"] is not None and 0 <= r["accuracy"] <= 1 for r in runs)
    assert autoeval.pending_runs(digits) == [] and autoeval.submit_if_needed(digits) is None

    # a new test photo changes the test set: every run is pending again, and one job scores them again
    digits.add_image(Image.new("RGB", (32, 32), "white"), tag="zero", source="test")
    assert sorted(autoeval.pending_runs(digits)) == sorted(ids)
    again = autoeval.submit_if_needed(digits)
    assert again is not None and autoeval.submit_if_needed(digits) == again  # no duplicate job
    assert _run_worker(digits, again)["status"] == "done"
    assert not any(r["stale"] for r in evaluation.results(digits))
    assert {r["test_images"] for r in evaluation.results(digits)} == {121}


def test_without_test_photos_nothing_is_queued_and_nothing_changes(digits):
    for image in digits.list_images(source="test"):
        digits.conn.execute("DELETE FROM images WHERE id = ?", (image["id"],))
    digits.conn.commit()
    [run] = training.train(digits, ["digits"], params={"encoder": "cnn-small", "epochs": 1})[:1]
    before = (_count(digits, "jobs"), _count(digits, "predictions"))
    assert autoeval.pending_runs(digits) == [] and autoeval.submit_if_needed(digits) is None
    assert autoeval.evaluate_runs(digits, [run["id"]]) == {"evaluated": [], "errors": {}}
    assert (_count(digits, "jobs"), _count(digits, "predictions")) == before
    assert digits.integrity_check() == "ok"


def test_a_run_that_cannot_be_scored_is_reported_and_the_others_are_scored(digits):
    runs = training.train(digits, ["digits"], params={"encoder": "cnn-small", "epochs": 1})
    broken = training.get_run(digits, runs[0]["id"])
    shutil.rmtree(broken["artifact"])
    job = _run_worker(digits, autoeval.submit_if_needed(digits))
    assert job["status"] == "done"
    assert sorted(job["result"]["evaluated"]) == [r["id"] for r in runs[1:]]
    assert list(job["result"]["errors"]) == [str(broken["id"])] and "model" in job["result"]["errors"][str(broken["id"])]
    assert training.get_run(digits, broken["id"])["accuracy"] is None
    assert autoeval.pending_runs(digits) == [broken["id"]]  # left for the next follow-on job


def test_train_json_carries_each_finished_runs_accuracy(digits, capsys):
    rc = main(["--home", str(digits.root), "train", "--slices", "digits", "--encoder", "cnn-small", "--epochs", "1",
               "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    runs = json.loads(out.strip().splitlines()[-1])["runs"]
    assert len(runs) == 3 and all(r["status"] == "done" for r in runs)
    stored = {r["run"]: r["accuracy"] for r in evaluation.results(digits)}
    assert {r["id"]: r["accuracy"] for r in runs} == stored and all(0 <= a <= 1 for a in stored.values())
    assert "accuracy_ci" in runs[0]
    assert jobs.list_jobs(digits, kind=autoeval.KIND) == []  # the CLI scores in the foreground, no job left over


def test_a_finished_runs_score_does_not_wait_behind_queued_training(digits):
    """Several training runs queued: each run is scored before the next queued run finishes (the follow-on
    ``evaluate`` job is claimed before the queued ``train`` jobs)."""
    import time

    ids = training.submit_training(digits, ["digits"], "local", {"encoder": "cnn-small", "epochs": 1})
    assert len(ids) >= 3
    worker = job_threads.Worker(digits, poll_seconds=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 120
        checked = 0
        while checked < len(ids) - 1 and time.monotonic() < deadline:
            runs = {r["id"]: r for r in training.list_runs(digits, ids)}
            for earlier, later in zip(ids, ids[1:]):
                if runs[later]["status"] == "done" and earlier in ids[checked:checked + 1]:
                    # the later run has finished: the earlier one's accuracy must already be stored
                    assert runs[earlier]["accuracy"] is not None, (earlier, later)
                    checked += 1
            time.sleep(0.02)
        assert checked == len(ids) - 1
    finally:
        worker.stop()
    last_train = jobs.get_job(digits, training.get_run(digits, ids[-1])["job_id"])
    first_scoring = min(jobs.list_jobs(digits, kind=autoeval.KIND), key=lambda j: j["id"])
    assert first_scoring["id"] > min(training.get_run(digits, i)["job_id"] for i in ids)  # queued after…
    assert first_scoring["started"] is not None and first_scoring["started"] <= last_train["started"]  # …ran before
