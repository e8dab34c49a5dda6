"""The clothing sample as a job (issue 25 item 1): a load that stopped half way — its process killed, or the user
cancelled it — is seen as incomplete, the Overview (and Data, Generate) offer to finish it, and finishing imports
only what is missing: every planned photo once, none twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.data import sample_jobs, samples
from core.errors import UserError
from core.run import jobs
from core.store.database import Store
from tests.datasets import fashion_available
from tests.pages.apptest import open_page, texts

pytestmark = pytest.mark.skipif(not fashion_available(), reason="dataset-fashion-mnist is not installed (.ci/run)")
ROOT = Path(__file__).resolve().parents[3]
TAGS = ("jeans", "shoes", "shirts", "other")


def sample_rows(store: Store) -> list[tuple]:
    return [(r["tag"], r["source"], r["split"], r["ix"]) for r in store.query(
        "SELECT tag, source, json_extract(extra, '$.split') AS split, json_extract(extra, '$.index') AS ix "
        "FROM images WHERE json_extract(extra, '$.dataset') = 'fashion-mnist'")]


def assert_whole(store: Store, per_tag: int, test_per_tag: int) -> None:
    """Every planned photo is there once: the counts per tag, and no (split, row) stored twice."""
    rows = sample_rows(store)
    assert len(rows) == len(set(rows)) == 4 * (per_tag + test_per_tag)
    for tag in TAGS:
        assert store.tag_counts(tag) == {"synthetic": 0, "real": per_tag, "test": test_per_tag}
    assert not sample_jobs.state(store).incomplete


def primary(at) -> list[str]:
    return [b.label for b in at.button if b.proto.type == "primary"]


def follow(at, store: Store, timeout: float = 120) -> dict:
    """Wait for the newest sample job to end (the app's worker thread runs it), then run the page again."""
    job = jobs.wait(store, jobs.list_jobs(store, kind=sample_jobs.JOB_KIND, limit=1)[0]["id"], timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return job


def test_a_cancelled_load_is_offered_on_every_page_and_finished_without_duplicates(home):
    store = Store(home)

    def cancel_at_30(done: int, total: int, message: str) -> None:
        if done == 30:
            jobs.cancel(store, jobs.list_jobs(store, kind="sample", limit=1)[0]["id"])

    with pytest.raises(UserError, match=r"was cancelled at 31 of 100 photos"):
        sample_jobs.load_sample(store, progress=cancel_at_30, per_tag=20, test_per_tag=5, size=64)
    state = sample_jobs.state(store)
    assert state.incomplete and state.job is None and len(sample_rows(store)) == 31
    assert state.missing() == (
        "jeans 0/5 test · shoes 11/20 real, 0/5 test · shirts 0/20 real, 0/5 test · other 0/20 real, 0/5 test")

    for name, button in (("data", "dv_sample"), ("generate", "gen_sample")):  # not hidden off the Overview either
        page = open_page(name)
        assert page.button(key=button).label == "Finish loading the sample"
        assert "Finish loading the clothing sample" in texts(page.subheader)

    at = open_page("overview")
    assert primary(at) == ["Finish loading the sample"]
    assert "Finish loading the clothing sample" in texts(at.subheader)
    assert "shoes 11/20 real, 0/5 test" in texts(at.caption)
    at.button(key="ov_next").click().run()
    assert not at.exception and not at.error, texts(at.error)
    job = follow(at, store)
    assert job["status"] == "done" and job["params"]["per_tag"] == 20 and job["params"]["size"] == 64
    assert "Clothing sample loaded: 69 photos (31 already there)" in texts(at.success)
    assert_whole(store, 20, 5)
    assert primary(at) == ["Cut the preset slices"] and "Finish loading the clothing sample" not in texts(at.subheader)


def test_a_killed_load_is_offered_as_unfinished_and_finishes_without_duplicates(home):
    """The CLI's load killed with ``kill -9`` half way: its job is *interrupted*, the Overview shows the sample
    as unfinished (the app's worker resumes the job when it starts, or the button does), and the end state holds
    every planned photo once."""
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), "sample", "clothing", "--per-tag", "60",
                             "--test-per-tag", "10", "--size", "64"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    store = Store(home)
    deadline = time.monotonic() + 120
    try:
        while len(sample_rows(store)) < 40:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the load did not start"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    had = len(sample_rows(store))
    assert 40 <= had < 280
    [job] = jobs.list_jobs(store, kind="sample")
    assert job["status"] == "interrupted"
    state = sample_jobs.state(store)
    assert state.incomplete and state.job is None and state.plan["per_tag"] == 60 and "0/10 test" in state.missing()

    at = open_page("overview")  # starts the app's worker, which puts the interrupted load back in the queue
    assert "Finish loading the clothing sample" in texts(at.subheader) or "Loading the clothing sample" in texts(at.subheader)
    if "Finish loading the sample" in primary(at):
        at.button(key="ov_next").click().run()
    done = follow(at, store)
    assert done["id"] == job["id"] and done["status"] == "done"  # the same job, resumed
    assert done["result"]["imported"] + done["result"]["duplicates"] == 280 and done["result"]["duplicates"] >= had
    assert_whole(store, 60, 10)
    assert "Finish loading the clothing sample" not in texts(at.subheader)


def test_a_sample_cut_short_before_loads_were_jobs_is_seen_as_incomplete(store):
    """No job on record (an older store, or the experiment's own load): the plan is what the stored photos imply,
    and missing test photos count as missing."""

    class Stop(Exception):
        pass

    def stop_at_12(done: int, total: int, message: str) -> None:
        if done == 12:
            raise Stop

    with pytest.raises(Stop):
        samples.load_clothing_sample(store, per_tag=12, test_per_tag=4, size=32, progress=stop_at_12)
    state = sample_jobs.state(store)
    assert state.plan == sample_jobs.plan(12, samples.DEFAULT_TEST_PER_TAG, 32) and state.job is None
    assert state.incomplete and state.missing().startswith("jeans 0/50 test · shoes 0/12 real, 0/50 test")
    assert sample_jobs.state(Store(store.root.parent / "empty")).empty


def test_submitting_the_same_load_again_queues_the_interrupted_job_once_more(store):
    gone = subprocess.Popen(["true"])
    gone.wait()
    job_id = sample_jobs.submit_sample(store, per_tag=2, test_per_tag=0, size=32)
    with store.tx() as conn:  # claimed by a process that is gone
        conn.execute("UPDATE jobs SET status = 'running', owner = ? WHERE id = ?",
                     (f"{socket.gethostname()}:{gone.pid}", job_id))
    assert jobs.list_jobs(store, kind="sample")[0]["status"] == "interrupted"
    assert sample_jobs.submit_sample(store, per_tag=2, test_per_tag=0, size=32) == job_id
    assert jobs.get_job(store, job_id)["status"] == "queued"


def test_while_the_whole_experiment_loads_the_sample_nothing_else_offers_to(store):
    """The experiment job loads the sample as its first stage: a half-loaded sample then is its work, not a
    dead end to finish."""
    samples.load_clothing_sample(store, per_tag=3, test_per_tag=0, size=32)
    assert sample_jobs.state(store).incomplete  # no test photos
    with store.tx() as conn:
        conn.execute("INSERT INTO jobs(kind, params, params_key, status, created) VALUES "
                     "('experiment', '{}', 'experiment:{}', 'running', '')")
    with store.tx() as conn:
        conn.execute("UPDATE jobs SET owner = ? WHERE kind = 'experiment'", (jobs.owner_id(),))
    busy = sample_jobs.state(store)
    assert busy.busy and not busy.incomplete and not busy.empty and busy.job is None
