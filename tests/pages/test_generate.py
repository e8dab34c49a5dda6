"""The Generate page in Streamlit's AppTest: tag editor, presets, submit → background job → gallery,
filters and reject/restore — on an empty and on a populated store."""

from __future__ import annotations

import time

from PIL import Image
from streamlit.testing.v1 import AppTest

from core.generate.generation import generate
from core.generate.planning import GenerationSpec
from core.run import jobs
from core.store.database import Store
from tests.pages.apptest import open_page, texts

OTHER = "Other: a hub id or a local folder"


def page() -> AppTest:
    return open_page("generate")


def test_empty_store_then_add_and_edit_a_tag(home):
    at = page()
    assert "Add a tag with a prompt first." in texts(at.info)
    assert "No images match these filters yet." in texts(at.info)
    at.text_input(key="gen_name_(new tag)").input("jeans")
    at.text_area(key="gen_prompt_(new tag)").input("{blue|black|ripped} jeans on {grass|sand}")
    at.run()
    assert "This template yields 6 distinct prompt(s)." in texts(at.caption)
    at.button(key="gen_save_tag").click().run()
    assert not at.exception and not at.error, at.error
    assert Store(home).get_tag("jeans")["prompt"] == "{blue|black|ripped} jeans on {grass|sand}"

    at.selectbox(key="gen_edit").set_value("jeans").run()
    at.text_input(key="gen_negative_jeans").input("blurry").run()
    at.button(key="gen_save_tag").click().run()
    assert Store(home).get_tag("jeans")["negative"] == "blurry"
    assert at.dataframe[0].value["tag"].tolist() == ["jeans"]
    assert at.multiselect(key="gen_tags").value == ["jeans"]

    at.selectbox(key="gen_edit").set_value("(new tag)").run()
    at.text_input(key="gen_name_(new tag)").input("shoes")
    at.text_area(key="gen_prompt_(new tag)").input("shoes")
    at.button(key="gen_save_tag").click().run()
    assert at.multiselect(key="gen_tags").value == ["jeans", "shoes"]  # a new tag is picked for generation


def test_bad_template_shows_an_error_and_saves_nothing(home):
    at = page()
    at.text_input(key="gen_name_(new tag)").input("jeans")
    at.text_area(key="gen_prompt_(new tag)").input("{blue|black jeans").run()
    assert "not valid variation syntax" in texts(at.error)
    at.button(key="gen_save_tag").click().run()
    assert "not valid variation syntax" in texts(at.error)
    assert Store(home).tag_names() == []


def test_presets_follow_the_model(home, store):
    store.add_tag("jeans", "jeans")
    at = page()
    assert at.selectbox(key="gen_model_choice").value == "fashion-mini"  # no CUDA here: the built-in model first
    assert at.selectbox(key="gen_model_choice").options[0].startswith("fashion-mini (built-in, offline)")
    assert at.number_input(key="gen_w_fashion-mini").value == 32
    at.selectbox(key="gen_model_choice").set_value("stabilityai/sd-turbo").run()
    assert at.number_input(key="gen_steps_stabilityai/sd-turbo").value == 1
    assert at.number_input(key="gen_w_stabilityai/sd-turbo").value == 512
    at.selectbox(key="gen_model_choice").set_value("stabilityai/stable-diffusion-xl-base-1.0").run()
    assert at.number_input(key="gen_w_stabilityai/stable-diffusion-xl-base-1.0").value == 1024
    assert at.number_input(key="gen_steps_stabilityai/stable-diffusion-xl-base-1.0").value == 30


def test_submit_runs_a_job_and_the_gallery_shows_its_images(home, store, tiny_sd):
    store.add_tag("jeans", "{blue|black} jeans")
    at = page()
    at.selectbox(key="gen_model_choice").set_value(OTHER).run()
    at.text_input(key="gen_model_other").input(tiny_sd).run()
    assert at.number_input(key=f"gen_w_{tiny_sd}").value == 64  # the folder's native size
    at.number_input(key=f"gen_steps_{tiny_sd}").set_value(2)
    at.number_input(key="gen_count").set_value(3)
    at.number_input(key=f"gen_batch_{tiny_sd}").set_value(2)
    at.button(key="gen_submit").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    job_id = jobs.list_jobs(store, kind="generate")[0]["id"]
    deadline = time.monotonic() + 120
    while jobs.get_job(store, job_id)["status"] in jobs.ACTIVE:  # the app's worker thread runs it
        assert time.monotonic() < deadline, jobs.get_job(store, job_id)
        time.sleep(0.2)
        at.run()
    at.run()
    assert jobs.get_job(store, job_id)["status"] == "done"
    assert f"Job {job_id} (generate): done — 3/3" in texts(at.success)
    captions = [c for c in texts(at.caption).splitlines() if c.startswith("jeans · ")]
    assert len(captions) == 3 and all(" · seed " in c for c in captions)
    assert "3 image(s)" in texts(at.caption)


