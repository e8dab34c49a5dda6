"""Issue #24, items 5 and 6: every demo limit on every way in, and the smaller promises of the reliability
table kept with their exact message and the store unchanged."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.run import demo_limits
from core.run.workspaces import QuotaExceeded
from core.store.database import Store
from tests.reliability.conftest import assert_consistent, cli, snapshot

ROOT = Path(__file__).resolve().parents[2]
KEY = "tk-secret-5f3a9c1e7b2d4a6f"
MASK = "••••••••" + KEY[-4:]


def noise_png(seed: int, side: int = 40) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def photos(folder: Path, n: int, seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"p{i}.png").write_bytes(noise_png(seed + i))
    return folder


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    monkeypatch.setenv("SYNTHLAB_DEMO_MAX_IMAGES", "20")
    monkeypatch.setenv("SYNTHLAB_DEMO_TOTAL_IMAGES", "17")
    monkeypatch.setenv("SYNTHLAB_DEMO_MAX_BYTES", "200000")


# -- item 5: the helper, on a real store -------------------------------------------------------------

def test_incoming_images_are_checked_against_every_quota(seeded, demo, monkeypatch):
    store = Store(seeded)
    held, have = store.count_images(), demo_limits.held_bytes(seeded)
    assert held == 16 and 0 < have < 200_000
    demo_limits.check_incoming(store, 4, 1000, source="real")  # exactly at the image limit: allowed
    with pytest.raises(QuotaExceeded) as err:
        demo_limits.check_incoming(store, 5, 1000, source="real")
    assert str(err.value) == ("demo limit: at most 20 images per workspace; it holds 16 and this import brings "
                              "up to 5 — bring fewer")
    monkeypatch.setenv("SYNTHLAB_DEMO_TOTAL_IMAGES", "2")
    with pytest.raises(QuotaExceeded) as err:
        demo_limits.check_incoming(store, 3, 1000, source="synthetic")
    assert str(err.value) == ("demo limit: at most 2 synthetic images per workspace; it holds 0 and this import "
                              "brings up to 3 — bring fewer")
    with pytest.raises(QuotaExceeded) as err:
        demo_limits.check_incoming(store, 1, 200_000, source="test")
    assert str(err.value).startswith("demo limit: at most 0.2 MB of images per workspace; it holds 0.0 MB and this "
                                     "import brings 0.2 MB")
    with pytest.raises(QuotaExceeded) as err:
        demo_limits.check_sample(store, 3000, 10, 256)
    assert str(err.value) == ("demo limit: at most 20 images per workspace; it holds 16 and the clothing sample "
                              "(3000 + 10 per tag, 4 tags) brings up to 12,040 — bring fewer")
    monkeypatch.setenv("SYNTHLAB_MODE", "local")
    demo_limits.check_sample(store, 3000, 10, 256)  # no limits outside the demo
    store.close()


# -- item 5: every way in, from the CLI ---------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["sample", "clothing", "--per-tag", "30", "--test-per-tag", "0"],
     ("demo limit: at most 20 images per workspace; it holds 16 and the clothing sample (30 + 0 per tag, "
     "4 tags) brings up to 120 — bring fewer")),
    (["import", "--tag", "zero", "--source", "real", "FOLDER"],
     "demo limit: at most 20 images per workspace; it holds 16 and this import brings up to 6 — bring fewer"),
    (["import", "--tag", "zero", "--source", "test", "FOLDER"],
     "demo limit: at most 20 images per workspace; it holds 16 and this import brings up to 6 — bring fewer"),
])
def test_demo_limits_cover_the_sample_and_every_import(seeded, demo, tmp_path, args, message):
    folder = photos(tmp_path / "six", 6)
    before = snapshot(seeded)
    result = cli(seeded, *[str(folder) if a == "FOLDER" else a for a in args], "--json")
    assert result.code == 2 and result.error_line == f"error: {message}"
    assert snapshot(seeded) == before


def test_synthetic_imports_count_against_the_generation_quota(seeded, demo, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_DEMO_MAX_IMAGES", "100")
    folder = photos(tmp_path / "made", 3)
    before = snapshot(seeded)
    result = cli(seeded, "import", "--tag", "zero", "--source", "synthetic", "--generator", "comfyui",
                 str(folder), "--json")
    assert result.code == 0, result.err  # 3 fit under 17
    result = cli(seeded, "import", "--tag", "zero", "--source", "synthetic", "--generator", "comfyui",
                 str(photos(tmp_path / "more", 15, seed=100)), "--json")
    assert result.code == 2 and result.error_line == (
        "error: demo limit: at most 17 synthetic images per workspace; it holds 3 and this import brings up "
        "to 15 — bring fewer")
    assert len(snapshot(seeded)["rows"]["images"]) == len(before["rows"]["images"]) + 3


# -- item 6: the smaller promises --------------------------------------------------------------------

def test_a_worker_lock_that_is_a_folder_is_one_clear_line(seeded):
    (seeded / "worker.lock").mkdir()
    before = snapshot(seeded)
    result = cli(seeded, "worker")
    assert result.code == 2
    assert result.error_line == (f"error: {seeded / 'worker.lock'} is a folder, not the worker's lock file: "
                                 f"remove it (rmdir {seeded / 'worker.lock'}) and start the worker again")
    assert (seeded / "worker.lock").is_dir() and snapshot(seeded) == before


def test_a_key_typed_into_a_prompt_is_masked_before_it_is_stored(seeded, monkeypatch):
    monkeypatch.setenv("VISION_TRAINING_KEY", KEY)
    result = cli(seeded, "tags", "add", "boots", "--prompt", f"boots {KEY}", "--negative", f"no {KEY}")
    assert result.code == 0, result.err
    store = Store(seeded)
    tag = store.get_tag("boots")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    assert (tag["prompt"], tag["negative"]) == (f"boots {MASK}", f"no {MASK}")
    assert [p for p in seeded.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()] == []


def test_a_key_typed_as_a_tag_name_is_refused(seeded, monkeypatch):
    monkeypatch.setenv("VISION_TRAINING_KEY", KEY)
    before = snapshot(seeded)
    result = cli(seeded, "tags", "add", KEY)
    assert result.code == 2 and result.error_line == (
        f"error: tag name {MASK!r} contains the value of VISION_TRAINING_KEY, a secret: choose another name")
    assert snapshot(seeded) == before


def test_ray_auto_without_a_cluster_writes_nothing(tmp_path, tiny_sd):
    pytest.importorskip("ray")
    home = tmp_path / "home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SYNTHLAB_RAY_ADDRESS": "auto", "RAY_TMPDIR": str(tmp_path / "ray")}
    env.pop("RAY_ADDRESS", None)
    run = [sys.executable, "-m", "core", "--home", str(home)]
    assert subprocess.run([*run, "tags", "add", "jeans", "--prompt", "jeans"], env=env, cwd=ROOT,
                          check=False, capture_output=True).returncode == 0
    before = snapshot(home)
    proc = subprocess.run([*run, "generate", "--tag", "jeans", "--count", "2", "--model", tiny_sd, "--workers", "2"],
                          env=env, cwd=ROOT, check=False, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0] == ("error: SYNTHLAB_RAY_ADDRESS=auto, but no Ray cluster runs on this machine; start one "
                        "with `ray start --head` or unset SYNTHLAB_RAY_ADDRESS")
    assert snapshot(home) == before
    assert_consistent(home)


def test_a_storage_error_outside_a_write_transaction_is_exit_2_with_the_store_message(seeded):
    """A full or failing disk can fail a read or the opening of ``lab.db`` (``disk I/O error``, ``unable to
    open``), not only a write: the documented exit-2 line, not ``internal error``."""
    db = (seeded / "lab.db").read_bytes()
    (seeded / "lab.db-wal").mkdir()  # SQLite cannot open its write-ahead log: SQLITE_CANTOPEN
    result = cli(seeded, "tags", "add", "boots")
    assert result.code == 2
    assert result.error_line == (f"error: cannot write to the store at {seeded}: unable to open database file — "
                                 "free some space (or make it writable) and run again; everything saved before is kept")
    (seeded / "lab.db-wal").rmdir()
    assert (seeded / "lab.db").read_bytes() == db
    assert_consistent(seeded)


def test_a_replaced_member_fails_its_run_with_the_default_encoder_too(seeded):
    """The sweep's shared embedding pass meets the damaged file first; it must not leave the run queued with
    no job: the run's own job fails with the file's message."""
    from tests.reliability.test_hardening import member
    from tests.reliability.test_hardening import noise_png as other_png

    path = member(seeded)
    original = path.read_bytes()
    path.write_bytes(other_png(999))
    result = cli(seeded, "train", "--slices", "base", "--json")
    assert result.code == 2, result.err
    line = result.error_line
    assert f"image file {path} does not match its SHA-256" in line
    store = Store(seeded)
    run = store.query_one("SELECT status, error, job_id FROM runs ORDER BY id DESC LIMIT 1")
    job = store.query_one("SELECT id, status, error FROM jobs ORDER BY id DESC LIMIT 1")
    store.close()
    assert (run["status"], run["job_id"], run["error"]) == ("failed", job["id"], line.removeprefix("error: "))
    assert (job["status"], job["error"]) == ("failed", line.removeprefix("error: "))
    path.write_bytes(original)
    assert_consistent(seeded)


def test_a_key_in_a_file_name_or_foreign_metadata_is_stored_masked(seeded, tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    monkeypatch.setenv("VISION_TRAINING_KEY", KEY)
    folder = tmp_path / "made"
    folder.mkdir()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"boots {KEY}\nSteps: 20, Seed: 3")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
        buf, "PNG", pnginfo=info)
    (folder / f"shot-{KEY}.png").write_bytes(buf.getvalue())
    result = cli(seeded, "import", "--tag", "zero", "--source", "synthetic", "--generator", "a1111", str(folder),
                 "--json")
    assert result.code == 0 and result.json["imported"] == 1, result.err
    store = Store(seeded)
    row = store.query_one("SELECT prompt, original_name, extra FROM images WHERE source = 'synthetic'")
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    assert row["prompt"] == f"boots {MASK}" and row["original_name"].endswith(f"shot-{MASK}.png")
    assert KEY not in row["extra"]
    assert [p for p in seeded.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()] == []
