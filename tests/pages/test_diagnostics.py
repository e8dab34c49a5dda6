"""The Diagnostics page under Streamlit's AppTest, on a real store and the tiny CLIP."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.analysis import diagnostics
from core.run import jobs
from core.store.database import Store
from tests.pages.apptest import open_page

TIMEOUT = 60


def blocks(seed: int, px: int = 40) -> np.ndarray:
    grid = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(grid).resize((px, px), Image.Resampling.NEAREST))


@pytest.fixture
def lab(home):
    """jeans: 4 near-identical synthetic images and 5 noise photos."""
    store = Store(home)
    store.add_tag("jeans")
    base = blocks(7)
    for i in range(4):
        arr = base.copy()
        arr[0, 0, 0] = i
        store.add_image(Image.fromarray(arr), tag="jeans", source="synthetic", prompt="blue jeans", seed=i)
    rng = np.random.default_rng(1)
    for _ in range(5):
        store.add_image(Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)), tag="jeans", source="real")
    yield store
    store.close()


def page() -> AppTest:
    return open_page("diagnostics")


def test_an_empty_store_says_what_to_do_first(home):
    at = page()
    assert "No tags yet" in at.info[0].value


def test_running_diagnostics_from_the_form_shows_the_table(lab, tiny_clip):
    at = page()
    assert "No diagnosis yet" in at.info[0].value
    at.text_input(key="dg_sizes").set_value("32")
    at.text_input(key="dg_encoder").set_value(tiny_clip)
    at.button[0].click().run()
    assert not at.exception, at.exception
    job = jobs.list_jobs(lab, kind="diagnose")[0]
    assert job["params"] == {"tags": ["jeans"], "sizes": [32], "encoder": tiny_clip}
    done = jobs.wait(lab, job["id"], timeout=TIMEOUT)
    assert done["status"] == "done", done["error"]
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table["tag"]) == ["jeans"]
    assert table["AUC @ 32px"][0] == pytest.approx(done["result"]["tags"]["jeans"]["auc"]["32"])
    assert table["duplicate clusters"][0] == 1
    assert table["pixel AUC @ 32px"][0] == pytest.approx(done["result"]["tags"]["jeans"]["pixel_auc"]["32"])
    lo, hi = done["result"]["tags"]["jeans"]["pixel_auc_ci"]["32"]
    assert table["pixel AUC 95% CI @ 32px"][0] == f"[{lo:.3f}, {hi:.3f}]" and "AUC 95% CI @ 32px" in table
    null = done["result"]["tags"]["jeans"]["pixel_null"]["32"]  # the calibrated probe's null band, shown
    assert table["pixel null band @ 32px"][0] == f"[{null['band'][0]:.3f}, {null['band'][1]:.3f}]"
    assert table["pixel trace @ 32px"][0] in ("none", f"found (p = {null['p_value']:.3g})")


def test_bad_sizes_show_an_error_and_queue_nothing(lab, tiny_clip):
    at = page()
    at.text_input(key="dg_sizes").set_value("32, big")
    at.text_input(key="dg_encoder").set_value(tiny_clip)
    at.button[0].click().run()
    assert "sizes must be whole numbers" in at.error[0].value
    assert jobs.list_jobs(lab, kind="diagnose") == []


def test_a_duplicate_cluster_is_rejected_in_one_click(lab, tiny_clip):
    diagnostics.run_diagnosis(lab, ["jeans"], [32], tiny_clip)
    at = page()
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the radial spectrum and the 2-D synthetic/real ratio at 32 px
    assert any("heatmap" in c.proto.spec and "real power, 2-D spectrum" in c.proto.spec for c in charts)
    assert any("correlate at least" in c.value for c in at.caption)
    reject = [b for b in at.button if b.key and b.key.startswith("dg-reject-jeans")]
    assert len(reject) == 1 and "Reject 3 duplicate(s)" in reject[0].label
    reject[0].click().run()
    assert not at.exception, at.exception
    synthetic = lab.list_images("jeans", "synthetic")
    assert [im["rejected"] for im in synthetic].count(True) == 3
    kept = diagnostics.latest_diagnosis(lab)["tags"]["jeans"]["duplicate_clusters"][0][0]
    assert not next(im for im in synthetic if im["id"] == kept)["rejected"]
    again = [b for b in at.button if b.key and b.key.startswith("dg-reject-jeans")]
    assert again[0].disabled


@pytest.fixture
def mislabelled(home):
    """Tags a and b, 8 variants each of one pattern, and one variant of a's pattern stored under b."""
    store = Store(home)
    for tag in ("a", "b"):
        store.add_tag(tag)
    rng = np.random.default_rng(3)
    wrong = None
    for tag, seed in (("a", 7), ("b", 8)):
        for i in range(9 if tag == "a" else 8):
            arr = blocks(seed).astype(np.int16) + rng.integers(-12, 13, (40, 40, 3))
            image_id, _ = store.add_image(Image.fromarray(arr.clip(0, 255).astype(np.uint8)),
                                          tag="b" if i == 8 else tag, source="synthetic", seed=i)
            wrong = image_id if i == 8 else wrong
    yield store, wrong
    store.close()


def test_a_suspected_wrong_label_is_shown_and_relabelled_in_one_click(mislabelled, tiny_clip):
    store, wrong = mislabelled
    diagnostics.run_diagnosis(store, ["a", "b"], [32], tiny_clip)
    issues = diagnostics.latest_diagnosis(store)["label_issues"]
    assert [(i["image"], i["tag"], i["suggested"]) for i in issues] == [(wrong, "b", "a")]
    at = page()
    relabel = [b for b in at.button if b.key and b.key.startswith("dg-labels-relabel")]
    assert len(relabel) == 1 and relabel[0].label == "Relabel as a"
    relabel[0].click().run()
    assert not at.exception, at.exception
    assert store.query_one("SELECT tag FROM images WHERE id = ?", (wrong,))["tag"] == "a"
    reject = [b for b in at.button if b.key and b.key.startswith("dg-labels-reject")]
    reject[0].click().run()
    assert store.query_one("SELECT rejected FROM images WHERE id = ?", (wrong,))["rejected"] == 1
