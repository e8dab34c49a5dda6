"""Issue 13, hardening: no command may destroy the store, merge classes or write outside what was asked.

Each case asserts its message *and* that the store is intact (every row and file as before, or exactly the
rows the case must write; SQLite's integrity check; every image file hashing to its id)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.store.database import Store
from tests.reliability.conftest import assert_consistent, cli, snapshot

ROOT = Path(__file__).resolve().parents[2]


def file_bytes(home: Path) -> dict[str, str]:
    """SHA-256 of every file of the store (lab.db included)."""
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def member(home: Path, slice_name: str = "base") -> Path:
    store = Store(home)
    row = store.query_one("SELECT si.image_id FROM slice_images si JOIN slices s ON s.id = si.slice_id "
                          "WHERE s.name = ? ORDER BY si.position LIMIT 1", (slice_name,))
    path = store.image_file(row["image_id"])
    store.close()
    return path


def noise_png(seed: int, side: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def subprocess_cli(home: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "--home", str(home), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=180, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                          **kw)


# -- 1. never onto the store's own files -------------------------------------------------------------

STORE_TARGETS = ["lab.db", "lab.db-wal", "lab.db-shm", "IMAGE", "images", "cache/resized", "MODEL", "logs/cli.log"]


def _store_target(home: Path, name: str) -> Path:
    if name == "IMAGE":
        return member(home)
    if name == "MODEL":
        return next(p for p in (home / "models").rglob("*") if p.is_file())
    return home / name


@pytest.mark.parametrize("command", ["report", "export"])
@pytest.mark.parametrize("name", STORE_TARGETS)
def test_report_and_export_never_write_onto_the_store(seeded, command, name):
    (seeded / "logs").mkdir(exist_ok=True)
    (seeded / "logs" / "cli.log").write_text("an old log line\n")
    (seeded / "cache" / "resized").mkdir(parents=True, exist_ok=True)
    reader = Store(seeded)  # an open store has its -wal and -shm files
    reader.list_tags()
    target = _store_target(seeded, name)
    assert target.exists()
    wal = {p: p.read_bytes() for p in (seeded / "lab.db-wal", seeded / "lab.db-shm") if p == target}
    before, files = snapshot(seeded), file_bytes(seeded)
    args = ["report", "--out", str(target)] if command == "report" else ["export", "base", "--out", str(target)]
    result = cli(seeded, *args)
    assert result.code == 2, result.err
    line = result.error_line
    assert "that is the store's own" in line and "would destroy the store" in line, line
    assert file_bytes(seeded) == files and snapshot(seeded) == before
    assert target.exists() and all(p.read_bytes() == data for p, data in wal.items())
    reader.close()
    assert_consistent(seeded)


def test_export_into_the_store_folder_itself_names_a_new_file_and_touches_nothing_of_the_store(seeded):
    files = file_bytes(seeded)
    result = cli(seeded, "export", "base", "--out", str(seeded), "--json")
    assert result.code == 0, result.err
    written = Path(result.json["export"])
    assert written.parent == seeded and written.suffix == ".zip"
    assert {k: v for k, v in file_bytes(seeded).items() if k != written.name} == files
    assert_consistent(seeded)


# -- 2. regular files only; links refused; the umask honoured -----------------------------------------

def _special(tmp_path: Path, kind: str, suffix: str) -> tuple[Path, object]:
    if kind == "device":
        if not Path("/dev/full").exists():
            pytest.skip("no /dev/full here")
        return Path("/dev/full"), None
    path = tmp_path / f"special{suffix}"
    if kind == "fifo":
        os.mkfifo(path)
        return path, None
    if kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        return path, sock
    victim = tmp_path / "victim.html"
    victim.write_text("keep me")
    path.symlink_to(victim)
    return path, None


@pytest.mark.parametrize("command", ["report", "export"])
@pytest.mark.parametrize("kind, message", [("device", "it is a device"), ("fifo", "it is a named pipe (FIFO)"),
                                           ("socket", "it is a socket"),
                                           ("symlink", "it is a symbolic link; links are not written through")])
def test_outputs_are_regular_files_only_and_links_are_refused(seeded, tmp_path, command, kind, message):
    target, keep = _special(tmp_path, kind, ".html" if command == "report" else ".zip")
    mode = os.lstat(target).st_mode
    before = snapshot(seeded)
    args = ["report", "--out", str(target)] if command == "report" else ["export", "base", "--out", str(target)]
    result = cli(seeded, *args)
    assert result.code == 2, result.err
    assert message in result.error_line, result.error_line
    assert os.lstat(target).st_mode == mode
    if kind == "symlink":
        assert os.readlink(target).endswith("victim.html") and (tmp_path / "victim.html").read_text() == "keep me"
    assert snapshot(seeded) == before
    assert_consistent(seeded)


def test_exports_and_reports_honour_the_umask(seeded, tmp_path):
    from tests.datasets import write_digits

    folders = write_digits(tmp_path / "digits", n_train=20, n_test=2, size=32, n_tags=2)
    assert cli(seeded, "import", "--source", "test", str(folders["test"])).code == 0
    assert cli(seeded, "evaluate").code == 0
    old = os.umask(0o022)
    try:
        report = cli(seeded, "report", "--out", str(tmp_path / "r.html"), "--json")
        export = cli(seeded, "export", "base", "--out", str(tmp_path / "e.zip"), "--json")
        os.umask(0o077)
        private = cli(seeded, "export", "base", "--out", str(tmp_path / "p.zip"), "--json")
    finally:
        os.umask(old)
    assert report.code == export.code == private.code == 0, report.err + export.err + private.err
    assert (os.stat(tmp_path / "r.html").st_mode & 0o777) == 0o644
    assert (os.stat(tmp_path / "e.zip").st_mode & 0o777) == 0o644
    assert (os.stat(tmp_path / "p.zip").st_mode & 0o777) == 0o600
    os.chmod(tmp_path / "r.html", 0o640)  # an existing report keeps its mode when it is written again
    assert cli(seeded, "report", "--out", str(tmp_path / "r.html")).code == 0
    assert (os.stat(tmp_path / "r.html").st_mode & 0o777) == 0o640
    assert_consistent(seeded)


# -- 3. a read-only store ---------------------------------------------------------------------------

def _read_only_run(home: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m core ARGS`` over ``home`` mounted read-only (a private bind mount; as a non-root user,
    the store's permissions are taken away instead)."""
    cmd = [sys.executable, "-m", "core", "--home", str(home), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if os.geteuid() != 0:
        paths = [home, *home.rglob("*")]
        for p in paths:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
        finally:
            for p in paths:
                p.chmod(p.stat().st_mode | 0o200)
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, str(home), "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a read-only mount here (root without CAP_SYS_ADMIN)")
    return subprocess.run(["unshare", "-m", "sh", "-c", script, str(home), *cmd], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=180)


