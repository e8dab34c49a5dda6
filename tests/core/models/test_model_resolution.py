"""The hub default generator (SD-Turbo, the default with CUDA; chosen here with SYNTHLAB_MODEL) fails fast
and says why: HF_HUB_OFFLINE set, the hub unreachable, or not cached —
one line, exit 2, within seconds, and the Generate page shows the same line without hanging."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import config
from core.models import hub
from tests.pages.apptest import open_page, texts
from tests.reliability.conftest import assert_consistent, snapshot

ROOT = Path(__file__).resolve().parents[3]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released): connects are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate_cli(home: Path, hf_home: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "core", "--home", str(home), "generate", "--tag", "jeans",
                           "--count", "1", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**base, "HF_HOME": str(hf_home), "PYTHONPATH": str(ROOT),
                               "SYNTHLAB_MODEL": config.DEFAULT_MODEL, **env})
    return proc, time.monotonic() - started


@pytest.fixture
def jeans_home(home, store):
    store.add_tag("jeans", "{blue|black} jeans")
    return home


@pytest.mark.parametrize("case, message, absent", [
    ("unreachable", "the Hugging Face hub cannot be reached (http://127.0.0.1:", "HF_HUB_OFFLINE"),
    ("offline", "HF_HUB_OFFLINE is set", "cannot be reached"),
])
def test_default_model_without_the_hub_exits_2_at_once_with_one_line(jeans_home, tmp_path, case, message, absent):
    empty_cache = tmp_path / "hf-home"
    empty_cache.mkdir()
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"} if case == "unreachable" else {"HF_HUB_OFFLINE": "1"}
    before = snapshot(jeans_home)
    proc, seconds = generate_cli(jeans_home, empty_cache, **env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no huggingface retry warnings
    assert lines[0].startswith("error: ") and config.DEFAULT_MODEL in lines[0] and message in lines[0]
    assert absent not in lines[0]
    assert "not in the local Hugging Face cache" in lines[0] and "local folder" in lines[0]
    assert proc.stdout == ""
    # huggingface_hub's own retries took 23 s here; one refused connect takes milliseconds
    assert seconds < 15, seconds
    assert snapshot(jeans_home) == before
    assert_consistent(jeans_home)


def test_hub_state_tells_offline_unreachable_and_online_apart(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    hub.forget()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    assert hub.hub_state() == hub.UNREACHABLE
    with socket.socket() as server:  # something listening: the hub "answers"
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert hub.hub_state() == hub.ONLINE
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.hub_state() == hub.OFFLINE
    hub.forget()


def test_generate_page_shows_the_same_line_without_hanging(jeans_home, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("SYNTHLAB_MODEL", config.DEFAULT_MODEL)
    hub.forget()
    at = open_page("generate")
    assert at.selectbox(key="gen_model_choice").value == config.DEFAULT_MODEL
    before = snapshot(jeans_home)
    started = time.monotonic()
    at.button(key="gen_submit").click().run(timeout=30)
    assert time.monotonic() - started < 25
    assert not at.exception
    error = texts(at.error)
    assert "the Hugging Face hub cannot be reached" in error and "HF_HUB_OFFLINE" not in error
    assert "local folder" in texts(at.info)  # the way out: a preset or a local folder
    assert snapshot(jeans_home) == before
    hub.forget()
