"""The whole flow in a real browser, as a user clicks it: two tags, a few Stable Diffusion images (a tiny
random model folder typed into the model field), real and test photos uploaded, a sweep of mixed slices,
a cnn-small model per slice, the probability-vs-count chart, and the report downloaded. Every wait is on
Streamlit's own script state or on an element appearing — no fixed sleeps."""

from __future__ import annotations

import zipfile

import pytest

from tests.datasets import write_digits
from tests.e2e.conftest import (
    choose,
    no_exception,
    open_page,
    press,
    set_text,
    upload,
    wait_cell,
    wait_idle,
    wait_text,
    widget,
)

pytestmark = pytest.mark.e2e

TAGS = {"zero": "a handwritten {zero|0} in black ink on white paper",
        "one": "a handwritten {one|1} in black ink on white paper"}


def add_tag(page, name: str, prompt: str) -> None:
    details = page.locator('[data-testid="stExpander"] details').first
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    set_text(page, "gen_name_(new tag)", name)
    set_text(page, "gen_prompt_(new tag)", prompt)
    press(page, "gen_save_tag")
    wait_cell(page, name)  # a row in the Tags table


def test_generate_import_slice_train_and_report_in_a_browser(app_server, page, tiny_sd, tmp_path):
    photos = write_digits(tmp_path / "photos", n_train=6, n_test=4, size=32, n_tags=2)
    test_zip = tmp_path / "test-photos.zip"
    with zipfile.ZipFile(test_zip, "w") as zf:
        for path in sorted(photos["test"].rglob("*.png")):
            zf.write(path, path.relative_to(photos["test"]).as_posix())
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("shopping list: milk, eggs")
    app_server.start()

    # 1. Generate: two tags, then 3 images each from the tiny model folder, 64 px, 2 steps
    open_page(page, app_server, "Generate")
    wait_text(page, "Add a tag with a prompt first.")
    for name, prompt in TAGS.items():
        add_tag(page, name, prompt)
    for name in TAGS:  # a tag added after the picker was drawn is selected too
        widget(page, "gen_tags").get_by_role("button", name=f"Remove {name}").wait_for()
    choose(page, "gen_model_choice", "Other: a hub id or a local folder")
    set_text(page, "gen_model_other", tiny_sd)
    wait_text(page, "Defaults for this model (Stable Diffusion 1.5 family): 64×64 px")
    set_text(page, "gen_count", 3)
    set_text(page, f"gen_steps_{tiny_sd}", 2)
    set_text(page, f"gen_g_{tiny_sd}", 0)
    press(page, "gen_submit")
    wait_text(page, "All 2 jobs:")  # one overall bar across the batch, beside the two job bars
    wait_text(page, "6 image(s)", timeout=120_000)
    assert page.locator('[data-testid="stAlertContentSuccess"]', has_text="(generate): done").count() == 2
    no_exception(page)

    # 2. Slice: real photos per tag (one file is not a photo), test photos as a zip of tag folders
    open_page(page, app_server, "Slice")
    widget(page, "import_tag").wait_for()
    for n, name in enumerate(("one", "zero")):
        choose(page, "import_tag", name)
        extra = [not_a_photo] if n == 0 else []
        upload(page, sorted((photos["real"] / name).glob("*.png")) + extra)
        press(page, "import")
        wait_text(page, f"Imported 6 · duplicates 0 · rejected {len(extra)}")
    widget(page, "import_source").get_by_text("test", exact=True).click()
    wait_idle(page)
    choose(page, "import_tag", "(from the zip's tag-named folders)")
    upload(page, [test_zip])
    press(page, "import")
    wait_text(page, "Imported 8 · duplicates 0 · rejected 0")

    set_text(page, "sl_name", "sweep")
    set_text(page, "sl_counts", "2, 4, 6")
    set_text(page, "sl_sizes", "32")
    thumb = widget(page, "sl_real").locator('input[type="range"]')
    thumb.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    wait_idle(page)
    assert thumb.get_attribute("aria-valuetext") == "0.50"
    press(page, "build")
    wait_text(page, "3 slices ready (3 new, 0 already there)")
    no_exception(page)

    # 3. Train: one cnn-small model per slice on the local backend
    open_page(page, app_server, "Train")
    widget(page, "tr_slices").get_by_role("button", name="Remove sweep").wait_for()
    choose(page, "tr_encoder", "cnn-small (from scratch, offline)")
    page.get_by_text("Parameters", exact=True).click()
    set_text(page, "tr_epochs_True", 3)
    press(page, "tr_queue")
    wait_text(page, "This batch: 3/3 done", timeout=120_000)
    wait_text(page, "All 3 finished run(s) scored on 8 test photo(s).", timeout=120_000)  # no Results visit needed
    no_exception(page)

    # 4. Results: already scored; the probability-vs-count chart, and the report downloaded
    open_page(page, app_server, "Results")
    chart = widget(page, "probability-vs-count").locator(".js-plotly-plot")
    chart.wait_for(timeout=60_000)
    assert chart.locator("g.trace").count() >= 2  # drawn, not just present
    traces = chart.evaluate("el => el.data.map(t => ({name: String(t.name), x: Array.from(t.x || []), "
                            "y: Array.from(t.y || [])}))")
    lines = {t["name"].split(" · ")[0]: t for t in traces if t["x"]}  # "zero · 32px · real 50% · local · …"
    assert set(lines) == {"zero", "one"}, [t["name"] for t in traces]
    for line in lines.values():
        assert sorted(line["x"]) == [2, 4, 6] and all(0 <= y <= 1 for y in line["y"])
    page.get_by_role("tab", name="Table & report").click()
    press(page, "build-report")
    wait_text(page, "Report written to")
    with page.expect_download() as download:
        widget(page, "report-download").locator("button").click()
    report = download.value
    assert report.suggested_filename.endswith(".html")
    html = open(report.path(), encoding="utf-8").read()
    assert "<html" in html and "sweep" in html and "Plotly" in html
    no_exception(page)
