"""kill -9 in the middle of a batched import: every stored row still has its whole file, and importing the
same folder again finishes the job exactly (the files that landed without a row are reused)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from core.store.database import Store
from tests.reliability.conftest import assert_consistent, cli

ROOT = Path(__file__).resolve().parents[2]
COUNT = 600


def _rows(home: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{home / 'lab.db'}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_kill_9_mid_import_leaves_every_row_with_its_whole_file(tmp_path):
    folder = tmp_path / "photos" / "noise"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(COUNT):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    home = tmp_path / "home"
    Store(home).close()
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), "import", str(tmp_path / "photos")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _rows(home) == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    leftovers = list((home / "images").glob("*/.tmp-*"))
    Store(home).close()  # opening a store clears temporary files a crash left
    assert not list((home / "images").glob("*/.tmp-*")), leftovers
    stored = assert_consistent(home, orphan_files_ok=True)
    assert 0 < stored["rows"] < COUNT
    again = cli(home, "import", str(tmp_path / "photos"), "--json")
    assert again.code == 0, again.err
    assert again.json["imported"] + again.json["duplicates"] == COUNT and again.json["duplicates"] == stored["rows"]
    assert assert_consistent(home) == {"rows": COUNT, "files": COUNT, "orphans": 0}
