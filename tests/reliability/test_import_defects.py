"""Import defects (issue 13, items 8, 9, 10, 18, 20): each asserts the user's message and the store's state.

* a zip whose only entry is rejected creates no tag;
* one corrupt image (a fuzzed AVIF whose decoder raises ``RuntimeError``) is rejected, the rest imports —
  from the CLI and through the app's upload path;
* a FIFO in a folder, or a symlink to ``/dev/zero``, is rejected as "not a regular file" within seconds;
* an import onto a disk that refuses writes exits 2 with one line, keeping what was stored before.
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.ingest import import_uploads
from core.store.database import Store
from tests.reliability.conftest import assert_consistent, cli, snapshot, tmpfs


def photo(seed: int, size: int = 48, fmt: str = "PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def fuzzed_avif() -> bytes:
    """A real AVIF whose coded frame is replaced by noise: libavif fails with RuntimeError on decode."""
    data = photo(1, 64, "AVIF")
    start = data.find(b"mdat") + 4
    noise = bytes(random.Random(8).randrange(256) for _ in range(len(data) - start))
    bad = data[:start] + noise
    with pytest.raises(RuntimeError):
        Image.open(io.BytesIO(bad)).load()
    return bad


def tag_rows(home: Path) -> list[str]:
    store = Store(home)
    try:
        return store.tag_names()
    finally:
        store.close()


def test_a_zip_whose_only_entry_is_rejected_creates_no_tag(seeded, tmp_path):
    archive = tmp_path / "one.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("d1/broken.png", b"\x89PNG\r\n\x1a\n not really")
    before = snapshot(seeded)
    result = cli(seeded, "import", str(archive), "--json")
    assert result.code == 0
    report = result.json
    assert report["imported"] == 0 and report["created_tags"] == []
    assert report["rejected"] == [{"path": f"{archive}!d1/broken.png",
                                   "reason": report["rejected"][0]["reason"]}]
    assert report["rejected"][0]["reason"].startswith("not an image")
    assert "d1" not in tag_rows(seeded)
    assert snapshot(seeded) == before
    assert_consistent(seeded)


def test_one_corrupt_avif_is_rejected_and_the_good_photo_beside_it_imports(seeded, tmp_path):
    folder = tmp_path / "photos" / "shirts"
    folder.mkdir(parents=True)
    (folder / "fuzzed.avif").write_bytes(fuzzed_avif())
    (folder / "good.png").write_bytes(photo(2))
    before = assert_consistent(seeded)["rows"]
    result = cli(seeded, "import", str(tmp_path / "photos"), "--json")
    assert result.code == 0, result.err
    report = result.json
    assert (report["imported"], report["created_tags"]) == (1, ["shirts"])
    (rejected,) = report["rejected"]
    assert rejected["path"].endswith("fuzzed.avif")
    assert rejected["reason"].startswith("cannot decode the image (RuntimeError: Failed to decode")
    assert "internal error" not in result.err
    assert assert_consistent(seeded)["rows"] == before + 1


def test_the_app_upload_path_rejects_a_corrupt_avif_and_keeps_the_rest(seeded):
    store = Store(seeded)
    try:
        before = store.count_images()
        result = import_uploads(store, [("fuzzed.avif", fuzzed_avif()), ("good.png", photo(3))], tag="zero")
        assert result["imported"] == 1
        assert [r["path"] for r in result["rejected"]] == ["fuzzed.avif"]
        assert result["rejected"][0]["reason"].startswith("cannot decode the image (RuntimeError")
        assert store.count_images() == before + 1
    finally:
        store.close()
    assert_consistent(seeded)


def test_the_quick_test_upload_refuses_a_corrupt_avif_with_a_user_error(seeded):
    from core.analysis.evaluation import _upload
    from core.errors import InvalidInput

    store = Store(seeded)
    try:
        before = snapshot(seeded)
        with pytest.raises(InvalidInput, match=r"cannot use this photo: cannot decode the image \(RuntimeError"):
            _upload(store, fuzzed_avif())
        assert snapshot(seeded) == before
    finally:
        store.close()


def test_a_fifo_and_a_corrupt_image_are_rejected_within_seconds_and_the_photo_imports(seeded, tmp_path):
    folder = tmp_path / "photos" / "zero"
    folder.mkdir(parents=True)
    os.mkfifo(folder / "pipe.png")
    (folder / "fuzzed.avif").write_bytes(fuzzed_avif())
    (folder / "good.png").write_bytes(photo(4))
    before = assert_consistent(seeded)["rows"]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "core", "--home", str(seeded), "import", str(tmp_path / "photos"),
                           "--json"], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert time.monotonic() - started < 30
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads(proc.stdout.strip().splitlines()[-1])
    reasons = {Path(r["path"]).name: r["reason"] for r in report["rejected"]}
    assert report["imported"] == 1 and set(reasons) == {"pipe.png", "fuzzed.avif"}
    assert reasons["pipe.png"].startswith("not a regular file")
    assert reasons["fuzzed.avif"].startswith("cannot decode the image")
    assert assert_consistent(seeded)["rows"] == before + 1


@pytest.mark.parametrize("where", ["in a folder", "named on the command line"])
def test_a_symlink_to_dev_zero_is_not_a_regular_file(seeded, tmp_path, where):
    folder = tmp_path / "photos" / "zero"
    folder.mkdir(parents=True)
    (folder / "zeros.png").symlink_to("/dev/zero")
    target = tmp_path / "photos" if where == "in a folder" else folder / "zeros.png"
    before = snapshot(seeded)
    result = cli(seeded, "import", str(target), "--tag", "zero", "--json")
    assert result.code == 0, result.err
    (rejected,) = result.json["rejected"]
    assert rejected["reason"].startswith("not a regular file") and "MB" not in rejected["reason"]
    assert snapshot(seeded) == before
    assert_consistent(seeded)


def test_an_import_onto_a_store_that_refuses_writes_exits_2_and_keeps_what_was_stored(seeded, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        (folder / f"{i}.png").write_bytes(photo(100 + i))
    store = Store(seeded)
    blockers = []
    for n in range(256):  # every shard folder not there yet becomes a file: no new image can land
        shard = store.images_dir / f"{n:02x}"
        if not shard.exists():
            shard.write_bytes(b"")
            blockers.append(shard)
    store.close()
    before = snapshot(seeded)
    result = cli(seeded, "import", str(folder), "--tag", "zero", "--json")
    assert result.code == 2 and result.out == ""
    line = result.error_line
    assert line.startswith(f"error: cannot write to the store at {seeded}: ") and "run again" in line
    for blocker in blockers:
        blocker.unlink()
    assert snapshot(seeded)["rows"] == before["rows"]
    assert_consistent(seeded)
    again = cli(seeded, "import", str(folder), "--tag", "zero", "--json")
    assert again.code == 0 and again.json["imported"] == 6
    assert_consistent(seeded)


@pytest.fixture
def tiny_disk(tmp_path):
    """A small tmpfs (root with CAP_SYS_ADMIN only; skipped elsewhere — the shard test above always runs)."""
    with tmpfs(tmp_path / "disk", "600k") as mount:
        yield mount


def test_an_import_onto_a_full_disk_is_exit_2_not_a_list_of_rejections(tiny_disk, tmp_path):
    home = tiny_disk / "home"
    Store(home).close()
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(200):  # 200 × ~7 kB of noise: more than the disk holds
        (folder / f"{i}.png").write_bytes(photo(i, 48))
    setup = Store(home)
    setup.add_tag("zero")
    setup.close()
    result = cli(home, "import", str(folder), "--tag", "zero", "--json")
    assert result.code == 2 and result.out == ""
    line = result.error_line
    assert line.startswith(f"error: cannot write to the store at {home}: ")
    assert "No space left on device" in line or "disk is full" in line, line
    kept = assert_consistent(home, orphan_files_ok=True)["rows"]
    assert kept < 200
