"""`python -m core generate` as a user runs it: JSON last line, provenance via `images list`,
one-line exit-2 errors that write nothing, and a `kill -9` in the middle of a series."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.generate.generation import generate
from core.generate.planning import GenerationSpec
from core.store.database import Store

ROOT = Path(__file__).resolve().parents[3]
# one torch thread: on a shared 2-core box, two OpenMP threads per process spin and crawl
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def cli(home, *args, timeout=180):
    return subprocess.run([sys.executable, "-m", "core", "--home", str(home), *args], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=timeout)


def last_json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def written(home):
    db = sqlite3.connect(Path(home) / "lab.db")
    try:
        counts = db.execute("SELECT (SELECT COUNT(*) FROM jobs), (SELECT COUNT(*) FROM images)").fetchone()
    finally:
        db.close()
    return counts, sorted(p.name for p in (Path(home) / "images").rglob("*") if p.is_file())


def _tiny_image(path):
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(path)
    return str(path)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tag", "shirts", "--count", "2"], "unknown tag 'shirts'"),
        (["--tag", "empty", "--count", "2"], "tag 'empty' has no prompt"),
        (["--tag", "jeans", "--count", "0"], "count must be between 1 and 100000, not 0"),
        (["--tag", "jeans", "--count", "-3"], "count must be between 1 and 100000, not -3"),
        (["--tag", "jeans", "--count", "2", "--width", "100"], "width must be a multiple of 8, not 100"),
        (["--tag", "jeans", "--count", "2", "--height", "8192"], "height must be between 32 and 2048"),
        (["--tag", "jeans", "--count", "2", "--model", "{tmp}/no-such-folder"], "no model folder at"),
        (["--tag", "jeans", "--count", "2", "--model", "{tmp}"], "has no model_index.json"),
        (["--tag", "jeans", "--count", "2", "--model", "nobody/no-such-model"], "not in the local Hugging Face cache"),
        (["--tag", "jeans", "--count", "2", "--init-images", "{tmp}/nothing.png"], "does not exist"),
        (["--tag", "jeans", "--count", "2", "--init-images", "{notimage}"], "is not a readable image"),
        (["--tag", "jeans", "--count", "2", "--init-images", "{image}", "--strength", "0"], "strength must be above 0"),
        (["--tag", "jeans", "--count", "two"], "invalid int value"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_write_nothing(home, tiny_sd, tmp_path, args, message):
    store = Store(home)
    store.add_tag("jeans", "{blue|black} jeans")
    store.add_tag("empty", "")
    store.close()
    notimage = tmp_path / "notes.png"
    notimage.write_text("not a picture")
    subs = {"{tmp}": str(tmp_path), "{notimage}": str(notimage), "{image}": _tiny_image(tmp_path / "ref.png")}
    args = [subs.get(a, a.replace("{tmp}", str(tmp_path))) for a in args]
    if "--model" not in args:
        args += ["--model", tiny_sd]
    before = written(home)
    proc = cli(home, "generate", *args, "--json")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert written(home) == before == ((0, 0), [])


def test_tags_add_counts_prompts_and_refuses_a_bad_template(home):
    proc = cli(home, "tags", "add", "jeans", "--prompt", "{blue|black jeans")
    assert proc.returncode == 2 and "not valid variation syntax" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert Store(home).tag_names() == []
    out = last_json(cli(home, "tags", "add", "jeans", "--prompt", "{blue|black} jeans on {grass|sand}", "--json"))
    assert out["tag"]["distinct_prompts"] == 4


def test_kill_9_mid_series_then_the_same_command_finishes_exactly(home, tiny_sd, tmp_path):
    """Also the CLI's happy path: JSON last line, provenance in `images list --json`, same ids in a new home."""
    store = Store(home)
    store.add_tag("jeans", "{blue|black|ripped} jeans", "blurry")
    args = ["generate", "--tag", "jeans", "--count", "10", "--model", tiny_sd, "--steps", "25", "--seed", "5",
            "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), *args], env=ENV, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 150
    try:
        while store.count_images("jeans") < 2:
            assert proc.poll() is None, "generation finished before it could be killed"
            assert time.monotonic() < deadline, "no image appeared in time"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    made = store.count_images("jeans")
    assert 2 <= made < 10 and proc.returncode == -signal.SIGKILL
    job = store.query_one("SELECT id, status FROM jobs")
    assert job["status"] == "running"  # its owner is dead: the next run takes it over

    out = last_json(cli(home, *args))
    assert out["generated"] + out["skipped"] == 10 and out["skipped"] == made and out["job"] == job["id"]
    assert store.count_images("jeans") == 10 and len(set(out["images"])) == 10
    assert sorted(r["series_index"] for r in store.query("SELECT series_index FROM images")) == list(range(10))
    files = [p for p in store.images_dir.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".tmp")]
    assert {p.stem for p in files} >= set(out["images"])
    assert store.integrity_check() == "ok"
    assert store.query_one("SELECT status FROM jobs WHERE id = ?", (job["id"],))["status"] == "done"

    listed = {im["id"]: im for im in last_json(cli(home, "images", "list", "--tag", "jeans", "--json"))["images"]}
    assert set(listed) == set(out["images"])
    for index, image_id in enumerate(out["images"]):
        p = listed[image_id]["provenance"]
        assert (p["seed"], p["series_index"], p["steps"], p["guidance"]) == (5 + index, index, 25, 7.5)
        assert p["model_id"] == tiny_sd and p["model_revision"].startswith("local-")
        assert p["prompt"] in ("blue jeans", "black jeans", "ripped jeans") and p["negative"] == "blurry"
        assert p["scheduler"] == "EulerDiscreteScheduler" and p["series"] == out["series"]
        assert (listed[image_id]["width"], listed[image_id]["height"]) == (64, 64)

    other = Store(tmp_path / "new-home")
    other.add_tag("jeans", "{blue|black|ripped} jeans", "blurry")
    again = generate(other, GenerationSpec(tag="jeans", count=3, model=tiny_sd, steps=25, seed=5))
    assert again["images"] == out["images"][:3] and again["series"] == out["series"]
