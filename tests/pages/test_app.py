"""The entry script: navigation over the steps and the shared sidebar, on an empty store."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")


def test_app_opens_on_the_overview_with_the_store_in_the_sidebar(home):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "Overview"
    sidebar = " ".join(str(c.value) for c in at.sidebar.caption) + " ".join(c.value for c in at.sidebar.code)
    assert str(home) in sidebar
    assert "Device:" in sidebar and "(not set)" in sidebar


def test_azure_key_is_masked_in_the_sidebar(home, monkeypatch):
    monkeypatch.setenv("VISION_TRAINING_KEY", "super-secret-training-key-1234")
    at = AppTest.from_file(APP, default_timeout=60).run()
    shown = " ".join(str(c.value) for c in at.sidebar.caption)
    assert "super-secret" not in shown and "1234" in shown
