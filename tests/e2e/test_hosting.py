"""Hosted modes in a real browser. Demo: two visitors (two browser contexts) get two workspaces — folders
under $SYNTHLAB_HOME/workspaces/ and ?workspace=ID in each URL —, a tag made by one is absent for the
other, the clothing sample loads into a new workspace in one click, a generate request over the per-job quota is refused with its message, a job within it runs, a
reload returns to the same workspace, and an unknown id opens nothing. Team mode without a login
configuration says how to configure one and shows no page."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from core.store.database import Store
from tests.e2e.conftest import AppServer, choose, no_exception, press, set_text, wait_cell, wait_idle, wait_text
from tests.e2e.test_flow import add_tag

pytestmark = pytest.mark.e2e


def workspace_of(page) -> str:
    found = parse_qs(urlparse(page.url).query).get("workspace", [""])[0]
    assert re.fullmatch(r"[0-9a-f]{32}", found), page.url
    return found


def visit(browser, url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    parts = urlparse(url)
    if parts.path in ("", "/") and not parts.query:  # the app opens on the Overview; these visits start on Generate
        url = url.rstrip("/") + "/generate"
    pg.goto(url)
    wait_idle(pg)
    if "workspace=" not in url:  # a workspace is made only on request (issue #24)
        wait_text(pg, "Welcome to the Synthlab demo")
        press(pg, "ws_new")
    pg.wait_for_function("() => location.search.includes('workspace=')")
    return context, pg


@pytest.fixture
def demo_server(tmp_path, tiny_sd):
    server = AppServer(home=tmp_path / "home", env={
        "SYNTHLAB_MODE": "demo", "SYNTHLAB_DEMO_MODELS": str(tiny_sd), "SYNTHLAB_DEMO_IMAGES_PER_JOB": "3",
        "SYNTHLAB_DEMO_MAX_STEPS": "4", "OMP_NUM_THREADS": "1"})
    server.home.mkdir()
    yield server.start()
    server.stop()
    stop_worker(server.home)


def stop_worker(home) -> None:
    """Demo mode runs the worker as its own process (its own session, so it outlives the server): stop the
    one this test's server started, by its pid from the lock."""
    import os
    import signal

    from core.run import worker

    pid = worker.alive(home)
    if pid and pid > 0:
        os.kill(pid, signal.SIGTERM)


@pytest.mark.slow
def test_two_visitors_get_two_private_workspaces_with_quotas(browser, demo_server, tiny_sd):
    contexts = []
    try:
        ca, a = visit(browser, demo_server.url)
        cb, b = visit(browser, demo_server.url)
        contexts += [ca, cb]
        ws_a, ws_b = workspace_of(a), workspace_of(b)
        assert ws_a != ws_b
        folders = sorted(p.name for p in (demo_server.home / "workspaces").iterdir() if not p.name.startswith("."))
        assert folders == sorted([ws_a, ws_b])

        add_tag(a, "jeans", "{blue|black} jeans on a white background")
        b.reload()
        wait_idle(b)
        wait_text(b, "Add a tag with a prompt first.")
        assert b.get_by_role("gridcell", name="jeans", exact=True, include_hidden=True).count() == 0
        assert Store(demo_server.home / "workspaces" / ws_b).tag_names() == []
        assert Store(demo_server.home / "workspaces" / ws_a).tag_names() == ["jeans"]

        set_text(b, "gen_per_tag", 4)
        press(b, "gen_sample")  # the clothing sample, one click, into B's new workspace only
        wait_cell(b, "shoes", timeout=180_000)
        assert Store(demo_server.home / "workspaces" / ws_b).tag_names() == ["jeans", "other", "shirts", "shoes"]
        assert Store(demo_server.home / "workspaces" / ws_a).tag_names() == ["jeans"]

        choose(a, "gen_model_choice", "Other: a hub id or a local folder")
        set_text(a, "gen_model_other", tiny_sd)
        set_text(a, f"gen_steps_{tiny_sd}", 2)
        set_text(a, "gen_count", 5)
        press(a, "gen_submit")
        wait_text(a, "demo limit: at most 3 new images per job; this job asks for 5")
        assert Store(demo_server.home / "workspaces" / ws_a).conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0

        set_text(a, "gen_count", 2)
        press(a, "gen_submit")
        wait_text(a, "2 image(s)", timeout=120_000)
        no_exception(a)

        a.reload()
        wait_idle(a)
        assert workspace_of(a) == ws_a
        wait_cell(a, "jeans")
        wait_text(a, "2 image(s)")
        a.get_by_role("link", name="Slice").first.click()  # another page keeps the workspace in the URL
        wait_idle(a)
        a.wait_for_function(f"() => location.search.includes('{ws_a}')")

        cc, c = visit(browser, f"{demo_server.url}/?workspace={'0' * 32}")
        contexts.append(cc)
        wait_text(c, "no such workspace")
        assert c.get_by_role("link", name="Slice").count() == 0
        press(c, "ws_new")
        c.wait_for_function("() => !location.search.includes('0000000000')")
        assert workspace_of(c) not in (ws_a, ws_b)
    finally:
        for context in contexts:
            context.close()


def test_team_mode_without_login_settings_says_how_to_configure(tmp_path, page):
    server = AppServer(home=tmp_path / "home", env={"SYNTHLAB_MODE": "team"})
    server.home.mkdir()
    server.start()
    try:
        page.goto(server.url)
        wait_idle(page)
        wait_text(page, "Team mode needs a login, and none is configured")
        wait_text(page, "redirect_uri")
        wait_text(page, "cookie_secret")
        assert page.get_by_role("link", name="Generate").count() == 0
        assert page.get_by_role("heading", name="Generate").count() == 0
        no_exception(page)
    finally:
        server.stop()