def test_a_read_only_store_can_be_read_and_refuses_writes_clearly(seeded):
    shutil.rmtree(seeded / "logs", ignore_errors=True)  # the log folder cannot be made either
    before, files = snapshot(seeded), file_bytes(seeded)
    listed = _read_only_run(seeded, "tags", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout.splitlines()[-1])["tags"]] == ["blank", "jeans", "one", "zero"]
    images = _read_only_run(seeded, "images", "list", "--tag", "zero", "--json")
    assert images.returncode == 0 and len(json.loads(images.stdout.splitlines()[-1])["images"]) == 8
    jobs = _read_only_run(seeded, "jobs", "list", "--json")
    assert jobs.returncode == 0, jobs.stderr
    for args in (["tags", "add", "shirts"], ["slice", "--name", "ro", "--counts", "2", "--real-fraction", "1",
                                            "--tags", "one,zero"]):
        refused = _read_only_run(seeded, *args)
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.stderr
        assert f"the store at {seeded} is read-only" in lines[0] and "reading works" in lines[0]
    assert not (seeded / "logs").exists()
    assert snapshot(seeded) == before and file_bytes(seeded) == files
    assert_consistent(seeded)


# -- 4 and 5. tag names are unique under case-folding and NFC; every command finds them -------------

CAFE_NFC, CAFE_NFD = "Café", unicodedata.normalize("NFD", "Café")


@pytest.mark.parametrize("name, existing", [("Jeans", "jeans"), ("JEANS", "jeans"), ("ZERO", "zero"),
                                            (unicodedata.normalize("NFD", "Zéro"), "zéro")])
