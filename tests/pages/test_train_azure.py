"""The Train page with the Azure backend (AppTest), against the fake Custom Vision server: connection status,
masked keys, the quota plan, queueing a sweep, Azure's metrics beside ours, and the cleanup button."""

from __future__ import annotations

import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from core.store.database import Store
from core.train import training
from tests.core.train.test_backends_azure import PREDICTION_KEY, TRAINING_KEY, azure_env, cut, fill_store
from tests.fakes import FakeCustomVision
from tests.pages.apptest import page_path, texts

PAGE = page_path("train")


def everything(at: AppTest) -> str:
    """All text the page shows (markdown, alerts, captions, tables, widget values)."""
    parts = [texts(getattr(at, kind)) for kind in ("markdown", "caption", "success", "error", "warning", "info")]
    parts += [e.value.to_csv() for e in at.dataframe] + [e.value.to_csv() for e in at.table]
    return "\n".join(parts)


@pytest.fixture
def fake(monkeypatch, home):
    with FakeCustomVision(TRAINING_KEY, PREDICTION_KEY, training_delay=0.05) as f:
        for k, v in azure_env(f).items():
            monkeypatch.setenv(k, v)
        yield f


def azure_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    at.selectbox(key="tr_backend").set_value("azure").run()
    assert not at.exception, at.exception
    return at


def test_status_plan_queue_metrics_and_cleanup(fake, home):
    store = Store(home)
    fill_store(store, per_tag=8)
    cut(store, counts=(5, 8), repeats=3)
    at = azure_page()
    shown = everything(at)
    assert "Azure Custom Vision: connected to " + fake.endpoint in texts(at.success)
    assert TRAINING_KEY not in shown and PREDICTION_KEY not in shown and "••••" in shown

    at.selectbox(key="tr_tier").set_value("F0").run()
    assert "this sweep needs 3 new project(s)" in texts(at.error) and "tier F0 allows 2" in texts(at.error)
    at.button(key="tr_queue").click().run()
    assert "quota plan refused" in texts(at.error) and store.query("SELECT * FROM runs") == []

    at.selectbox(key="tr_tier").set_value("S0").run()
    assert "Quota plan, tier S0: 3 new project(s)" in texts(at.caption) and not at.error
    at.button(key="tr_queue").click().run()
    assert not at.exception, at.exception
    deadline = time.monotonic() + 60
    while {r["status"] for r in training.list_runs(store)} != {"done"}:
        assert time.monotonic() < deadline, [(r["status"], r["error"]) for r in training.list_runs(store)]
        time.sleep(0.1)
    assert len(fake.created_projects) == 3 and all(len(fake.iterations(p)) == 2 for p in fake.projects)

    at.run()
    table = next(d.value for d in at.dataframe if "accuracy" in d.value.columns)
    assert {"Azure precision", "Azure recall", "Azure AP"} <= set(table.columns)
    assert table["Azure AP"].notna().all() and len(table) == 6
    assert TRAINING_KEY not in everything(at)

    at.button(key="az_cleanup").click().run()
    assert not at.exception, at.exception
    assert "Deleted 3 Azure project(s) of sw" in texts(at.success) and fake.projects == {}
    assert TRAINING_KEY not in json.dumps(store.query("SELECT * FROM jobs"))
    store.close()


def test_wrong_key_and_missing_settings_are_shown_clearly(fake, home, monkeypatch):
    store = Store(home)
    fill_store(store, per_tag=5)
    cut(store, counts=(5,))
    monkeypatch.setenv("VISION_TRAINING_KEY", "a-wrong-key-5555")
    at = azure_page()
    assert "Azure refused the training key (401)" in texts(at.error)
    assert "a-wrong-key-5555" not in everything(at)

    monkeypatch.delenv("VISION_TRAINING_KEY")
    at.run()
    assert "VISION_TRAINING_KEY is not set" in texts(at.error)
    at.button(key="tr_queue").click().run()
    assert store.query("SELECT * FROM runs") == [] and not at.exception
    store.close()
