"""The browser suite fails on any Streamlit warning or exception in the server log: the check itself, on the
log of a real server whose script triggers Streamlit's own warning (a widget given both a default and a
Session State value — the warning the Generate page used to log after saving tags)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import AppServer, log_problems, open_page, wait_idle

pytestmark = pytest.mark.e2e

SCRIPT = '''import streamlit as st
st.title("Warns")
st.session_state["picked"] = ["a"]
st.multiselect("Pick", ["a", "b"], default=["b"], key="picked")
'''


def test_a_streamlit_warning_in_the_server_log_is_caught(page, tmp_path):
    script = tmp_path / "warns.py"
    script.write_text(SCRIPT)
    server = AppServer(home=tmp_path / "home", script=str(script), expect_problems=True)
    server.home.mkdir()
    server.start()
    try:
        page.goto(server.url)
        wait_idle(page)
        page.get_by_role("heading", name="Warns").wait_for()
    finally:
        server.stop()
    problems = log_problems(server.log_text())
    assert any("WARNING" in line and 'key "picked"' in line for line in problems), server.log_text()[-2000:]


def test_a_clean_app_session_leaves_a_clean_log(app_server, page):
    app_server.start()
    for title in ("Overview", "Data", "Generate", "Slice", "Train", "Results", "Diagnostics"):
        open_page(page, app_server, title)
    app_server.stop()
    assert log_problems(app_server.log_text()) == []


def test_log_problems_reads_levels_tracebacks_and_python_warnings():
    log = "\n".join([
        "2026-12-02 00:00:00,000 INFO streamlit.web: Local URL: http://127.0.0.1:1",
        "2026-12-02 00:00:01,000 WARNING streamlit.elements.lib.policies: The widget with key \"x\" …",
        "Traceback (most recent call last):",
        "/x/y.py:3: FutureWarning: something will change",
        "2026-12-02 00:00:02,000 ERROR streamlit.runtime: Uncaught app exception",
    ])
    assert len(log_problems(log)) == 4
    assert log_problems("2026-12-02 00:00:00,000 INFO streamlit: Stopping...\n  You can now view your app") == []