def test_a_tag_differing_only_in_case_or_unicode_form_is_the_same_tag(seeded, name, existing):
    if existing == "zéro":
        assert cli(seeded, "tags", "add", "zéro").code == 0
    before = snapshot(seeded)
    result = cli(seeded, "tags", "add", name, "--prompt", "x")
    assert result.code == 2
    assert f"tag {existing!r} already exists" in result.error_line, result.error_line
    assert snapshot(seeded) == before
    assert_consistent(seeded)


def test_zip_folders_differing_in_case_become_one_tag(seeded, tmp_path):
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("SHOES/a.png", noise_png(1))
        z.writestr("shoes/b.png", noise_png(2))
        z.writestr("Zero/c.png", noise_png(3))
    result = cli(seeded, "import", str(archive), "--json")
    assert result.code == 0, result.err
    assert result.json["imported"] == 3 and result.json["created_tags"] == ["SHOES"]
    tags = {t["name"]: t["counts"]["real"] for t in cli(seeded, "tags", "list", "--json").json["tags"]}
    assert tags == {"SHOES": 2, "blank": 0, "jeans": 0, "one": 8, "zero": 9}
    assert assert_consistent(seeded)["rows"] == 16 + 3


def test_every_command_taking_a_tag_finds_it_in_any_case_or_form(seeded, tmp_path):
    assert cli(seeded, "tags", "add", CAFE_NFC, "--prompt", "{hot|iced} coffee").code == 0
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in range(3):
        (photos / f"{n}.png").write_bytes(noise_png(10 + n))
    imported = cli(seeded, "import", "--tag", CAFE_NFD, str(photos), "--json")
    assert imported.code == 0 and imported.json["imported"] == 3, imported.err
    more = tmp_path / "more"
    more.mkdir()
    (more / "x.png").write_bytes(noise_png(20))
    assert cli(seeded, "import", "--tag", "CAFÉ", str(more), "--json").json["imported"] == 1
    listed = cli(seeded, "images", "list", "--tag", CAFE_NFD, "--json")
    assert listed.code == 0 and {im["tag"] for im in listed.json["images"]} == {CAFE_NFC}
    assert len(listed.json["images"]) == 4
    assert len(cli(seeded, "images", "list", "--tag", "café", "--json").json["images"]) == 4
    sliced = cli(seeded, "slice", "--name", "cafe", "--counts", "2", "--real-fraction", "1",
                 "--tags", f"{CAFE_NFD},ZERO", "--json")
    assert sliced.code == 0, sliced.err
    assert sliced.json["slices"][0]["count_per_tag"] == 2
    again = cli(seeded, "slice", "--name", "cafe", "--counts", "2", "--real-fraction", "1",
                "--tags", f"{CAFE_NFC},zero", "--json")
    assert again.json["slices"][0]["hash"] == sliced.json["slices"][0]["hash"]  # one spec, one hash
    blank = cli(seeded, "generate", "--tag", "BLANK", "--count", "1")
    assert blank.code == 2 and "tag 'blank' has no prompt" in blank.error_line
    names = [t["name"] for t in cli(seeded, "tags", "list", "--json").json["tags"]]
    assert names.count(CAFE_NFC) == 1 and CAFE_NFD not in names
    assert assert_consistent(seeded)["rows"] == 16 + 4


