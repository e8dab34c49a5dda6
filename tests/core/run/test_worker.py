"""`python -m core worker`: the job worker as its own process — one per home (a second is refused), found
again by whoever looks after a restart, replaced after a kill -9 with the interrupted job finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.generate.generation import submit_generation
from core.generate.planning import GenerationSpec
from core.run import jobs, worker, workspaces
from core.store.database import Store

ROOT = Path(__file__).resolve().parents[3]


def _env(**extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}
    env.pop("SYNTHLAB_MODE", None)
    env.update(extra)
    return env


def _spec(tiny_sd, count, seed=0):
    return GenerationSpec(tag="jeans", count=count, model=str(tiny_sd), width=64, height=64, steps=2, seed=seed)


def _wait_alive(home, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = worker.alive(home)
        if pid:
            return pid
        time.sleep(0.05)
    raise TimeoutError("no worker")


@pytest.fixture
def started():
    pids = []
    yield pids
    for pid in pids:  # only the workers this test started, by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_worker_process_runs_jobs_is_unique_and_survives_a_kill(store, home, tiny_sd, started, monkeypatch):
    monkeypatch.delenv("SYNTHLAB_MODE", raising=False)
    store.add_tag("jeans", "{blue|black} jeans")
    assert worker.alive(home) is None
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), "worker", "--poll", "0.1"],
                            cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started.append(proc.pid)
    assert _wait_alive(home) == proc.pid

    job = submit_generation(store, _spec(tiny_sd, 2))
    assert jobs.wait(store, job, timeout=120)["status"] == "done"
    assert store.count_images(source="synthetic") == 2

    second = subprocess.run([sys.executable, "-m", "core", "--home", str(home), "worker"], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    assert second.stderr.strip() == f"error: a worker (pid {proc.pid}) already serves {home}"

    long_job = submit_generation(store, _spec(tiny_sd, 60, seed=10))
    deadline = time.monotonic() + 120
    while jobs.get_job(store, long_job)["done"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert worker.alive(home) is None
    assert jobs.get_job(store, long_job)["status"] == "running"  # its owner is dead

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        pid = worker.ensure_running(home)
    started.append(pid)
    assert _wait_alive(home) == pid and worker.ensure_running(home) == pid  # found, not started twice
    jobs.cancel(store, long_job)
    assert jobs.wait(store, long_job, timeout=120)["status"] in ("cancelled", "done")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while worker.alive(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker.alive(home) is None


@pytest.mark.slow
def test_worker_process_in_demo_mode_serves_every_workspace(home, tiny_sd, started, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    monkeypatch.setenv("SYNTHLAB_DEMO_MODELS", str(tiny_sd))
    ids = [workspaces.create(home) for _ in range(2)]
    queued = []
    for workspace_id in ids:
        s = workspaces.open_store(workspace_id, home)
        s.add_tag("jeans", "{blue|black} jeans")
        queued.append((s, submit_generation(s, _spec(tiny_sd, 2))))
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), "worker", "--poll", "0.1"],
                            cwd=ROOT, env=_env(SYNTHLAB_MODE="demo", SYNTHLAB_DEMO_MODELS=str(tiny_sd)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.append(proc.pid)
    for s, job in queued:
        assert jobs.wait(s, job, timeout=120)["status"] == "done"
        assert s.count_images(source="synthetic") == 2
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode == 0
    assert not Store(home).count_images()  # nothing was made in the home's own store


def test_worker_process_reads_the_apps_secrets_file(tmp_path, monkeypatch):
    from core import config

    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('SYNTHLAB_MODE = "demo"\nVISION_TRAINING_KEY = "k-123"\n'
                                                         '[auth]\ncookie_secret = "x"\n')
    monkeypatch.delenv("SYNTHLAB_MODE", raising=False)
    monkeypatch.delenv("VISION_TRAINING_KEY", raising=False)
    before = list(config._secret_sources)
    config._secret_sources[:] = []  # only the worker's own source (no st.secrets of an imported core.ui)
    try:
        worker._secrets_file_source([tmp_path / "missing.toml", tmp_path / ".streamlit" / "secrets.toml"])
        assert config.setting("VISION_TRAINING_KEY") == "k-123"
        assert workspaces.mode() == "demo"
        assert config.setting("auth") is None
    finally:
        config._secret_sources[:] = before
