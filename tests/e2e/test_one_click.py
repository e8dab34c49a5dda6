"""Issue 21's browser "done when": from an empty store, offline, the Overview's one button runs the whole
experiment (sample → fashion-mini images → three arms → train → score → compare) and the Results page leads
with the answer in words and numbers — no CLI, no other click. Small settings keep it to about a minute."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest

from core.flows import experiment_run
from core.store.database import Store
from tests.e2e.conftest import no_exception, open_page, press, set_text, wait_idle, widget

pytestmark = pytest.mark.e2e
ANSWER = re.compile(r"at (4|8) per tag, (synthetic only|mixed \(half real, half synthetic\)) (is within noise of|"
                    r"is [0-9.]+ points (better|worse) than) real-only")


def _job(home) -> dict | None:
    db = sqlite3.connect(f"file:{home / 'lab.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute("SELECT status, message FROM jobs WHERE kind = 'experiment' ORDER BY id DESC").fetchall()
        return dict(rows[0]) if rows else None
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()


def test_one_click_from_an_empty_store_reaches_the_answer_on_results(app_server, page):
    app_server.start()
    open_page(page, app_server, "Overview")
    box = widget(page, "ov_one_click")
    box.get_by_text("Settings").first.click()
    set_text(page, "ox_per_tag", 8)
    set_text(page, "ox_counts", "4, 8")
    set_text(page, "ox_repeats", 1)
    press(page, "ov_experiment")

    deadline, seen = time.monotonic() + 600, None
    while time.monotonic() < deadline:
        seen = _job(app_server.home)
        if seen and seen["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    assert seen and seen["status"] == "done", seen
    no_exception(page)

    open_page(page, app_server, "Results")
    answer = widget(page, "answer")
    answer.get_by_text(ANSWER).first.wait_for(timeout=60_000)
    wait_idle(page)
    text = answer.inner_text()
    lines = [m.group(0) for m in ANSWER.finditer(text)]
    assert len(lines) == 4, text  # both comparisons, at both counts
    assert "still open" not in text, text
    no_exception(page)

    store = Store(app_server.home)
    try:
        found = experiment_run.answer(store)
    finally:
        store.close()
    assert not found["missing"] and len(found["comparisons"]) == 4
    for sentence in found["sentences"]:
        assert sentence.split(", p =")[0] in text
