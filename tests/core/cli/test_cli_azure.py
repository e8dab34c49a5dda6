"""``python -m core train --backend azure`` / ``evaluate`` / ``azure status|cleanup`` as subprocesses, against
the fake Custom Vision server running in this test process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.store.database import Store
from tests.core.train.test_backends_azure import PREDICTION_KEY, TRAINING_KEY, azure_env, cut, fill_store, uploaded
from tests.fakes import FakeCustomVision


def environment(home: Path, fake: FakeCustomVision, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VISION_", "SYNTHLAB_"))}
    return {**env, "HF_HUB_OFFLINE": "1", "SYNTHLAB_HOME": str(home), **azure_env(fake), **extra}


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def grep_home(home: Path, secret: str) -> list[str]:
    """Every file under the store (db, WAL, logs, cache, images) that holds ``secret``."""
    needle = secret.encode()
    return [str(p) for p in home.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.fixture
def fake():
    with FakeCustomVision(TRAINING_KEY, PREDICTION_KEY, training_delay=0.05) as f:
        yield f


@pytest.fixture
def sweep(home):
    store = Store(home)
    fill_store(store)
    cut(store, counts=(5, 8), repeats=2)
    store.close()
    return home


def test_train_then_evaluate_under_throttling_with_no_key_anywhere(sweep, fake):
    home = sweep
    env = environment(home, fake)
    fake.throttle(every=4, retry_after=0)
    train = cli(env, "train", "--slices", "sw", "--backend", "azure", "--tier", "F0", "--json")
    runs = last_json(train)["runs"]
    assert [r["status"] for r in runs] == ["done"] * 4 and {r["backend"] for r in runs} == {"azure"}
    assert len(fake.created_projects) == 2
    assert all(len(fake.iterations(p)) == 2 for p in fake.projects)  # one project per series, one iteration per count
    assert sorted(fake.image_counts.values()) == [16, 16] and uploaded(fake) == 32  # every image once
    assert any(r.status == 429 for r in fake.requests_for("CreateImagesFromFiles"))

    evaluate = cli(env, "evaluate", "--json")
    results = last_json(evaluate)["results"]
    assert len(results) == 4
    for result in results:
        assert len(result["per_image"]) == 4
        for p in result["per_image"]:
            assert set(p["probabilities"]) == {"green", "red"}
            assert sum(p["probabilities"].values()) == pytest.approx(1.0)
            assert max(p["probabilities"], key=p["probabilities"].get) == p["tag"]

    from core.views.report import write_report

    store = Store(home)
    assert write_report(store, home / "report.html").exists()  # in-process: the same report, faster
    store.close()
    status = cli(env, "azure", "status", "--json")
    shown = last_json(status)
    assert shown["connection"]["ok"] and len(shown["projects"]) == 2
    assert shown["settings"]["VISION_TRAINING_KEY"].startswith("••••")

    for proc in (train, evaluate, status):
        for key in (TRAINING_KEY, PREDICTION_KEY):
            assert key not in proc.stdout and key not in proc.stderr
    assert grep_home(home, TRAINING_KEY) == [] and grep_home(home, PREDICTION_KEY) == []
    assert any(p.name == "lab.db" for p in home.iterdir())

    cleanup = last_json(cli(env, "azure", "cleanup", "--sweep", "sw", "--json"))
    assert len(cleanup["deleted"]) == 2 and fake.projects == {} and len(fake.deleted_projects) == 2


def test_wrong_key_exits_2_with_one_clear_line(sweep, fake):
    env = environment(sweep, fake, VISION_TRAINING_KEY="not-the-key-31337")
    proc = cli(env, "train", "--slices", "sw", "--backend", "azure", "--json")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: Azure refused the training key (401)")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "not-the-key-31337" not in proc.stderr + proc.stdout
    assert fake.created_projects == [] and grep_home(sweep, "not-the-key-31337") == []

    env.pop("VISION_TRAINING_ENDPOINT")
    proc = cli(env, "azure", "cleanup", "--json")
    assert proc.returncode == 2 and "VISION_TRAINING_ENDPOINT is not set" in proc.stderr


def test_killed_mid_upload_resumes_with_the_same_project_and_no_duplicates(sweep, fake):
    home = sweep
    env = environment(home, fake, SYNTHLAB_AZURE_BATCH="2")
    fake.latency = 0.25
    proc = subprocess.Popen([sys.executable, "-m", "core", "train", "--slices", "sw", "--backend", "azure"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(fake.requests_for("CreateImagesFromFiles")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup, no finally blocks
    proc.wait(timeout=10)
    fake.latency = 0.0
    assert len(fake.created_projects) == 1
    [first] = fake.projects
    assert 0 < fake.image_count(first) < 16  # killed mid-upload

    runs = last_json(cli(env, "train", "--slices", "sw", "--backend", "azure", "--json"))["runs"]
    assert [r["status"] for r in runs] == ["done"] * 4
    assert len(fake.created_projects) == 2 and first in fake.projects  # the second is the other series
    assert sorted(fake.image_counts.values()) == [16, 16] and uploaded(fake) == 32
    assert all(len(fake.iterations(p)) == 2 for p in fake.projects)
    assert len([r for r in fake.requests_for("CreateTag") if r.status == 200]) == 4
    store = Store(home)
    rows = store.query("SELECT project, COUNT(*) AS n, COUNT(DISTINCT azure_image_id) AS d FROM azure_images "
                       "GROUP BY project")
    assert [(r["n"], r["d"]) for r in rows] == [(16, 16), (16, 16)]
    store.close()
