"""Issue #24, items 1 and 3: thousands of demo workspaces under a 1 024 open-file limit, removed workspaces,
the hourly creation cap, and idle cleanup that never removes a workspace with a queued or running job.

The workspaces are made as the product leaves them (a folder with ``lab.db``): one real empty store, and
its ``lab.db`` hard-linked into the thousands that are only ever read, so making them costs a second; the
workspaces that take jobs are real copies.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import NotFound
from core.run import jobs, workspace_pool, workspaces
from core.store.database import Store
from tests.reliability import workspace_jobs

ROOT = Path(__file__).resolve().parents[2]
MANY = 3000
DAY = 24 * 3600


def _id(i: int) -> str:
    return f"{i:032x}"


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    """A home with MANY workspaces; ``fresh`` and ``stale`` (untouched for a day) are real stores."""
    home = tmp_path_factory.mktemp("crowd")
    template = home / "template"
    Store(template).close()
    root = home / "workspaces"
    root.mkdir()
    for i in range(MANY):
        folder = root / _id(i)
        folder.mkdir()
        os.link(template / "lab.db", folder / "lab.db")
    fresh, stale = _id(10**9), _id(10**9 + 1)
    for name in (fresh, stale):
        (root / name).mkdir()
        shutil.copy(template / "lab.db", root / name / "lab.db")
    old = time.time() - DAY - 60
    for path in (root / stale / "lab.db", root / stale):
        os.utime(path, (old, old))
    workspace_jobs.register()
    return home, fresh, stale


def _wait_started(store: Store, job_id: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if jobs.get_job(store, job_id)["status"] != "queued":
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still queued after {timeout} s")


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_pool_worker_serves_any_workspace_under_1024_open_files(crowd):
    home, fresh, stale = crowd
    proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.pool_worker", str(home), "90"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        seconds = {}
        for name in (fresh, stale):
            store = Store(home / "workspaces" / name)
            job_id = jobs.submit(store, "echo", {"n": name})
            seconds[name] = _wait_started(store, job_id, timeout=45)
            assert jobs.wait(store, job_id, timeout=30)["result"] == {"echo": name}
            store.close()
        assert _open_fds(proc.pid) < 200, "the worker keeps a bounded number of files open"
        print(f"job start: fresh {seconds[fresh]:.1f} s, stale (a day idle) {seconds[stale]:.1f} s, "
              f"{_open_fds(proc.pid)} open files, {MANY + 2} workspaces")
        assert seconds[stale] < 10, seconds  # the first one also waited for the start-up scan
    finally:
        proc.terminate()
        proc.wait(30)
    assert all(not (home / "workspaces" / _id(i) / "lab.db-wal").exists() for i in range(0, MANY, 97))


def test_core_worker_serves_any_workspace_under_1024_open_files(crowd, tmp_path):
    home, fresh, _ = crowd
    env = {**os.environ, "SYNTHLAB_MODE": "demo"}
    script = ("import resource, sys; h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
              "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, h)); from core.cli.main import main; "
              f"sys.exit(main(['--home', {str(home)!r}, 'worker']))")
    log = open(tmp_path / "worker.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        store = Store(home / "workspaces" / fresh)
        job_id = jobs.submit(store, "evaluate", {"auto": True, "probe": time.time()})
        seconds = _wait_started(store, job_id, timeout=30)
        print(f"python -m core worker: job started in {seconds:.1f} s after the worker was launched "
              f"(start-up and the first scan of {MANY + 2} workspaces included), {_open_fds(proc.pid)} open files")
        assert _open_fds(proc.pid) < 200
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


# -- item 2: fair share in time ---------------------------------------------------------------------

def test_a_visitors_trivial_job_finishes_while_another_visitors_long_job_runs(tmp_path):
    """Two visitors: A's 40-batch job (4 s) has the worker; B's one-image job starts within seconds and
    finishes while A's is still unfinished (A yields between batches after a 1 s slice), then A finishes."""
    home = tmp_path / "home"
    root = home / "workspaces"
    a_folder, b_folder = root / _id(1), root / _id(2)
    for folder in (a_folder, b_folder):
        Store(folder).close()
    workspace_jobs.register()
    env = {**os.environ, "SYNTHLAB_DEMO_SLICE_SECONDS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.pool_worker", str(home), "60"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        a, b = Store(a_folder), Store(b_folder)
        a_job = jobs.submit(a, "steps", {"steps": 40, "seconds": 0.1})
        _wait_started(a, a_job, timeout=30)
        time.sleep(0.3)
        b_job = jobs.submit(b, "echo", {"n": 1})
        submitted = time.monotonic()
        assert jobs.wait(b, b_job, timeout=30)["status"] == "done"
        waited = time.monotonic() - submitted
        a_state = jobs.get_job(a, a_job)
        print(f"B's one-image job done {waited:.1f} s after it was queued; A then {a_state['status']} "
              f"at {a_state['done']}/{a_state['total']}")
        assert a_state["status"] != "done" and waited < 5
        assert jobs.wait(a, a_job, timeout=40)["result"] == {"steps": 40}
        a.close()
        b.close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_time_slice_setting_is_checked(monkeypatch):
    from core.run import timeslice

    monkeypatch.setenv("SYNTHLAB_DEMO_SLICE_SECONDS", "soon")
    with pytest.raises(workspace_pool.UserError) as err:
        timeslice.slice_seconds()
    assert str(err.value) == "SYNTHLAB_DEMO_SLICE_SECONDS must be a number of seconds, not 'soon'"


# -- the pool: bounded, and never serving a removed workspace ----------------------------------------

def _workspace(root: Path, i: int) -> Path:
    folder = root / _id(i)
    Store(folder).close()
    return folder


def test_pool_closes_least_recently_used_stores(tmp_path):
    folders = [_workspace(tmp_path, i) for i in range(5)]
    pool = workspace_pool.StorePool(capacity=2)
    stores = [pool.get(f) for f in folders]
    assert pool.open_count() == 2
    assert pool.get(folders[4]) is stores[4] and pool.get(folders[0]) is not stores[0]
    assert pool.get(folders[0]).count_images() == 0  # a closed store reopens on its next use


def test_removed_workspace_is_never_reopened_from_memory(tmp_path):
    folder = _workspace(tmp_path, 1)
    pool = workspace_pool.StorePool()
    store = pool.get(folder)
    store.add_tag("jeans")
    shutil.rmtree(folder)
    with pytest.raises(NotFound) as err:
        pool.get(folder)
    assert str(err.value) == "no such workspace (it may have been removed after being idle): start a new one"
    assert not folder.exists(), "nothing re-creates a removed workspace"
    _workspace(tmp_path, 1)  # a new store at the same path is a different file: not the cached one
    assert pool.get(folder).list_tags() == []


# -- idle cleanup ---------------------------------------------------------------------------------

@pytest.mark.parametrize("status,removed", [("queued", False), ("running", False), ("done", True)])
def test_cleanup_never_removes_a_workspace_with_a_queued_or_running_job(tmp_path, status, removed):
    workspace_jobs.register()
    folder = _workspace(tmp_path, 2)
    store = Store(folder)
    job_id = jobs.submit(store, "echo", {})
    store.conn.execute("UPDATE jobs SET status = ? WHERE id = ?", (status, job_id))
    before = store.conn.execute("SELECT id, status FROM jobs").fetchall()
    store.close()
    assert workspace_pool.remove_if_idle(folder) is removed
    assert folder.exists() is not removed
    if not removed:
        with sqlite3.connect(folder / "lab.db") as conn:
            assert conn.execute("SELECT id, status FROM jobs").fetchall() == [tuple(r) for r in before]
    assert not any((tmp_path / ".removed").iterdir())


def test_cleanup_holds_the_write_lock_while_it_checks(tmp_path):
    """A job being queued (its transaction open) keeps the workspace: the cleanup cannot get the lock."""
    workspace_jobs.register()
    folder = _workspace(tmp_path, 3)
    writer = sqlite3.connect(folder / "lab.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    assert workspace_pool.remove_if_idle(folder, busy_timeout=0.2) is False
    assert time.monotonic() - started < 5
    writer.execute("ROLLBACK")
    writer.close()
    assert (folder / "lab.db").is_file()


# -- the hourly creation cap ------------------------------------------------------------------------

def test_new_workspaces_are_capped_per_hour(tmp_path):
    now = 1_800_000_000.0
    for k in range(3):
        workspace_pool.claim_creation(tmp_path, limit=3, now=now + k)
    with pytest.raises(workspace_pool.CreationLimited) as err:
        workspace_pool.claim_creation(tmp_path, limit=3, now=now + 600)
    assert str(err.value) == ("demo limit: this server made its 3 new workspaces for this hour; try again in "
                              "51 minutes (or keep using a workspace link you have)")
    assert not any(p.name != ".created" for p in tmp_path.iterdir()), "a refused creation writes no workspace"
    workspace_pool.claim_creation(tmp_path, limit=3, now=now + 3601)  # an hour later: allowed again


def test_creation_cap_setting_is_checked(monkeypatch):
    monkeypatch.setenv("SYNTHLAB_DEMO_NEW_WORKSPACES_PER_HOUR", "many")
    with pytest.raises(workspace_pool.UserError) as err:
        workspace_pool.new_per_hour()
    assert str(err.value) == "SYNTHLAB_DEMO_NEW_WORKSPACES_PER_HOUR must be a whole number, not 'many'"
    monkeypatch.delenv("SYNTHLAB_DEMO_NEW_WORKSPACES_PER_HOUR")
    assert workspace_pool.new_per_hour() == 200
    assert workspaces.valid_id(_id(1))
