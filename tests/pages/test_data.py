"""The Data page in AppTest: upload into a tag and role, rejects with their reason, counts per tag and source,
reject and restore."""

from __future__ import annotations

import io

from PIL import Image

from core.store.database import Store
from tests.pages.apptest import finish_jobs, open_page, texts


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="PNG")
    return buf.getvalue()


def _table(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_upload_into_a_tag_and_role_then_reject_and_restore(home):
    store = Store(home)
    store.add_tag("jeans")
    store.add_tag("shoes")
    at = open_page("data")
    at.selectbox(key="dv_tag").set_value("shoes").run()
    at.radio(key="dv_role").set_value("test").run()
    at.file_uploader(key="dv_files_0").set_value([("a.png", _png("red"), "image/png"),
                                                  ("b.png", _png("blue"), "image/png"),
                                                  ("notes.png", b"shopping list", "image/png")]).run()
    at.button(key="dv_import").click().run()
    assert not at.exception and not at.error, texts(at.error)
    [job] = finish_jobs(at, home, "import")  # a job: it goes on if the page is left
    assert job["status"] == "done" and not (home / "uploads" / job["params"]["uploads"]).exists()
    assert "Imported 2 test photo(s) · duplicates 0 · rejected 1" in texts(at.success)
    rejected = _table(at, "reason")
    assert list(rejected["file"]) == ["notes.png"] and rejected["reason"][0]
    counts = _table(at, "rejected")
    row = counts[counts["tag"] == "shoes"].iloc[0]
    assert (row["test"], row["real"], row["rejected"]) == (2, 0, 0)
    assert "**test** · 2 kept · 0 rejected" in texts(at.markdown)

    first = store.list_images("shoes", "test")[0]
    at.button(key=f"dv_test-{first['id']}").click().run()
    assert store.get_image(first["id"])["rejected"]
    assert "**test** · 1 kept · 1 rejected" in texts(at.markdown)
    assert at.toggle(key="dv_show_rejected").value is False  # rejected photos are hidden until asked for
    assert not any(b.key == f"dv_test-{first['id']}" for b in at.button)
    at.toggle(key="dv_show_rejected").set_value(True).run()
    assert at.button(key=f"dv_test-{first['id']}").label == "Restore"
    at.button(key=f"dv_test-{first['id']}").click().run()
    assert not store.get_image(first["id"])["rejected"]


def test_an_import_into_an_unknown_role_changes_nothing(home):
    store = Store(home)
    store.add_tag("jeans")
    at = open_page("data")
    at.file_uploader(key="dv_files_0").set_value([("notes.png", b"not an image", "image/png")]).run()
    at.button(key="dv_import").click().run()
    assert not at.exception
    finish_jobs(at, home, "import")
    assert "rejected 1" in texts(at.success) and store.count_images() == 0 and store.integrity_check() == "ok"