def test_populated_store_filters_paginates_and_rejects(home, store, tiny_sd, tmp_path):
    store.add_tag("jeans", "{blue|black} jeans")
    store.add_tag("shoes", "red shoes")
    made = generate(store, GenerationSpec(tag="jeans", count=13, model=tiny_sd, steps=1, batch_size=13))["images"]
    store.add_image(Image.new("RGB", (64, 64), "white"), tag="shoes", source="real", original_name="shoe.jpg")
    at = page()
    assert "14 image(s)" in texts(at.caption)
    assert at.checkbox(key="gal_rejected").value is False  # rejected images are hidden until asked for
    assert at.number_input(key="gal_page_all_all_False").value == 1  # 14 images, 12 a page
    at.number_input(key="gal_page_all_all_False").set_value(2).run()
    assert len([b for b in at.button if b.key and b.key.startswith("gal-")]) == 2

    at.selectbox(key="gal_source").set_value("real").run()
    assert "1 image(s)" in texts(at.caption) and "shoes · real: shoe.jpg" in texts(at.caption)
    at.selectbox(key="gal_source").set_value("all")
    at.selectbox(key="gal_tag").set_value("jeans").run()
    assert "13 image(s)" in texts(at.caption)

    first = store.list_images("jeans")[0]["id"]
    at.button(key=f"gal-{first}").click().run()
    assert store.get_image(first)["rejected"] and first in made
    assert "12 image(s)" in texts(at.caption) and not any(b.key == f"gal-{first}" for b in at.button)
    at.checkbox(key="gal_rejected").check().run()
    assert "13 image(s)" in texts(at.caption)
    assert at.button(key=f"gal-{first}").label == "Restore"
    at.button(key=f"gal-{first}").click().run()
    assert not store.get_image(first)["rejected"]


def test_empty_store_offers_the_clothing_sample(home, monkeypatch):
    from tests.datasets import fashion_available

    if not fashion_available():
        import pytest

        pytest.skip("dataset-fashion-mnist is not installed (.ci/run)")
    at = page()
    assert at.number_input(key="gen_test_per_tag").value == 50  # the one default (core.data.samples)
    at.number_input(key="gen_per_tag").set_value(6)
    at.number_input(key="gen_test_per_tag").set_value(2)
    at.button(key="gen_sample").click().run()
    assert not at.exception and not at.error, at.error
    s = Store(home)
    jobs.wait(s, jobs.list_jobs(s, kind="sample")[0]["id"], timeout=120)  # a job of the app's worker
    at.run()
    assert "Clothing sample loaded: 32 photos" in texts(at.success)
    assert s.tag_names() == ["jeans", "other", "shirts", "shoes"]
    assert s.tag_counts("jeans") == {"synthetic": 0, "real": 6, "test": 2}
    assert not any(b.key == "gen_sample" for b in at.button)  # the sample is whole: nothing more to offer


def test_clothing_sample_without_a_source_shows_one_error_and_writes_nothing(home, tmp_path, monkeypatch):
    from core.models import hub

    monkeypatch.setenv("SYNTHLAB_FASHION_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.forget()
    at = page()
    at.button(key="gen_sample").click().run()
    assert not at.exception
    assert "dataset-fashion-mnist" in texts(at.error) and "HF_HUB_OFFLINE is set" in texts(at.error)
    assert Store(home).tag_names() == [] and Store(home).count_images() == 0


def test_batch_size_starts_at_the_jobs_own_default_which_the_readme_states(home, store, monkeypatch):
    """Issue 25 item 5: one default in one place (core.generate.pipelines.default_batch_size), on the page and in
    the README — never the page's own 1."""
    from pathlib import Path

    from core.generate.pipelines import default_batch_size
    from core.models import builtin_generator

    monkeypatch.delenv("SYNTHLAB_BATCH_SIZE", raising=False)
    store.add_tag("jeans", "{blue|black} jeans")
    at = page()
    assert at.selectbox(key="gen_model_choice").value == builtin_generator.NAME  # no CUDA here
    assert at.number_input(key=f"gen_batch_{builtin_generator.NAME}").value == builtin_generator.BATCH_SIZE == 64
    at.selectbox(key="gen_model_choice").set_value("stabilityai/sd-turbo").run()
    assert at.number_input(key="gen_batch_stabilityai/sd-turbo").value == default_batch_size("cpu", "x") == 4
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert "64 for `fashion-mini`, 4 on CPU, 2, 4 or 8 by memory on CUDA, 2 on MPS" in readme
    monkeypatch.setenv("SYNTHLAB_BATCH_SIZE", "3")
    assert page().number_input(key=f"gen_batch_{builtin_generator.NAME}").value == 3
