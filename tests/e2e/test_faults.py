"""Faults a user's server lives through, in a real browser against a real ``streamlit run``:

* ``kill -9`` of the server in the middle of a generation job and, later, of a training job; the server is
  started again on the same store and a page is opened → both jobs resume and finish, with exactly the
  requested images (no index made twice, no file without its row) and each run finished once;
* two browser sessions generating for different tags at the same time → every image lands under its own
  tag, with its own prompt, series and job.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from core.data import slicing
from core.store.database import Store
from tests.datasets import import_digits
from tests.e2e.conftest import choose, no_exception, open_page, press, set_text, wait_cell, wait_idle, wait_text, widget

pytestmark = pytest.mark.e2e

PROMPTS = {"zero": "a handwritten {zero|0} on white paper", "one": "a handwritten {one|1} on white paper"}


def read(home: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """A read from a separate connection, as another process sees the store while the server writes it."""
    db = sqlite3.connect(f"file:{home / 'lab.db'}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def until(condition, what: str, timeout: float = 120):
    """Poll the store until ``condition()`` is truthy (a condition, not a fixed sleep); returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def prepare_generation(page, model: str, count: int, steps: int, keep: str | None = None) -> None:
    """On the Generate page, fill in everything but the final click: only tag ``keep`` (else all), the
    tiny model folder, ``count`` images per tag at its native 64 px, ``steps`` steps, no guidance."""
    if keep is not None:
        for name in PROMPTS:
            if name != keep:
                widget(page, "gen_tags").get_by_role("button", name=f"Remove {name}").click()
                wait_idle(page)
    choose(page, "gen_model_choice", "Other: a hub id or a local folder")
    set_text(page, "gen_model_other", model)
    set_text(page, "gen_count", count)
    set_text(page, f"gen_steps_{model}", steps)
    set_text(page, f"gen_g_{model}", 0)


def queue_generation(page, model: str, count: int, steps: int, keep: str | None = None) -> None:
    prepare_generation(page, model, count, steps, keep)
    press(page, "gen_submit")


def assert_store_whole(home: Path) -> None:
    store = Store(home)
    try:
        assert store.integrity_check() == "ok"
        rows = {r["id"]: r["path"] for r in store.query("SELECT id, path FROM images")}
        files = {p.stem for p in (home / "images").glob("*/*") if p.is_file()}
        assert not [f for f in files if f.startswith(".tmp")]
        assert all((home / path).is_file() for path in rows.values())
        assert files == set(rows)
    finally:
        store.close()


def test_kill_9_mid_generation_and_mid_training_then_restart_finishes_both_exactly(app_server, page, tiny_sd,
                                                                                      tmp_path):
    home = app_server.home
    seed = Store(home)
    import_digits(seed, tmp_path / "digits", n_train=8, n_test=0, size=32, n_tags=2)
    for name, prompt in PROMPTS.items():
        seed.add_tag(name, prompt, update=True)
    slicing.build_slices(seed, slicing.SliceSpec(name="sweep", counts=(4, 8), real_fraction=1.0))
    seed.close()
    app_server.start()

    # generation: 10 images of "zero", killed once 2 are stored
    open_page(page, app_server, "Generate")
    queue_generation(page, tiny_sd, count=10, steps=12, keep="zero")
    wait_text(page, "(generate): running")

    def generated() -> int:
        return read(home, "SELECT COUNT(*) FROM images WHERE source = 'synthetic'")[0][0]

    until(lambda: generated() >= 2, "2 generated images")
    app_server.kill9()
    made = generated()
    assert 2 <= made < 10, "the job finished before the server was killed"
    assert read(home, "SELECT status FROM jobs") == [("running",)]  # its owner is dead

    app_server.start()
    open_page(page, app_server, "Generate")  # the first session after the restart starts the job worker
    wait_cell(page, "10", timeout=120_000)     # zero's synthetic count in the Tags table, once the job is done
    no_exception(page)
    assert read(home, "SELECT id, kind, status FROM jobs") == [(1, "generate", "done")]
    indices = read(home, "SELECT series_index FROM images WHERE source = 'synthetic' ORDER BY series_index")
    assert [i for (i,) in indices] == list(range(10))
    assert read(home, "SELECT COUNT(DISTINCT series), COUNT(DISTINCT job_id), MIN(tag), MAX(tag) FROM images "
                      "WHERE source = 'synthetic'") == [(1, 1, "zero", "zero")]
    assert_store_whole(home)

    # training: two cnn-small runs (one per slice), killed while one of them trains
    open_page(page, app_server, "Train")
    choose(page, "tr_encoder", "cnn-small (from scratch, offline)")
    page.get_by_text("Parameters", exact=True).click()
    set_text(page, "tr_epochs_True", 1000)  # the most allowed: a run takes seconds, so the kill lands mid-run
    press(page, "tr_queue")
    until(lambda: read(home, "SELECT 1 FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.status = 'running' "
                             "AND j.done >= 2"), "a run two epochs in")
    app_server.kill9()
    runs = read(home, "SELECT id, status FROM runs ORDER BY id")
    assert len(runs) == 2 and "running" in {s for _, s in runs}, runs

    app_server.start()
    open_page(page, app_server, "Train")
    until(lambda: read(home, "SELECT COUNT(*) FROM runs WHERE status = 'done'")[0][0] == 2, "both runs done", 300)
    page.reload()
    wait_idle(page)
    wait_cell(page, "done")  # the Runs table
    no_exception(page)
    assert read(home, "SELECT COUNT(*), COUNT(DISTINCT slice_id), COUNT(DISTINCT artifact), MIN(status), "
                      "MAX(status) FROM runs") == [(2, 2, 2, "done", "done")]
    jobs = read(home, "SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status ORDER BY kind")
    assert jobs == [("generate", "done", 1), ("train", "done", 2)]  # the killed run's job resumed, not doubled
    models = sorted(p.name for p in (home / "models").iterdir())
    assert len(models) == 2 and not [m for m in models if m.startswith(".")]
    assert_store_whole(home)


