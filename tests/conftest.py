"""Shared fixtures: every test gets its own store folder, and nothing ever reaches the hub."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from core.store.database import Store  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh ``SYNTHLAB_HOME`` for this test."""
    path = tmp_path / "home"
    monkeypatch.setenv("SYNTHLAB_HOME", str(path))
    for name in ("VISION_TRAINING_ENDPOINT", "VISION_TRAINING_KEY", "VISION_PREDICTION_ENDPOINT",
                 "VISION_PREDICTION_KEY", "VISION_PREDICTION_RESOURCE_ID"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.fixture(autouse=True)
def _stop_job_workers_a_test_started():
    """A page test's ``ui.store()`` starts a job worker thread in this process, and Streamlit's resource
    cache keeps it alive after the test. Stop the workers a test started (cancelling a job one still runs),
    so no later test shares this interpreter with a hundred pollers or with another test's training."""
    import threading

    from core.run import job_threads, jobs

    before = set(threading.enumerate())
    yield
    started = [t for t in threading.enumerate()
               if t not in before and isinstance(t, (job_threads.Worker, job_threads.FairWorker)) and t.is_alive()]
    for worker in started:
        current = worker.current
        store, job_id = ((worker.store, current) if isinstance(worker, job_threads.Worker)
                         else (None, None))  # a FairWorker's store is one of its workspaces; it stops between jobs
        if store is not None and job_id is not None:
            try:
                jobs.cancel(store, job_id)
            except Exception:  # noqa: BLE001 - the job ended meanwhile, or its store is gone
                pass
        worker.stop(timeout=0)  # ask every one first; wait below
    for worker in started:
        worker.join(15)


@pytest.fixture
def store(home):
    s = Store(home)
    yield s
    s.close()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (Playwright's sync API allows one driver per thread)."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A tiny random-weight StableDiffusionPipeline saved to a folder (loaded with from_pretrained)."""
    from tests.tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny random-weight CLIP model (vision + text) with its processor, saved to a folder."""
    from tests.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op torch thread per test: on two shared cores OpenMP threads thrash (25 steps went from
    0.65 s to 18 s). Subprocesses get ``OMP_NUM_THREADS=1`` from their tests."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def digits(home):
    """A store with real photos (scikit-learn's digits 0–3) as real and test images, and a 'digits' sweep."""
    from tests.datasets import copy_store, digits_template

    s = copy_store(digits_template(), home)
    yield s
    s.close()


@pytest.fixture(scope="session")
def populated_template(tmp_path_factory, tiny_clip):
    """A store with trained and evaluated runs (built once per session; tests get copies)."""
    from tests.core.views.test_report import build_populated

    return build_populated(tmp_path_factory.mktemp("populated"), tiny_clip)


@pytest.fixture
def populated(home, populated_template):
    from tests.core.views.test_report import copy_populated

    s = copy_populated(populated_template, home)
    yield s
    s.close()
