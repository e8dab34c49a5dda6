"""The entry script in the hosted modes (AppTest): demo workspaces from ?workspace=ID, the demo sidebar, and
the app starting its worker process (SYNTHLAB_WORKER=process) only when none is alive for the home."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import ui
from core.errors import UserError
from core.run import worker, workspaces

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app.py")


def test_demo_visitor_gets_a_workspace_on_request_and_its_id_in_the_url(home, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    monkeypatch.setenv("SYNTHLAB_WORKER", "thread")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.info[0].value.startswith("Welcome to the Synthlab demo. Start a workspace of your own")
    assert workspaces.list_ids(home) == [], "a visit alone creates no workspace"
    at.button(key="ws_new").click().run()
    assert not at.exception
    workspace_id = at.query_params["workspace"]
    workspace_id = workspace_id if isinstance(workspace_id, str) else workspace_id[0]
    assert workspaces.list_ids(home) == [workspace_id]
    sidebar = " ".join(str(c.value) for c in at.sidebar.caption) + " ".join(c.value for c in at.sidebar.code)
    assert workspace_id[:8] in sidebar and "Demo limits: up to 40 new images per job" in sidebar
    assert "Azure Custom Vision: off in this demo" in sidebar and sidebar.count("Azure") == 1  # named once
    assert str(home) not in sidebar and not at.sidebar.code  # a public visitor never sees the server's folders

    again = AppTest.from_file(APP, default_timeout=60)
    again.query_params["workspace"] = workspace_id
    again.run()
    assert not again.exception
    assert workspaces.list_ids(home) == [workspace_id]  # the link returns to it, nothing new


def test_demo_unknown_workspace_opens_nothing(home, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    monkeypatch.setenv("SYNTHLAB_WORKER", "thread")
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["workspace"] = "f" * 32
    at.run()
    assert "no such workspace" in at.error[0].value
    assert workspaces.list_ids(home) == []
    at.button(key="ws_new").click().run()
    assert len(workspaces.list_ids(home)) == 1


def test_demo_workspace_removed_while_open_says_so_and_never_reopens(home, monkeypatch):
    """Issue #24 item 3: a reload, a shared link or a fresh browser on a removed workspace gets the message
    and the button — never a traceback — and nothing serves the removed store from memory."""
    import shutil

    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    monkeypatch.setenv("SYNTHLAB_WORKER", "thread")
    workspace_id = workspaces.create(home)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["workspace"] = workspace_id
    at.run()
    assert not at.exception and not at.error
    shutil.rmtree(home / "workspaces" / workspace_id)  # what idle cleanup does
    for visit in ("the same session", "reload (a new session)", "shared link in a fresh browser"):
        again = at if visit == "the same session" else AppTest.from_file(APP, default_timeout=60)
        again.query_params["workspace"] = workspace_id
        again.run()
        assert not again.exception, visit
        assert [e.value for e in again.error] == [
            "no such workspace (it may have been removed after being idle): start a new one"], visit
        assert again.button(key="ws_new")
    assert workspaces.list_ids(home) == [] and not (home / "workspaces" / workspace_id).exists()


def test_new_workspaces_are_capped_per_hour_with_a_clear_message(home, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    monkeypatch.setenv("SYNTHLAB_WORKER", "thread")
    monkeypatch.setenv("SYNTHLAB_DEMO_NEW_WORKSPACES_PER_HOUR", "1")
    workspaces.create(home)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.button(key="ws_new").click().run()
    assert not at.exception
    assert at.error[0].value == ("demo limit: this server made its 1 new workspaces for this hour; try again in "
                                 "60 minutes (or keep using a workspace link you have)")
    assert len(workspaces.list_ids(home)) == 1


def test_app_starts_a_worker_process_once_and_finds_it_again(home, monkeypatch):
    monkeypatch.delenv("SYNTHLAB_MODE", raising=False)
    monkeypatch.setenv("SYNTHLAB_WORKER", "process")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ui._process_checked.clear()
    pid = None
    try:
        AppTest.from_file(APP, default_timeout=60).run()
        deadline = time.monotonic() + 60
        while not (pid := worker.alive(home)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pid and pid > 0
        ui._process_checked.clear()  # as after an app restart: look again
        AppTest.from_file(APP, default_timeout=60).run()
        assert worker.alive(home) == pid
    finally:
        if pid and pid > 0:
            os.kill(pid, signal.SIGTERM)


def test_hosted_modes_default_to_a_worker_process(monkeypatch):
    monkeypatch.delenv("SYNTHLAB_WORKER", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    for mode, kind in (("local", "thread"), ("demo", "process"), ("team", "process")):
        monkeypatch.setenv("SYNTHLAB_MODE", mode)
        assert worker.worker_kind() == kind
    monkeypatch.setenv("SYNTHLAB_WORKER", "fork")
    with pytest.raises(UserError, match="SYNTHLAB_WORKER must be one of thread, process, not 'fork'"):
        worker.worker_kind()
