"""The Slice page in Streamlit's AppTest: upload, the preset, building a sweep, the table, preview, export."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.run import jobs
from core.store.database import Store
from tests.pages.apptest import finish_jobs, open_page, texts


def png(color, size=(40, 36)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def tag_zip(per_tag: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for t, tag in enumerate(("jeans", "shoes")):
            for i in range(per_tag):
                z.writestr(f"{tag}/{i}.png", png((i * 9, t * 100, 30)))
    return buf.getvalue()


def page() -> AppTest:
    return open_page("slice")


def test_upload_zip_then_files_with_a_rejection(home):
    at = page()
    assert "No tags yet" in texts(at.info)
    uploader = at.file_uploader[0]
    assert uploader.accept_multiple_files
    assert at.selectbox(key="import_tag").value.startswith("(from the zip")
    uploader.set_value([("clothes.zip", tag_zip(6), "application/zip")])
    at.run()
    at.button(key="import").click().run()
    assert not at.exception, at.exception
    finish_jobs(at, home, "import")
    assert "Imported 12 · duplicates 0 · rejected 0 · created tags: jeans, shoes" in texts(at.success)
    store = Store(home)
    assert store.tag_counts("jeans")["real"] == 6

    # the uploader was reset; now single files, as test photos of one tag, one of them not an image
    at.selectbox(key="import_tag").set_value("shoes")
    at.radio(key="import_source").set_value("test")
    at.file_uploader[0].set_value([("a.png", png((1, 2, 3)), "image/png"), ("b.png", png((0, 100, 30)), "image/png"),
                                   ("notes.txt", b"hello", "text/plain")])
    at.run()
    at.button(key="import").click().run()
    assert not at.exception, at.exception
    finish_jobs(at, home, "import")
    assert "Imported 1 · duplicates 0 · rejected 2" in texts(at.success)
    rejected = at.dataframe[0].value
    assert set(rejected["path"]) == {"b.png", "notes.txt"}
    reasons = dict(zip(rejected["path"], rejected["reason"]))
    assert reasons["notes.txt"].startswith("not an image")
    assert "already stored as real 'shoes'" in reasons["b.png"]
    assert store.tag_counts("shoes") == {"synthetic": 0, "real": 6, "test": 1}


def seeded(home, per_tag: int = 12) -> Store:
    store = Store(home)
    for t, tag in enumerate(("jeans", "shoes")):
        store.add_tag(tag, f"a photo of {tag}")
        for i in range(per_tag):
            store.add_image(Image.new("RGB", (40, 40), (i * 9, t * 100, 60)), tag=tag, source="synthetic", seed=i)
    return store


def test_preset_fills_the_sweep_and_warns_of_missing_images(home):
    seeded(home)
    at = page()
    at.button(key="preset").click().run()
    assert at.text_input(key="sl_counts").value == "10, 30, 50, 120, 170, 200"
    assert at.text_input(key="sl_sizes").value == "1024, 256"
    warnings = texts(at.warning)
    assert "tag 'jeans' has 12 synthetic images, a slice of 200 per tag at real fraction 0 needs 200" in warnings
    assert "no test photos for 'jeans', 'shoes'" in warnings
    at.button(key="build").click().run()
    assert "not enough images" in texts(at.error)
    assert Store(home).query_one("SELECT COUNT(*) AS n FROM slices")["n"] == 0


def test_build_a_sweep_table_preview_and_export(home, monkeypatch):
    store = seeded(home)
    at = page()
    at.text_input(key="sl_name").set_value("small")
    at.text_input(key="sl_counts").set_value("3, 6")
    at.text_input(key="sl_sizes").set_value("64")
    at.number_input(key="sl_repeats").set_value(2)
    at.run()
    assert "Azure" not in texts(at.warning)  # Azure's floors only for those with an Azure key
    monkeypatch.setenv("VISION_TRAINING_KEY", "k" * 32)
    at.run()
    assert "at least 256 px" in texts(at.warning) and "count 3" in texts(at.warning)
    at.button(key="build").click().run()
    assert not at.exception, at.exception
    assert "4 slices ready (4 new, 0 already there)" in texts(at.success)
    table = at.dataframe[-1].value
    assert list(table["count/tag"]) == [3, 6, 3, 6] and list(table["repeat"]) == [0, 0, 1, 1]
    assert list(table["jeans · synthetic"]) == [3, 6, 3, 6] and list(table["size"]) == [64] * 4
    assert len(table["hash"].iloc[0]) == 12

    at.button(key="build").click().run()
    assert "4 slices ready (0 new, 4 already there)" in texts(at.success)
    assert store.query_one("SELECT COUNT(*) AS n FROM slices")["n"] == 4

    six = int(table["id"].iloc[1])
    at.selectbox(key="preview").set_value(six).run()
    assert not at.exception, at.exception
    (grid,) = at.image
    assert sorted(grid.captions) == ["jeans · synthetic"] * 6 + ["shoes · synthetic"] * 6
    assert "12 of 12 images shown." in texts(at.caption)
    assert not at.download_button
    at.button(key="export_prepare").click().run()
    assert not at.exception, at.exception
    [job] = jobs.list_jobs(store, kind="export")  # a job: it goes on if the page is left
    assert jobs.wait(store, job["id"], timeout=120)["status"] == "done"
    at.run()
    (download,) = at.download_button
    assert download.label == "Download as a Hugging Face imagefolder zip"
    made = Path(jobs.get_job(store, job["id"])["result"]["zip"])
    assert made.parent == store.root / "exports" and made.name.endswith(".zip") and zipfile.is_zipfile(made)
    assert f"Job {job['id']} (export): done — 12/12" in texts(at.success)
    members = store.query("SELECT image_id FROM slice_images WHERE slice_id = ?", (six,))
    assert all((store.cache_dir / "resized" / "128-crop-lanczos" / m["image_id"][:2]).is_dir() for m in members)


def test_bad_sweep_input_is_a_clear_error(home):
    seeded(home)
    at = page()
    at.text_input(key="sl_counts").set_value("10, ten").run()
    assert "counts must be whole numbers separated by commas" in texts(at.error)
    assert at.button(key="build").disabled
    at.text_input(key="sl_counts").set_value("5").run()
    at.text_input(key="sl_sizes").set_value("8").run()
    assert "between 16 and 4096" in texts(at.error)


def seeded_with_duplicates(home) -> Store:
    """Per tag 6 distinct textures and, planted, a copy of each with ±2 of noise: 6 near-duplicate pairs."""
    rng = np.random.default_rng(0)
    store = Store(home)
    for tag in ("jeans", "shoes"):
        store.add_tag(tag, f"a photo of {tag}")
        for i in range(6):
            texture = rng.integers(0, 256, (40, 40, 3)).astype(np.int16)
            copy = (texture + rng.integers(-2, 3, texture.shape)).clip(0, 255)
            for k, pixels in enumerate((texture, copy)):
                store.add_image(Image.fromarray(pixels.astype(np.uint8)), tag=tag, source="synthetic",
                                seed=i * 2 + k)
    return store


def test_near_duplicate_filter_from_the_page_is_recorded_in_the_slice(home):
    store = seeded_with_duplicates(home)
    at = page()
    at.text_input(key="sl_name").set_value("dedup")
    at.text_input(key="sl_counts").set_value("7")
    at.text_input(key="sl_sizes").set_value("32")
    at.checkbox(key="sl_dedupe").check().run()
    at.button(key="build").click().run()
    assert not at.exception, at.exception
    assert "not enough images" in texts(at.error)
    assert store.query_one("SELECT COUNT(*) AS n FROM slices")["n"] == 0
    at.text_input(key="sl_counts").set_value("6").run()
    at.button(key="build").click().run()
    assert "1 slices ready" in texts(at.success)
    import json

    (row,) = store.query("SELECT id, spec FROM slices")
    assert json.loads(row["spec"])["filter"]["drop_near_duplicates"] is True
    dropped = store.query_one("SELECT COUNT(*) AS n FROM slice_filtered WHERE slice_id = ?", (row["id"],))
    assert dropped["n"] == 12


def test_import_synthetic_images_from_another_tool_and_a_corrupt_avif_is_one_rejection(home):
    from PIL import PngImagePlugin

    from tests.reliability.test_import_defects import fuzzed_avif

    Store(home).add_tag("jeans")
    at = page()
    at.radio(key="import_source").set_value("synthetic").run()
    at.text_input(key="import_generator").set_value("a1111")
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "blue jeans\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 40x36")
    made = io.BytesIO()
    Image.new("RGB", (40, 36), (10, 20, 200)).save(made, "PNG", pnginfo=info)
    at.file_uploader[0].set_value([("made.png", made.getvalue(), "image/png"),
                                   ("fuzzed.avif", fuzzed_avif(), "image/avif")])
    at.run()
    at.button(key="import").click().run()
    assert not at.exception, at.exception
    finish_jobs(at, home, "import")
    assert "Imported 1 · duplicates 0 · rejected 1" in texts(at.success)
    rejected = at.dataframe[0].value
    assert list(rejected["path"]) == ["fuzzed.avif"]
    assert rejected["reason"][0].startswith("cannot decode the image (RuntimeError")
    (image,) = Store(home).list_images(tag="jeans", source="synthetic")
    assert (image["provenance"]["generator"], image["provenance"]["seed"], image["provenance"]["prompt"]) == (
        "a1111", 5, "blue jeans")