def test_a_store_made_before_the_rule_still_opens_and_azure_refuses_to_merge(seeded, monkeypatch):
    store = Store(seeded)
    with store.tx() as conn:  # what an older version let through: two tags one case apart
        conn.execute("INSERT INTO tags(name, prompt, negative, created) VALUES ('Jeans', '', '', 'x')")
    for n, tag in enumerate(["jeans"] * 6 + ["Jeans"] * 6):
        store.add_image(Image.open(io.BytesIO(noise_png(100 + n, 256))), tag=tag, source="real")
    from core.data import slicing

    slicing.build_slices(store, slicing.SliceSpec(name="legacy", counts=(5,), size=256, real_fraction=1.0,
                                                  tags=("Jeans", "jeans")))
    store.close()
    listed = cli(seeded, "tags", "list", "--json")
    assert listed.code == 0 and {"Jeans", "jeans"} <= {t["name"] for t in listed.json["tags"]}
    exact = cli(seeded, "images", "list", "--tag", "Jeans", "--json")
    assert exact.code == 0 and {im["tag"] for im in exact.json["images"]} == {"Jeans"}
    ambiguous = cli(seeded, "images", "list", "--tag", "JEANS")
    assert ambiguous.code == 2 and "tag 'JEANS' is ambiguous: the store has 'Jeans', 'jeans'" in ambiguous.error_line
    monkeypatch.setenv("VISION_TRAINING_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("VISION_TRAINING_KEY", "tk-not-used-0123456789")
    before = snapshot(seeded)
    refused = cli(seeded, "train", "--slices", "legacy", "--backend", "azure")
    assert refused.code == 2
    assert "holds tags 'Jeans' and 'jeans'" in refused.error_line and "would merge them" in refused.error_line
    assert snapshot(seeded) == before
    assert_consistent(seeded)


# -- 6 and 12. image files are checked against their SHA-256 when read --------------------------------

def _damage(path: Path, how: str) -> None:
    if how == "replaced":
        path.write_bytes(noise_png(999))
    elif how == "garbage":
        path.write_bytes(b"\x89PNG garbage, not an image" * 10)
    else:
        path.unlink()


@pytest.mark.parametrize("how, message", [("replaced", "does not match its SHA-256"),
                                          ("garbage", "does not match its SHA-256"),
                                          ("deleted", "is missing")])
def test_a_damaged_member_image_fails_training_and_the_run_says_why(seeded, how, message):
    path = member(seeded)
    original = path.read_bytes()
    _damage(path, how)
    before = snapshot(seeded)
    result = cli(seeded, "train", "--slices", "base", "--encoder", "cnn-small", "--epochs", "2", "--json")
    assert result.code == 2, result.err
    line = result.error_line
    assert f"image file {path} {message}" in line and "restore it from a backup" in line, line
    assert "images reject" in line
    store = Store(seeded)
    run = store.query_one("SELECT status, error FROM runs ORDER BY id DESC LIMIT 1")
    job = store.query_one("SELECT status, error FROM jobs ORDER BY id DESC LIMIT 1")
    store.close()
    assert run["status"] == "failed" and run["error"] == line.removeprefix("error: ")
    assert job["status"] == "failed" and job["error"] == line.removeprefix("error: ")
    after = snapshot(seeded)
    assert {t: r for t, r in after["rows"].items() if t not in ("runs", "jobs")} == \
        {t: r for t, r in before["rows"].items() if t not in ("runs", "jobs")}
    assert len(after["rows"]["runs"]) == len(before["rows"]["runs"]) + 1
    path.write_bytes(original)
    assert_consistent(seeded)


@pytest.mark.parametrize("how", ["replaced", "deleted"])
def test_a_damaged_member_image_fails_the_export_and_writes_no_zip(seeded, tmp_path, how):
    path = member(seeded)
    original = path.read_bytes()
    _damage(path, how)
    before = snapshot(seeded)
    result = cli(seeded, "export", "base", "--out", str(tmp_path / "e.zip"))
    assert result.code == 2 and f"image file {path}" in result.error_line, result.err
    assert not (tmp_path / "e.zip").exists() and not list(tmp_path.glob(".e.zip-*"))
    assert snapshot(seeded) == before
    path.write_bytes(original)
    assert_consistent(seeded)


def test_a_replaced_test_image_fails_the_evaluation(seeded, tmp_path):
    from tests.datasets import write_digits

    folders = write_digits(tmp_path / "digits", n_train=20, n_test=2, size=32, n_tags=2)
    assert cli(seeded, "import", "--source", "test", str(folders["test"])).code == 0
    store = Store(seeded)
    test_id = store.query_one("SELECT id FROM images WHERE source = 'test' LIMIT 1")["id"]
    path = store.image_file(test_id)
    store.close()
    original = path.read_bytes()
    _damage(path, "replaced")
    before = snapshot(seeded)
    result = cli(seeded, "evaluate")
    assert result.code == 2 and f"image file {path} does not match its SHA-256" in result.error_line, result.err
    assert snapshot(seeded)["rows"]["predictions"] == before["rows"]["predictions"]
    path.write_bytes(original)
    assert_consistent(seeded)


def test_each_image_file_is_hashed_once_per_process(seeded):
    from core.store import imaging

    store = Store(seeded)
    image_id = member(seeded).stem
    calls = []
    real = store.image_bytes

    def counted(i):
        calls.append(i)
        return real(i)

    store.image_bytes = counted
    for _ in range(3):
        imaging.resized(store, image_id, 16)
    assert calls.count(image_id) <= 1
    store.close()


# -- 7. lazy prompt expansion with the true variant count ----------------------------------------------

def test_combinatorial_prompts_expand_lazily_and_report_the_true_count(seeded):
    from core.generate import prompts

    groups = " ".join(f"{{a{i}|b{i}}}" for i in range(20))
    added = cli(seeded, "tags", "add", "many", "--prompt", groups, "--json")
    assert added.code == 0, added.err
    assert added.json["tag"]["distinct_prompts"] == 2 ** 20 and "1,048,576 prompt variants" in added.out
    made = prompts.expand(groups, 2000, 0, "combinatorial")
    assert len(set(made)) == 2000 and made[0] != made[1000]
    for i in range(20):  # every group varies within the first 2000 images
        assert {f"a{i}", f"b{i}"} <= {w for p in made for w in p.split()}
    wide = "{" + "|".join(f"o{i}" for i in range(1500)) + "} shoe"
    assert prompts.count_prompts(wide) == 1500
    assert {p.split()[0] for p in prompts.expand(wide, 1500, 0, "combinatorial")} == {f"o{i}" for i in range(1500)}
    small = "{blue|black} jeans on {a street|grass}"  # small templates keep dynamicprompts' own order
    assert prompts.expand(small, 5, 0, "combinatorial") == [
        "blue jeans on a street", "blue jeans on grass", "black jeans on a street", "black jeans on grass",
        "blue jeans on a street"]
    store = Store(seeded)
    assert store.query_one("SELECT prompt FROM tags WHERE name = 'many'")["prompt"] == groups
    store.close()
    assert_consistent(seeded)


# -- 11. a newer schema is refused -----------------------------------------------------------------

def test_a_store_of_a_newer_schema_is_refused_and_not_written(seeded):
    db = sqlite3.connect(seeded / "lab.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    files = file_bytes(seeded)
    for args in (["tags", "list"], ["tags", "add", "x"]):
        result = cli(seeded, *args)
        assert result.code == 2
        assert "this store was made by a newer Synthlab (schema 99); upgrade" in result.error_line
    assert file_bytes(seeded) == files
    assert sqlite3.connect(seeded / "lab.db").execute("PRAGMA user_version").fetchone()[0] == 99


# -- 12. a damaged lab.db ------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_database_is_a_clear_error_naming_the_file(seeded, how):
    db = seeded / "lab.db"
    if how == "garbage":
        db.write_bytes(b"this is not a database " * 200)
    else:
        store = Store(seeded)
        with store.tx() as conn:  # make it long enough for a truncation to cut rows off
            conn.executemany("INSERT INTO jobs(kind, params, params_key, status, message, created) "
                             "VALUES ('train', '{}', ?, 'done', ?, 'x')", [(f"k{i}", "m" * 500) for i in range(400)])
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        with open(db, "r+b") as fh:
            fh.truncate(db.stat().st_size // 2)
    files = file_bytes(seeded)
    for args in (["tags", "list"], ["jobs", "list"], ["images", "list"]):
        result = cli(seeded, *args)
        if result.code == 0:
            continue  # a truncation may spare the pages a command reads
        assert result.code == 2, result.err
        assert f"the store's database {db} is damaged" in result.error_line
        assert "restore lab.db from a backup" in result.error_line
    assert any(cli(seeded, *a).code == 2 for a in (["tags", "list"], ["jobs", "list"], ["images", "list"]))
    assert file_bytes(seeded) == files


# -- 13. a closed pipe ---------------------------------------------------------------------------

def test_a_closed_stdout_pipe_ends_quietly(seeded):
    store = Store(seeded)
    with store.tx() as conn:
        conn.executemany("INSERT INTO jobs(kind, params, params_key, status, created) VALUES ('train', '{}', ?, "
                         "'done', 'x')", [(f"k{i}",) for i in range(3000)])
    store.close()
    proc = subprocess.Popen(f"{sys.executable} -m core --home {seeded} jobs list | head -1", shell=True,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=120)
    assert out.startswith("job ") and err == ""
    assert_consistent(seeded)


# -- 16. jobs: kill -9 shows as interrupted; cancel stops a CLI Azure sweep -----------------------------

def _wait_for(predicate, timeout: float = 300, what: str = "", proc: subprocess.Popen | None = None) -> None:
    """Poll ``predicate``; fail at once (with the process's stderr) if ``proc`` exits first. The timeout is
    generous: under load a CLI process can take a minute just to import torch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process exited ({proc.returncode}) before {what}; see its stderr")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _job_rows(home: Path, sql: str) -> list[dict]:
    db = sqlite3.connect(f"file:{home / 'lab.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql).fetchall()]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_a_cli_job_killed_with_kill_9_is_listed_as_interrupted(seeded):
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(seeded), "train", "--slices", "base",
                             "--encoder", "cnn-small", "--epochs", "1000"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        _wait_for(lambda: _job_rows(seeded, "SELECT id FROM jobs WHERE status = 'running' AND done > 0"),
                  what="the training job to run", proc=proc)
    finally:
        proc.kill()
        proc.wait()
    listed = cli(seeded, "jobs", "list", "--json")
    assert listed.code == 0
    (job,) = [j for j in listed.json["jobs"] if j["kind"] == "train" and j["status"] != "done"]
    assert job["status"] == "interrupted" and "run the same command again" in job["message"]
    assert "interrupted" in listed.out.splitlines()[0]
    assert _job_rows(seeded, f"SELECT status FROM jobs WHERE id = {job['id']}") == [{"status": "running"}]
    assert_consistent(seeded)


def test_jobs_cancel_stops_a_cli_azure_sweep(home):
    from tests.core.train.test_backends_azure import PREDICTION_KEY, TRAINING_KEY, azure_env, cut, fill_store
    from tests.fakes import FakeCustomVision

    store = Store(home)
    fill_store(store)
    cut(store, counts=(5, 8), repeats=1)
    store.close()
    with FakeCustomVision(TRAINING_KEY, PREDICTION_KEY, training_delay=600) as fake:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VISION_", "SYNTHLAB_"))},
               "HF_HUB_OFFLINE": "1", **azure_env(fake)}
        err_file = home.parent / "train.err"  # a file, not a pipe: nothing reads a pipe until the end,
        with open(err_file, "w") as err_out:  # and a full pipe would block the process mid-upload
            proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), "train", "--slices", "sw",
                                     "--backend", "azure"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=err_out, text=True)
        try:
            try:
                _wait_for(lambda: _job_rows(home, "SELECT j.id FROM jobs j JOIN runs r ON r.job_id = j.id "
                                                  "WHERE j.status = 'running' AND r.status = 'running' "
                                                  "AND j.message LIKE 'Azure: training %'"),
                          what="the first Azure run to train", proc=proc)
            except AssertionError as e:
                raise AssertionError(f"{e}\n{err_file.read_text()[-3000:]}") from None
            (job,) = _job_rows(home, "SELECT id FROM jobs WHERE status = 'running'")
            cancel = subprocess.run([sys.executable, "-m", "core", "--home", str(home), "jobs", "cancel",
                                     str(job["id"])], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert cancel.returncode == 0, cancel.stderr
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            err = err_file.read_text()
    assert proc.returncode == 2, err
    assert "cancelled: run" in err and "were not started" in err
    runs = _job_rows(home, "SELECT id, status, job_id FROM runs ORDER BY id")
    assert [r["status"] for r in runs] == ["cancelled", "queued"]
    assert runs[1]["job_id"] is None
    jobs = _job_rows(home, "SELECT status FROM jobs")
    assert [j["status"] for j in jobs] == ["cancelled"]
    assert_consistent(home)


# -- 17 and 19. empty output paths; export progress ------------------------------------------------

@pytest.mark.parametrize("command", [["report", "--out", ""], ["export", "base", "--out", ""],
                                     ["report", "--out", "  "], ["export", "base", "--out", " "]])
def test_an_empty_output_path_is_refused(seeded, tmp_path, monkeypatch, command):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(seeded)
    result = cli(seeded, *command)
    assert result.code == 2 and "no output" in result.error_line, result.err
    assert list(cwd.iterdir()) == []
    assert snapshot(seeded) == before
    assert_consistent(seeded)


def test_export_reports_progress_per_image_on_a_terminal(seeded, tmp_path):
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(seeded), "export", "base", "--out",
                             str(tmp_path / "e.zip")], cwd=ROOT, stdout=subprocess.PIPE, stderr=follower,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(leader)
    shown = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "export: 0/8" in shown and "export: 8/8 done" in shown, shown
    with zipfile.ZipFile(tmp_path / "e.zip") as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == 8
    assert_consistent(seeded)
