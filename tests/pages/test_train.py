"""The Train page in Streamlit's AppTest: queue a sweep, watch it finish, cancel and retry, quick test."""

from __future__ import annotations

import io
import time

from PIL import Image
from streamlit.testing.v1 import AppTest

from core.analysis import autoeval
from core.store.database import Store
from core.train import training
from tests.pages.apptest import open_page, texts


def page() -> AppTest:
    return open_page("train")


def wait_for(store: Store, predicate, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not predicate(training.list_runs(store)):
        assert time.monotonic() < deadline, [(r["id"], r["status"], r["error"]) for r in training.list_runs(store)]
        time.sleep(0.1)
    return training.list_runs(store)


def test_an_empty_store_says_to_cut_slices_first(home):
    at = page()
    assert "No slices yet" in texts(at.info)
    assert not at.button


def test_queue_a_sweep_then_quick_test_a_stored_and_an_uploaded_photo(digits, tiny_clip):
    at = page()
    assert at.multiselect(key="tr_slices").value == ["digits"]
    assert "local" in at.selectbox(key="tr_backend").options
    at.selectbox(key="tr_encoder").set_value("a local folder or hub id").run()
    at.text_input(key="tr_encoder_path").set_value(tiny_clip).run()
    at.button(key="tr_queue").click().run()
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    runs = wait_for(digits, lambda rs: len(rs) == 3 and all(r["status"] == "done" for r in rs))
    assert [r["count_per_tag"] for r in runs] == [5, 20, 60] and {r["mode"] for r in runs} == {"probe"}
    wait_for(digits, lambda rs: not autoeval.pending_runs(digits))  # the follow-on evaluation scored them
    at.run()
    assert not at.exception, at.exception
    [table] = [d.value for d in at.dataframe if "status" in d.value.columns]  # the Runs table
    assert list(table["status"]) == ["done"] * 3 and list(table["count per tag"]) == [5, 20, 60]
    assert table["accuracy"].notna().all()  # scored the moment each run ended, no visit to Results
    assert "3/3 done" in texts(at.caption)

    assert at.multiselect(key="qt_runs_3").value == [r["id"] for r in runs]
    photo = digits.list_images(tag="two", source="test")[0]
    at.selectbox(key="qt_image").set_value(photo["id"]).run()  # the bars follow the pick, no Predict click
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    assert not [b for b in at.button if b.key == "qt_go"]
    bars = [c.proto.spec for c in at.get("plotly_chart") if c.key == "qt_chart"]
    assert len(bars) == 1
    figure = bars[0]
    assert '"one"' in figure and '"three"' in figure and "run 3" in figure

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, format="PNG")
    at.radio(key="qt_where").set_value("upload one").run()
    at.file_uploader(key="qt_upload").set_value(("blank.png", buf.getvalue(), "image/png")).run()
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    assert len([c for c in at.get("plotly_chart") if c.key == "qt_chart"]) == 1
    card = [c.proto.spec for c in at.get("plotly_chart") if c.key == "tr_card_confusion"]
    assert len(card) == 1 and "Confusion matrix" in card[0]
    at.toggle(key="qt_curve").set_value(True).run()
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    [curve] = [c.proto.spec for c in at.get("plotly_chart") if c.key == "qt_curve_chart"]
    assert "against images per tag" in curve and '"x":[5,20,60]' in curve.replace(" ", "")
    at.file_uploader(key="qt_upload").set_value(("bad.png", b"not an image", "image/png")).run()
    assert "cannot use this photo" in texts(at.error)


def test_cancel_and_retry_from_the_runs_table(digits):
    at = page()
    at.selectbox(key="tr_encoder").set_value("cnn-small (from scratch, offline)").run()
    at.multiselect(key="tr_slices").set_value(["digits"]).run()
    at.number_input(key="tr_epochs_True").set_value(1000).run()
    at.button(key="tr_queue").click().run()
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    runs = wait_for(digits, lambda rs: any(r["status"] == "running" for r in rs))
    ids = [r["id"] for r in runs]
    at.run()
    at.multiselect(key="tr_picked").set_value(ids).run()
    at.button(key="tr_cancel").click().run()
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    runs = wait_for(digits, lambda rs: all(r["status"] == "cancelled" for r in rs))
    at.run()
    assert list(at.dataframe[-1].value["status"]) == ["cancelled"] * 3
    at.multiselect(key="tr_picked").set_value(ids[:1]).run()
    at.button(key="tr_retry").click().run()
    assert not at.exception and not at.error, (at.exception, texts(at.error))
    assert training.get_run(digits, ids[0])["status"] in ("queued", "running")
    at.multiselect(key="tr_picked").set_value(ids[1:]).run()
    at.button(key="tr_retry").click().run()
    assert "only failed or cancelled runs can be retried" not in texts(at.error)
    at.multiselect(key="tr_picked").set_value(ids).run()
    at.button(key="tr_cancel").click().run()
    wait_for(digits, lambda rs: all(r["status"] == "cancelled" for r in rs))
    at.run()
    at.multiselect(key="tr_picked").set_value(ids[:1]).run()
    at.button(key="tr_cancel").click().run()
    assert "only queued or running runs can be cancelled" in texts(at.error)
