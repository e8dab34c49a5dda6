"""`experiment run`: the whole question answered offline from an empty store, resumable, nothing made twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.datasets import fashion_available

ROOT = Path(__file__).resolve().parents[3]
SMALL = ["--per-tag", "12", "--test-per-tag", "8", "--counts", "6,12", "--repeats", "1"]
pytestmark = pytest.mark.skipif(not fashion_available(), reason="dataset-fashion-mnist is not installed")


def _cli(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core", "--home", str(home), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def _counts(home: Path) -> dict:
    """Rows so far, read-only (opening a Store would tidy files another process is writing)."""
    import sqlite3

    db = home / "lab.db"
    if not db.exists():
        return {"images": 0, "synthetic": 0, "runs": 0, "slices": 0}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]
        return {"images": one("SELECT COUNT(*) FROM images"),
                "synthetic": one("SELECT COUNT(*) FROM images WHERE source = 'synthetic'"),
                "runs": one("SELECT COUNT(*) FROM runs"), "slices": one("SELECT COUNT(*) FROM slices")}
    except sqlite3.OperationalError:
        return {"images": 0, "synthetic": 0, "runs": 0, "slices": 0}
    finally:
        conn.close()


def test_experiment_run_answers_both_questions_at_every_count_and_a_rerun_makes_nothing(tmp_path):
    home = tmp_path / "home"
    done = _cli(home, "experiment", "run", *SMALL, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    pairs = {(c["pair"], c["count_per_tag"]) for c in out["comparisons"]}
    assert pairs == {(p, n) for p in ("synthetic only vs real-only baseline",
                                      "mixed (half real, half synthetic) vs real-only baseline") for n in (6, 12)}
    for c in out["comparisons"]:
        assert c["verdict"] in ("a better", "b better", "within noise")
        assert c["ci"][0] <= c["difference"] <= c["ci"][1] and 0 <= c["p_value"] <= 1
        assert set(("a", "b", "count_per_tag", "difference", "ci", "p_value", "verdict")) <= set(c)
    assert len(out["sentences"]) == 4 and out["missing"] == []
    before = _counts(home)
    assert before["synthetic"] == 4 * 12 and before["runs"] == 3 * 2
    again = _cli(home, "experiment", "run", *SMALL, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert _counts(home) == before
    assert json.loads(again.stdout.strip().splitlines()[-1])["comparisons"] == out["comparisons"]


def test_killed_mid_experiment_it_finishes_without_redoing_work(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), "experiment", "run", *SMALL],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if home.exists() and _counts(home)["synthetic"] >= 12:
                break
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    made = _counts(home)
    assert 12 <= made["synthetic"] <= 48
    done = _cli(home, "experiment", "run", *SMALL, "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    after = _counts(home)
    assert after["synthetic"] == 48 and after["runs"] == 6
    assert len(json.loads(done.stdout.strip().splitlines()[-1])["comparisons"]) == 4


def test_a_bad_count_is_refused_before_anything_is_written(tmp_path):
    home = tmp_path / "home"
    bad = _cli(home, "experiment", "run", "--per-tag", "10", "--counts", "10,30", "--json")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: the largest count (30) is above --per-tag (10)")
    assert not (home / "lab.db").exists() or _counts(home) == {"images": 0, "synthetic": 0, "runs": 0, "slices": 0}


def test_cancelling_the_experiment_job_mid_generation_ends_it_cancelled_not_failed(store):
    from core.flows import experiment_run
    from core.run import job_threads, jobs

    job_id = experiment_run.submit_experiment(store, experiment_run.ExperimentRun(
        per_tag=40, test_per_tag=4, counts=(4, 8), repeats=1))
    worker = job_threads.Worker(store, poll_seconds=0.1)
    worker.start()
    try:
        deadline = time.monotonic() + 300
        while (time.monotonic() < deadline and _counts(store.root)["synthetic"] == 0
               and jobs.get_job(store, job_id)["status"] in ("queued", "running")):
            time.sleep(0.1)
        assert _counts(store.root)["synthetic"] > 0, jobs.get_job(store, job_id)
        jobs.cancel(store, job_id)
        ended = jobs.wait(store, job_id, timeout=60)
    finally:
        worker.stop(timeout=60)
    assert ended["status"] == "cancelled", ended
    assert experiment_run.active_job(store) is None
    assert all(j["status"] in ("done", "cancelled") for j in jobs.list_jobs(store)), jobs.list_jobs(store)
