"""Issue 25's first "done when" in Chromium: the clothing sample started on the Overview goes on while the user is
on another page (the Data page shows it, the sidebar counts it), is still moving on the way back, and once it has
stopped half way the Overview offers to finish it; finishing leaves every sample photo in the store once."""

from __future__ import annotations

import pytest

from core.data import sample_jobs
from core.run import jobs
from core.store.database import Store
from tests.e2e.conftest import no_exception, open_page, press, wait_idle, wait_text, widget

pytestmark = pytest.mark.e2e
TAGS = ("jeans", "shoes", "shirts", "other")
PER_TAG, TEST_PER_TAG = 200, 50  # the defaults: 1 000 photos, long enough to leave the page mid-way


def sample_rows(store: Store) -> list[tuple]:
    return [tuple(r.values()) for r in store.query(
        "SELECT tag, source, json_extract(extra, '$.split'), json_extract(extra, '$.index') FROM images "
        "WHERE json_extract(extra, '$.dataset') = 'fashion-mnist'")]


def go_to(page, title: str) -> None:
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=title).first.click()
    wait_idle(page)
    page.get_by_role("heading", name=title).first.wait_for()


def test_leave_the_overview_during_the_sample_load_come_back_and_finish_it(app_server, page):
    app_server.start()
    store = Store(app_server.home)
    open_page(page, app_server, "Overview")
    assert widget(page, "ov_per_tag").locator("input").input_value() == str(PER_TAG)
    press(page, "ov_next")
    wait_text(page, "Loading the clothing sample")
    wait_text(page, "(sample): running")
    left_at = len(sample_rows(store))
    assert left_at < 4 * (PER_TAG + TEST_PER_TAG)

    go_to(page, "Data")  # leave mid-load: the job goes on, the sidebar counts it, the Data page shows it
    wait_text(page, "Jobs: 1 running")
    wait_text(page, "(sample): running")

    go_to(page, "Overview")
    [job] = jobs.list_jobs(store, kind=sample_jobs.JOB_KIND)
    assert len(sample_rows(store)) > left_at, "the load stopped when the page was left"
    if job["status"] == "running":  # stop it half way here, then the Overview offers to finish it
        widget(page, f"ov_sample_job-cancel-{job['id']}").locator("button").click()
        wait_text(page, "Finish loading the clothing sample", timeout=30_000)
        wait_text(page, "Clothing sample stopped at")
        assert jobs.get_job(store, job["id"])["status"] == "cancelled"
        primary = page.locator('[data-testid="stBaseButton-primary"]')
        assert primary.count() == 1 and "Finish loading the sample" in primary.inner_text()
        press(page, "ov_next")
    wait_text(page, "Clothing sample loaded:", timeout=120_000)
    wait_text(page, f"jeans: {PER_TAG} real, {TEST_PER_TAG} test")
    no_exception(page)

    rows = sample_rows(store)
    assert len(rows) == len(set(rows)) == 4 * (PER_TAG + TEST_PER_TAG)  # every photo, none twice
    for tag in TAGS:
        assert store.tag_counts(tag) == {"synthetic": 0, "real": PER_TAG, "test": TEST_PER_TAG}
    assert page.get_by_text("Finish loading the clothing sample").count() == 0
