"""The issue's "done when" in Chromium, on an empty store: load the clothing sample from the Overview, cut the
preset slices (a small variant: 4 and 8 per tag at 32 px, 2 repeats), train locally with the default encoder,
and the Train page shows every finished run's accuracy without a visit to Results. Then a photo dropped into
the quick test shows bars per tag for the chosen runs with no further click."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from core.store.database import Store
from core.train import training
from tests.datasets import fashion_arrays
from tests.e2e.conftest import no_exception, open_page, press, set_text, upload, wait_text, widget

pytestmark = pytest.mark.e2e
TAGS = {"jeans", "shoes", "shirts", "other"}


def test_sample_preset_train_then_accuracy_on_train_and_a_live_quick_test(app_server, page, tmp_path):
    images, labels = fashion_arrays("t10k")
    photo = tmp_path / "sneaker.png"
    Image.fromarray(images[labels == 7][500], mode="L").resize((128, 128)).convert("RGB").save(photo)
    app_server.start()

    open_page(page, app_server, "Overview")
    primary = page.locator('[data-testid="stBaseButton-primary"]')
    assert primary.count() == 1 and "Load the clothing sample" in primary.inner_text()
    set_text(page, "ov_per_tag", 10)
    set_text(page, "ov_test_per_tag", 6)
    press(page, "ov_next")
    wait_text(page, "Clothing sample loaded: 64 photos", timeout=120_000)
    wait_text(page, "jeans: 10 real, 6 test")

    set_text(page, "ov_counts", "4, 8")
    set_text(page, "ov_sizes", "32")
    set_text(page, "ov_repeats", 2)
    assert "Cut the preset slices" in primary.inner_text()
    press(page, "ov_next")
    wait_text(page, "experiment-real: 4 slices (4 new)")
    wait_text(page, "experiment not cut")  # no synthetic images yet: the synthetic arm waits, the baseline is cut

    assert "Train 4 slice(s) locally" in primary.inner_text()
    press(page, "ov_next")
    page.get_by_role("heading", name="Train").first.wait_for()
    wait_text(page, "All 4 finished run(s) scored on 24 test photo(s).", timeout=300_000)
    no_exception(page)

    home = Store(app_server.home)
    runs = training.list_runs(home)
    assert len(runs) == 4 and all(r["status"] == "done" and r["accuracy"] is not None for r in runs)
    grid = page.locator('[data-testid="stDataFrame"]').first
    for r in runs:  # each run's accuracy is in the Runs table (drawn rounded, kept whole in the accessible table)
        rounded, whole = f"{r['accuracy']:.3f}", str(r["accuracy"])[:5]
        shown = re.compile(f"^({re.escape(rounded)}|{re.escape(whole)})")
        grid.get_by_role("gridcell", name=shown, include_hidden=True).first.wait_for(state="attached")
    card = widget(page, "tr_card_box")
    card.wait_for()
    assert "Accuracy" in card.inner_text()
    card_chart = widget(page, "tr_card_confusion").locator(".js-plotly-plot")
    card_chart.wait_for()

    # the quick test: drop a photo, and the bars appear with no further click
    widget(page, "qt_where").get_by_text("upload one", exact=True).click()
    page.wait_for_timeout(200)
    upload(page, [photo], key="qt_upload")
    chart = widget(page, "qt_chart").locator(".js-plotly-plot")
    chart.wait_for(timeout=60_000)
    bars = chart.evaluate("el => el.data.map(t => ({type: t.type, name: String(t.name), x: Array.from(t.x)}))")
    chosen = widget(page, "qt_runs_4").get_by_role("button", name=re.compile("^Remove ")).count()
    assert chosen == 3 and [b["name"].split(" · ")[0] for b in bars] == ["run 2", "run 3", "run 4"], bars
    assert all(b["type"] == "bar" and set(b["x"]) == TAGS for b in bars), bars
    assert page.locator(".st-key-qt_go").count() == 0
    no_exception(page)
