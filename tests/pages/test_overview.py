"""The Overview page in AppTest: the checklist, the one primary next action, the sample loader, the preset."""

from __future__ import annotations

from core.data import sample_jobs, slicing
from core.run import jobs
from core.store.database import Store
from tests.pages.apptest import open_page, texts


def finish_sample_job(at, home, timeout: float = 120) -> dict:
    """Wait for the sample load the page queued (the app's worker thread runs it), then run the page again."""
    store = Store(home)
    job = jobs.wait(store, jobs.list_jobs(store, kind=sample_jobs.JOB_KIND, limit=1)[0]["id"], timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return job


def _primary(at) -> list[str]:
    return [b.label for b in at.button if b.proto.type == "primary"]


def test_an_empty_store_offers_the_clothing_sample_as_the_one_next_action(home):
    at = open_page("overview")
    assert _primary(at) == ["Load the clothing sample"]
    assert "Step 1 of 4 · Tags and images" in texts(at.markdown)
    assert "0 tag(s); 0 test photo(s)" in texts(at.text)
    at.number_input(key="ov_per_tag").set_value(6)
    at.number_input(key="ov_test_per_tag").set_value(2)
    at.button(key="ov_next").click().run()
    assert not at.exception and not at.error, texts(at.error)
    finish_sample_job(at, home)
    assert "Clothing sample loaded: 32 photos (0 already there)" in texts(at.success)
    assert "jeans: 6 real, 2 test" in texts(at.text)
    assert _primary(at) == ["Cut the preset slices"]

    at.text_input(key="ov_counts").set_value("3, 6")
    at.text_input(key="ov_sizes").set_value("32")
    at.number_input(key="ov_repeats").set_value(1)
    at.button(key="ov_next").click().run()
    assert not at.exception and not at.error, texts(at.error)
    assert "experiment-real: 2 slices (2 new)" in texts(at.success)
    assert "experiment not cut" in texts(at.warning)  # no synthetic images: one warning for that arm
    store = Store(home)
    assert sorted({s["name"] for s in slicing.list_slices(store)}) == ["experiment-real"]
    assert _primary(at) == ["Train 2 slice(s) locally"]


def test_no_clothing_photos_is_one_clear_error_and_the_store_stays_empty(home, monkeypatch, tmp_path):
    monkeypatch.setenv("SYNTHLAB_FASHION_DIR", str(tmp_path / "nothing-here"))
    at = open_page("overview")
    at.button(key="ov_next").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "no clothing photos" in at.error[0].value
    store = Store(home)
    assert store.tag_names() == [] and store.count_images() == 0 and store.integrity_check() == "ok"


def test_cutting_a_preset_that_does_not_fit_is_an_error_that_cuts_nothing(home):
    at = open_page("overview")
    at.button(key="ov_cut").click().run()
    assert not at.exception
    assert "the preset's tags jeans, shoes, shirts, other are missing" in texts(at.error)
    assert slicing.list_slices(Store(home)) == []
