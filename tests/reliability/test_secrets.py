"""Issue 13 item 14: every known secret value is masked wherever it appears — in an endpoint URL, a validation
message, a job error, a log, the CLI's stdout and stderr, a page — not only where a key is expected."""

from __future__ import annotations

import socket

import pytest

from core.errors import UserError
from core.run import jobs, registry
from core.store.database import Store
from tests.reliability.conftest import assert_consistent, cli, snapshot

KEY = "tk-secret-5f3a9c1e7b2d4a6f"
MASK = "••••••••" + KEY[-4:]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grep_home(home, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in home.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.fixture
def keyed(seeded, monkeypatch):
    monkeypatch.setenv("VISION_TRAINING_KEY", KEY)
    for name, value in {"SYNTHLAB_AZURE_RETRY_SECONDS": "1", "SYNTHLAB_AZURE_BACKOFF": "0.01",
                        "SYNTHLAB_AZURE_MAX_WAIT": "0.05", "SYNTHLAB_AZURE_RATE": "0"}.items():
        monkeypatch.setenv(name, value)
    return seeded


@pytest.mark.parametrize("offline", [True, False])
def test_a_key_inside_the_endpoint_is_masked_by_azure_status(keyed, monkeypatch, offline):
    monkeypatch.setenv("VISION_TRAINING_ENDPOINT", f"http://127.0.0.1:{closed_port()}/?key={KEY}")
    before = snapshot(keyed)
    result = cli(keyed, "azure", "status", *(["--offline"] if offline else []), "--json")
    assert result.code == 0, result.err
    assert KEY not in result.out + result.err
    assert f"?key={MASK}" in result.out
    assert result.json["settings"]["VISION_TRAINING_KEY"] == MASK
    assert snapshot(keyed) == before and grep_home(keyed, KEY) == []
    assert_consistent(keyed)


def test_a_key_echoed_by_a_validation_error_is_masked(keyed, monkeypatch):
    monkeypatch.setenv("VISION_TRAINING_ENDPOINT", f"not a url {KEY}")
    before = snapshot(keyed)
    result = cli(keyed, "train", "--slices", "az", "--backend", "azure")
    assert result.code == 2
    line = result.error_line
    assert "VISION_TRAINING_ENDPOINT must start with https://" in line and MASK in line and KEY not in line
    status = cli(keyed, "azure", "status", "--offline")
    assert KEY not in status.out + status.err
    assert snapshot(keyed) == before and grep_home(keyed, KEY) == []
    assert_consistent(keyed)


def test_a_key_in_any_printed_text_is_masked(keyed):
    """A user who pasted the key into a prompt: stored as typed (it is their text), never printed unmasked."""
    added = cli(keyed, "tags", "add", "leaky", "--prompt", f"a shoe {KEY}", "--json")
    assert added.code == 0 and KEY not in added.out + added.err and MASK in added.out
    listed = cli(keyed, "tags", "list", "--json")
    assert KEY not in listed.out and MASK in listed.out
    assert_consistent(keyed)


def leaky_job(ctx: jobs.JobContext) -> dict:
    """A job handler whose progress message and failure carry the key (a library that echoed it)."""
    ctx.progress(1, 2, f"calling http://127.0.0.1/?key={KEY}", force=True)
    if ctx.params.get("user"):
        raise UserError(f"refused: {KEY}")
    raise RuntimeError(f"the server said: bad key {KEY}")


@pytest.mark.parametrize("user", [True, False])
def test_job_messages_errors_and_logs_never_store_the_key(keyed, user):
    registry.register("leak", "tests.reliability.test_secrets:leaky_job")
    store = Store(keyed)
    job_id = jobs.submit(store, "leak", {"user": user}, claim=True)
    with pytest.raises((UserError, RuntimeError)):
        jobs.run_job(store, job_id)
    job = jobs.get_job(store, job_id)
    assert job["status"] == "failed" and MASK in job["error"] and KEY not in job["error"]
    assert KEY not in job["message"]
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    assert grep_home(keyed, KEY) == []
    if not user:
        assert MASK in (keyed / "logs" / "jobs.log").read_text()
    assert_consistent(keyed)


def test_an_internal_error_log_masks_the_key(keyed, monkeypatch):
    from core.cli import data_commands

    def boom(store, a):
        raise RuntimeError(f"unexpected: {KEY}")

    monkeypatch.setattr(data_commands, "cmd_tags_list", boom)
    result = cli(keyed, "tags", "list")
    assert result.code == 1 and KEY not in result.err and MASK in result.err
    assert KEY not in (keyed / "logs" / "cli.log").read_text()
    assert grep_home(keyed, KEY) == []
    assert_consistent(keyed)


def test_the_pages_mask_the_key_in_messages(keyed, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.pages.apptest import page_path, texts

    monkeypatch.setenv("VISION_TRAINING_ENDPOINT", f"not a url {KEY}")
    at = AppTest.from_file(page_path("train"), default_timeout=60)
    at.run()
    at.selectbox(key="tr_backend").set_value("azure").run()
    assert not at.exception, at.exception
    shown = "\n".join(texts(getattr(at, kind)) for kind in ("markdown", "caption", "success", "error", "warning"))
    shown += "\n".join(e.value.to_csv() for e in at.table)
    assert "VISION_TRAINING_ENDPOINT must start with https://" in shown.replace("\\", "")  # markdown-escaped
    assert KEY not in shown and MASK in shown
    assert_consistent(keyed)