def test_two_sessions_generating_for_different_tags_at_once_keep_each_image_under_its_tag(app_server, browser,
                                                                                           tiny_sd):
    home = app_server.home
    seed = Store(home)
    for name, prompt in PROMPTS.items():
        seed.add_tag(name, prompt)
    seed.close()
    app_server.start()
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in PROMPTS]
    try:
        pages = [c.new_page() for c in contexts]
        for pg, tag in zip(pages, PROMPTS):
            pg.set_default_timeout(60_000)
            open_page(pg, app_server, "Generate")
            widget(pg, "gen_tags").get_by_role("button", name=f"Remove {tag}").wait_for()
        for pg, tag in zip(pages, PROMPTS):  # everything but the final click, in both sessions
            prepare_generation(pg, tiny_sd, count=4, steps=2, keep=tag)
        for pg in pages:  # both at once: the second click does not wait for the first job
            widget(pg, "gen_submit").locator("button").click()
        until(lambda: read(home, "SELECT COUNT(*) FROM jobs")[0][0] == 2, "both jobs submitted", timeout=60)
        for pg, tag in zip(pages, PROMPTS):  # each session follows its own job to the end
            job_id = read(home, "SELECT id FROM jobs WHERE json_extract(params, '$.spec.tag') = ?", (tag,))[0][0]
            wait_text(pg, f"Job {job_id} (generate): done", timeout=120_000)
            no_exception(pg)
    finally:
        for c in contexts:
            c.close()
    rows = read(home, "SELECT i.tag, i.prompt, i.series, i.job_id, json_extract(j.params, '$.spec.tag'), "
                      "json_extract(j.params, '$.template') FROM images i JOIN jobs j ON j.id = i.job_id")
    assert len(rows) == 8
    by_tag: dict[str, set] = {}
    for tag, prompt, series, job_id, job_tag, template in rows:
        assert job_tag == tag and template == PROMPTS[tag]
        word = "zero" if tag == "zero" else "one"
        digit = "0" if tag == "zero" else "1"
        assert prompt in (f"a handwritten {word} on white paper", f"a handwritten {digit} on white paper"), prompt
        by_tag.setdefault(tag, set()).add((series, job_id))
    assert {t: len(v) for t, v in by_tag.items()} == {"zero": 1, "one": 1}
    assert by_tag["zero"] != by_tag["one"]
    assert read(home, "SELECT tag, COUNT(*) FROM images GROUP BY tag ORDER BY tag") == [("one", 4), ("zero", 4)]
    assert_store_whole(home)
