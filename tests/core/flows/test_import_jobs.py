"""An import started from a page is a job (issue 25 item 1): refused at once when it must be (nothing written, nothing
queued), run by the worker from the uploads kept in the store, and resumed after its process died without storing a
photo twice."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from core.errors import UserError
from core.flows import imports
from core.run import jobs


def png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, "PNG")
    return buf.getvalue()


FILES = [("a.png", png("red")), ("b.png", png("blue")), ("notes.png", b"shopping list")]


def run_queued_jobs(store) -> list[dict]:
    done = []
    while (job_id := jobs.claim_next(store)) is not None:
        done.append(jobs.run_queued(store, job_id))
    return done


def test_the_job_imports_the_kept_uploads_then_removes_them(store):
    store.add_tag("shoes")
    job_id = imports.submit_import(store, FILES, "shoes", "test")
    kept = store.root / "uploads" / jobs.get_job(store, job_id)["params"]["uploads"]
    assert sorted(p.name for p in kept.iterdir()) == ["0", "1", "2"] and store.count_images() == 0
    [job] = run_queued_jobs(store)
    assert job["status"] == "done" and job["total"] == 3
    assert imports.summary(job["result"], with_role=True) == "Imported 2 test photo(s) · duplicates 0 · rejected 1"
    assert [r["path"] for r in job["result"]["rejected"]] == ["notes.png"]  # the upload's own name, not a server path
    assert not kept.exists() and store.tag_counts("shoes")["test"] == 2
    assert imports.followed(store, job_id) == (None, job["result"], None)


@pytest.mark.parametrize("tag, role, generator, message", [
    ("shoes", "synthetic", None, "importing synthetic images needs the tool that made them"),
    ("nobody", "real", None, "unknown tag 'nobody': add it first"),
])
def test_what_is_refused_at_once_writes_and_queues_nothing(store, tag, role, generator, message):
    store.add_tag("shoes")
    with pytest.raises(UserError, match=message):
        imports.submit_import(store, FILES, tag, role, generator=generator)
    assert not (store.root / "uploads").exists() and jobs.list_jobs(store) == [] and store.count_images() == 0


def test_a_demo_quota_refuses_before_anything_is_kept(store, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    monkeypatch.setenv("SYNTHLAB_DEMO_MAX_IMAGES", "1")
    store.add_tag("shoes")
    with pytest.raises(UserError, match="demo limit: at most 1 images per workspace"):
        imports.submit_import(store, FILES, "shoes", "real")
    assert not (store.root / "uploads").exists() and jobs.list_jobs(store) == []


def test_an_import_whose_process_died_resumes_without_storing_a_photo_twice(store):
    store.add_tag("shoes")
    job_id = imports.submit_import(store, FILES, "shoes", "real")
    store.add_image(Image.open(io.BytesIO(FILES[0][1])), tag="shoes", source="real")  # what it had stored
    with store.tx() as conn:  # its process is gone mid-way
        conn.execute("UPDATE jobs SET status = 'running', owner = 'h:0' WHERE id = ?", (job_id,))
    assert imports.followed(store, job_id)[0] == job_id
    with store.tx() as conn:
        conn.execute("UPDATE jobs SET status = 'queued', owner = NULL WHERE id = ?", (job_id,))  # the worker's requeue
    [job] = run_queued_jobs(store)
    assert (job["result"]["imported"], job["result"]["duplicates"]) == (1, 1)
    assert store.tag_counts("shoes")["real"] == 2
