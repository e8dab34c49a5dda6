"""Training runs as jobs: reuse, the embedding cache across sweeps, the worker, cancel, retry, errors."""

from __future__ import annotations

import shutil
import time

import pytest

from core.data import slicing
from core.errors import InvalidInput, ModelNotFound
from core.run import job_threads, jobs
from core.train import training


@pytest.fixture
def worker(digits):
    w = job_threads.Worker(digits, poll_seconds=0.05)
    w.start()
    yield w
    w.stop()


def _count(store, table: str) -> int:
    return store.query_one(f"SELECT COUNT(*) AS n FROM {table}")["n"]


def _wait_runs(store, ids, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = training.list_runs(store, ids)
        if all(r["status"] not in ("queued", "running") for r in runs):
            return runs
        time.sleep(0.05)
    raise TimeoutError([r["status"] for r in training.list_runs(store, ids)])


def test_one_run_per_slice_and_asking_again_reuses_them(digits, tiny_clip):
    runs = training.train(digits, ["digits"], params={"encoder": tiny_clip})
    assert [(r["count_per_tag"], r["status"], r["backend"]) for r in runs] == [
        (5, "done", "local"), (20, "done", "local"), (60, "done", "local")]
    assert {"id", "slice", "backend", "status"} <= set(runs[0])
    listed = training.list_runs(digits)
    assert [r["id"] for r in listed] == [r["id"] for r in runs]
    row = listed[2]
    assert (row["size"], row["real_fraction"], row["repeat"], row["mode"]) == (32, 1.0, 0, "probe")
    assert row["artifact"].startswith(str(digits.root / "models")) and row["time"] is not None
    assert row["accuracy"] is None  # not evaluated yet
    jobs_before = _count(digits, "jobs")
    again = training.train(digits, ["digits"], params={"encoder": tiny_clip, "mode": "probe", "C": 1.0})
    assert [r["id"] for r in again] == [r["id"] for r in runs]
    assert _count(digits, "jobs") == jobs_before and _count(digits, "runs") == 3


def test_a_second_sweep_reads_every_embedding_from_the_cache(digits, tiny_clip):
    first = training.train(digits, ["digits"], params={"encoder": tiny_clip, "seed": 0})
    second = training.train(digits, ["digits"], params={"encoder": tiny_clip, "seed": 1})
    assert not {r["id"] for r in first} & {r["id"] for r in second}
    cache = [training.get_run(digits, r["id"])["metrics"]["embedding_cache"] for r in first + second]
    # the sweep's images are embedded once, up front, across its nested slices (5 ⊂ 20 ⊂ 60 per tag):
    # every run, of either sweep, reads its embeddings from the cache
    assert [c["misses"] for c in cache] == [0] * 6
    assert [c["hits"] for c in cache[:3]] == [20, 80, 240]
    assert [c["hits"] for c in cache[3:]] == [20, 80, 240]
    assert _count(digits, "embeddings") == 240


def test_a_foreground_sweep_reads_each_embedding_and_slice_from_the_store_once(digits, tiny_clip):
    statements: list[str] = []
    digits.conn.set_trace_callback(statements.append)
    runs = training.train(digits, ["digits"], params={"encoder": tiny_clip, "seed": 4})
    digits.conn.set_trace_callback(None)
    assert [r["status"] for r in runs] == ["done"] * 3
    # the sweep's 240 images are read in one query up front (the runs of 5, 20 and 60 per tag reuse them in
    # memory); each slice's members are read once, not once for the sweep and again for its run
    assert len([s for s in statements if "FROM embeddings" in s]) == 1
    assert len([s for s in statements if s.startswith("SELECT i.id, i.tag, i.source, i.path FROM slice_images")]) == 3
    after = training.train(digits, ["digits"], params={"encoder": tiny_clip, "seed": 5})
    assert [training.get_run(digits, r["id"])["metrics"]["embedding_cache"]["hits"] for r in after] == [20, 80, 240]


def test_embed_sweep_embeds_the_union_of_a_sweeps_slices_once(digits, tiny_clip):
    ids = training.prepare_runs(digits, ["digits"], params={"encoder": tiny_clip, "seed": 3})
    runs = training.list_runs(digits, ids)
    assert training.embed_sweep(digits, runs) == {"views": 1, "images": 240}
    assert _count(digits, "embeddings") == 240
    cnn = training.list_runs(digits, training.prepare_runs(digits, ["digits"], params={"encoder": "cnn-small"}))
    assert training.embed_sweep(digits, cnn) == {"views": 0, "images": 0}  # not an embedding model


def test_a_slice_with_one_tag_is_refused_and_nothing_is_written(digits, tiny_clip):
    slicing.build_slices(digits, slicing.SliceSpec(name="solo", counts=(5,), size=32, real_fraction=1.0,
                                                   tags=("zero",)))
    with pytest.raises(InvalidInput, match="has images of only one tag \\(zero\\): a classifier needs at least 2 tags"):
        training.train(digits, ["solo"], params={"encoder": tiny_clip})
    assert _count(digits, "runs") == 0 and _count(digits, "jobs") == 0


def test_an_unknown_encoder_is_refused_before_any_run(digits, tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist"):
        training.train(digits, ["digits"], params={"encoder": str(tmp_path / "nowhere")})
    with pytest.raises(InvalidInput, match="pick at least one slice"):
        training.train(digits, [], params={"encoder": "cnn-small"})
    assert _count(digits, "runs") == 0 and _count(digits, "jobs") == 0


def test_zeroshot_is_one_run_without_a_slice(digits, tiny_clip):
    runs = training.train(digits, ["digits"], params={"encoder": tiny_clip, "mode": "zeroshot"})
    assert len(runs) == 1 and runs[0]["slice"] is None and runs[0]["status"] == "done"
    run = training.get_run(digits, runs[0]["id"])
    assert (run["count_per_tag"], run["size"], run["repeat"]) == (0, 32, 0)
    assert run["tags"] == ["one", "three", "two", "zero"] and run["slice_name"].startswith("zero-shot")


def test_the_worker_runs_queued_runs_and_cancel_and_retry_work(digits, tiny_clip):
    ids = training.submit_training(digits, ["digits"], "local", {"encoder": tiny_clip})
    assert [training.get_run(digits, i)["status"] for i in ids] == ["queued"] * 3
    cancelled = training.cancel_run(digits, ids[0])
    assert cancelled["status"] == "cancelled" and jobs.get_job(digits, cancelled["job_id"])["status"] == "cancelled"
    with pytest.raises(InvalidInput, match="only failed or cancelled runs can be retried"):
        training.retry_run(digits, ids[1])
    fresh = job_threads.Worker(digits, poll_seconds=0.05)
    fresh.start()
    try:
        assert [r["status"] for r in _wait_runs(digits, ids)] == ["cancelled", "done", "done"]
        retried = training.retry_run(digits, ids[0])
        assert retried["status"] == "queued" and retried["job_id"] != cancelled["job_id"]
        assert [r["status"] for r in _wait_runs(digits, ids)] == ["done"] * 3
    finally:
        fresh.stop()
    with pytest.raises(InvalidInput, match="only queued or running runs can be cancelled"):
        training.cancel_run(digits, ids[0])
    assert training.sweep_status(digits, ids)["done"] == 3


def test_cancelling_a_running_run_stops_it(digits, worker):
    [run_id] = training.submit_training(digits, ["1"], "local", {"encoder": "cnn-small", "epochs": 1000})
    deadline = time.monotonic() + 60
    while training.get_run(digits, run_id)["status"] != "running" or jobs.get_job(
            digits, training.get_run(digits, run_id)["job_id"])["done"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    training.cancel_run(digits, run_id)
    job = jobs.wait(digits, training.get_run(digits, run_id)["job_id"], timeout=60)
    run = training.get_run(digits, run_id)
    assert job["status"] == "cancelled" and run["status"] == "cancelled" and run["artifact"] is None
    assert not list((digits.root / "models").glob(".tmp-*"))


def test_a_failed_run_keeps_its_reason_and_can_be_retried(digits, tiny_clip, tmp_path, worker):
    moved = tmp_path / "clip-copy"
    shutil.copytree(tiny_clip, moved)
    [run_id] = training.submit_training(digits, ["2"], "local", {"encoder": str(moved)})
    [run] = _wait_runs(digits, [run_id])
    assert run["status"] == "done"
    worker.stop()
    [other] = training.submit_training(digits, ["3"], "local", {"encoder": str(moved)})
    shutil.rmtree(moved)
    w = job_threads.Worker(digits, poll_seconds=0.05)
    w.start()
    try:
        [failed] = _wait_runs(digits, [other])
        assert failed["status"] == "failed" and "does not exist" in failed["error"]
        shutil.copytree(tiny_clip, moved)
        training.retry_run(digits, other)
        [done] = _wait_runs(digits, [other])
        assert done["status"] == "done" and done["error"] is None
    finally:
        w.stop()
