"""The `import`, `slice` and `export` commands, run as a user would: a subprocess per command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]


def cli(home: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", "--home", str(home), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder of tag-named subfolders: 22 photos per tag, one non-image and one truncated PNG."""
    root = tmp_path / "photos"
    for t, tag in enumerate(("jeans", "shoes")):
        (root / tag).mkdir(parents=True)
        for i in range(22):
            Image.new("RGB", (36, 34), (i * 11, t * 120, 50)).save(root / tag / f"{i:02}.png")
    (root / "jeans" / "list.txt").write_text("jeans to shoot")
    data = (root / "shoes" / "00.png").read_bytes()
    (root / "shoes" / "broken.png").write_bytes(data[: len(data) // 2])
    return root


def test_import_slice_export(tmp_path, photos):
    home = tmp_path / "home"
    first = last_json(cli(home, "import", str(photos), "--json"))
    assert first["imported"] == 44 and first["duplicates"] == 0
    assert sorted(first["created_tags"]) == ["jeans", "shoes"]
    reasons = {Path(r["path"]).name: r["reason"] for r in first["rejected"]}
    assert reasons["list.txt"].startswith("not an image") and reasons["broken.png"].startswith("truncated")

    again = cli(home, "import", str(photos), "--json")
    report = last_json(again)
    assert report["imported"] == 0 and report["duplicates"] == 44 and len(report["rejected"]) == 2
    assert "imported 0, duplicates 44, rejected 2" in again.stdout

    args = ("slice", "--name", "real", "--counts", "5,20", "--repeats", "2", "--real-fraction", "1", "--json")
    slices = last_json(cli(home, *args))["slices"]
    assert [(s["repeat"], s["count_per_tag"]) for s in slices] == [(0, 5), (0, 20), (1, 5), (1, 20)]
    for r in (0, 1):
        small, big = (set(s["images"]) for s in slices if s["repeat"] == r)
        assert small < big and len(small) == 10 and len(big) == 40
    assert slices[0]["images"] != slices[2]["images"]
    assert all(set(s) >= {"id", "name", "count_per_tag", "size", "real_fraction", "repeat", "hash", "images"}
               for s in slices)
    same = last_json(cli(home, *args))["slices"]
    assert [s["hash"] for s in same] == [s["hash"] for s in slices]
    assert [s["id"] for s in same] == [s["id"] for s in slices]

    out = tmp_path / "slice.zip"
    exported = last_json(cli(home, "export", slices[1]["hash"][:12], "--out", str(out), "--json"))
    assert exported["export"] == str(out)
    with zipfile.ZipFile(out) as z:
        assert len([n for n in z.namelist() if n.endswith(".png")]) == 40


def test_user_errors_exit_2_with_one_line(tmp_path, photos):
    home = tmp_path / "home"
    last_json(cli(home, "import", str(photos), "--json"))
    too_many = cli(home, "slice", "--name", "big", "--counts", "5,23", "--real-fraction", "1")
    assert too_many.returncode == 2
    assert too_many.stderr.count("\n") == 1 and "Traceback" not in too_many.stderr
    assert "tag 'jeans' has 22 real images, a slice of 23 per tag at real fraction 1 needs 23" in too_many.stderr

    for args, message in [
        (("slice", "--name", "x", "--counts", "5", "--size", "8"), "between 16 and 4096"),
        (("slice", "--name", "x", "--counts", "5", "--tags", "hats"), "unknown tag 'hats'"),
        (("slice", "--name", "x", "--counts", "five"), "comma-separated whole numbers"),
        (("import", "--tag", "hats", str(photos)), "unknown tag 'hats'"),
        (("export", "999", "--out", str(tmp_path / "x.zip")), "no slice '999'"),
        (("slice", "--name", "x", "--counts", "5"), "tag 'jeans' has 0 synthetic images"),
    ]:
        proc = cli(home, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.zip").exists()


def test_sizes_flag_keeps_members(tmp_path, photos):
    home = tmp_path / "home"
    last_json(cli(home, "import", str(photos), "--json"))
    slices = last_json(cli(home, "slice", "--name", "px", "--counts", "3", "--sizes", "64,32", "--real-fraction",
                           "1", "--fit", "pad", "--json"))["slices"]
    assert [s["size"] for s in slices] == [64, 32] and slices[0]["images"] == slices[1]["images"]
    assert slices[0]["spec"]["fit"] == "pad"
