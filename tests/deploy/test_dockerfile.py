"""The container as written: the Dockerfile's own CMD and HEALTHCHECK command lines, run outside Docker
(Docker is not available here), serve a healthy app; the Space metadata reads the way Hugging Face reads it.

Two substitutions, and only these, are made to the CMD before running it:
- ``--server.address=0.0.0.0`` becomes ``127.0.0.1``: inside a container 0.0.0.0 is the container's own
  network namespace, but on this shared machine a test server may listen on loopback only;
- ``--server.port=8501`` becomes a free port when 8501 is already taken (other tests and helpers run
  servers at the same time); when 8501 is free it is kept.
The working directory is the repository root (the image's WORKDIR holds a copy of it) and
``SYNTHLAB_HOME`` is a temp folder (the image's is the /data volume).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def command_line(text: str) -> list[str]:
    """A CMD's argv: exec form (a JSON array) or shell form."""
    return json.loads(text) if text.startswith("[") else ["/bin/sh", "-c", text]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dockerfile() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for word, args in instructions(ROOT / "Dockerfile"):
        found.setdefault(word, []).append(args)
    return found


def test_dockerfile_declares_what_a_host_needs():
    d = dockerfile()
    assert d["FROM"][-1].startswith("python:3.11-slim")
    assert "8501" in d["EXPOSE"][-1].split()
    assert d["USER"][-1] not in ("root", "0")
    assert any("SYNTHLAB_HOME=/data" in env for env in d["ENV"])
    assert any("/data" in v for v in d["VOLUME"])
    assert any("requirements.txt" in r and "pip install" in r for r in d["RUN"])
    assert any(a.startswith("TORCH_INDEX_URL") for a in d["ARG"])
    assert "/_stcore/health" in d["HEALTHCHECK"][-1]
    argv = command_line(d["CMD"][-1])
    assert argv[:3] == ["streamlit", "run", "streamlit_app.py"]
    assert "--server.port=8501" in argv and "--server.address=0.0.0.0" in argv


def test_dockerignore_keeps_secrets_and_data_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".streamlit/secrets.toml", "synthlab-data/", ".git"} <= ignored


def test_space_metadata_is_read_by_huggingface_hub():
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(ROOT / "README.md")
    assert card.data.sdk == "docker"
    assert card.data.app_port == 8501
    assert card.data.title


def test_the_dockerfile_command_serves_a_healthy_app(tmp_path):
    d = dockerfile()
    argv = command_line(d["CMD"][-1])
    port = 8501 if port_free(8501) else free_port()
    argv = [a.replace("--server.address=0.0.0.0", "--server.address=127.0.0.1")
            .replace("--server.port=8501", f"--server.port={port}") for a in argv]
    if shutil.which(argv[0]) is None:  # the image's PATH has the streamlit script; a bare venv may not
        argv = [sys.executable, "-m", *argv]
    env = {**os.environ, "SYNTHLAB_HOME": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body, deadline = b"", time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    body = r.read().strip()
                    break
            except OSError:
                time.sleep(0.3)
        assert body == b"ok", (tmp_path / "server.log").read_text()[-2000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        health = d["HEALTHCHECK"][-1].partition("CMD")[2].strip().replace("127.0.0.1:8501", f"127.0.0.1:{port}")
        check = subprocess.run(shlex.split(health), capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)
