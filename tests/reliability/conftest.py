"""Shared by the reliability tests: the CLI run in-process, a seeded store copied per test, and the two
checks every test ends with — *nothing changed* (a full snapshot of every table and file) and *the store is
consistent* (SQLite's integrity and foreign-key checks, every image row has its file and that file hashes
to its id, no half-written temporary file)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out.strip().splitlines()[-1])

    @property
    def error_line(self) -> str:
        """The single stderr line a user error must produce (asserts there is exactly one, no traceback)."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in self.err, self.err
        return lines[0]


def cli(home: Path, *args: str) -> CliResult:
    """``python -m core --home HOME ARGS…`` in this process (the same ``main`` the module runs)."""
    from core.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--home", str(home), *args])
    return CliResult(code, out.getvalue(), err.getvalue())


def _connect_ro(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{Path(home) / 'lab.db'}?mode=ro", uri=True)


def snapshot(home: Path) -> dict:
    """Every row of every table, and every file (with its size) under ``images/`` and ``models/``."""
    home = Path(home)
    db = _connect_ro(home)
    try:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        rows = {t: sorted(map(repr, db.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}
    finally:
        db.close()
    files = sorted((str(p.relative_to(home)), p.stat().st_size)
                   for folder in ("images", "models") if (home / folder).exists()
                   for p in (home / folder).rglob("*") if p.is_file())
    return {"rows": rows, "files": files}


def assert_consistent(home: Path, *, orphan_files_ok: bool = False) -> dict:
    """The store is whole: integrity ok, foreign keys ok, every image row's file exists and hashes to its id,
    no temporary file left. Returns ``{"rows", "files", "orphans"}`` (image files without a row)."""
    home = Path(home)
    db = _connect_ro(home)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = db.execute("SELECT id, path FROM images").fetchall()
    finally:
        db.close()
    for image_id, path in rows:
        file = home / path
        assert file.is_file(), f"image row {image_id} has no file"
        assert hashlib.sha256(file.read_bytes()).hexdigest() == image_id, f"{file} does not match its id"
    files = [p for p in (home / "images").glob("*/*") if p.is_file()]
    assert not [p for p in files if p.name.startswith(".tmp")], "a half-written temporary file was left"
    orphans = {p.stem for p in files} - {r[0] for r in rows}
    if not orphan_files_ok:
        assert not orphans, f"image files without a row: {sorted(orphans)}"
    return {"rows": len(rows), "files": len(files), "orphans": len(orphans)}


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory):
    """A store a user could have after a first session: tags ``zero`` and ``one`` with 8 real 32 px scans
    each (scikit-learn's digits), ``jeans`` with a prompt, ``blank`` with none; slices ``base`` (4 per tag),
    ``solo`` (tag zero only) and ``az`` (5 per tag at 256 px); one finished cnn-small run; no test photos."""
    from core.data import slicing
    from core.store.database import Store
    from core.train import training
    from tests.datasets import import_digits

    root = tmp_path_factory.mktemp("seeded")
    store = Store(root / "home")
    import_digits(store, root / "digits", n_train=8, n_test=0, size=32, n_tags=2)
    store.add_tag("jeans", "{blue|black|ripped} jeans")
    store.add_tag("blank", "")
    for spec in (slicing.SliceSpec(name="base", counts=(4,), real_fraction=1.0, tags=("one", "zero")),
                 slicing.SliceSpec(name="solo", counts=(3,), real_fraction=1.0, tags=("zero",)),
                 slicing.SliceSpec(name="az", counts=(5,), size=256, real_fraction=1.0,
                                   tags=("one", "zero"))):
        slicing.build_slices(store, spec)
    runs = training.train(store, ["base"], backend="local", params={"encoder": "cnn-small", "epochs": 1})
    assert [r["status"] for r in runs] == ["done"]
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    return root / "home"


@pytest.fixture
def seeded(seeded_template, tmp_path, monkeypatch):
    """A private copy of the seeded store (``SYNTHLAB_HOME`` points at it; no Azure settings)."""
    home = tmp_path / "home"
    shutil.copytree(seeded_template, home)
    monkeypatch.setenv("SYNTHLAB_HOME", str(home))
    for name in ("VISION_TRAINING_ENDPOINT", "VISION_TRAINING_KEY", "VISION_PREDICTION_ENDPOINT",
                 "VISION_PREDICTION_KEY", "VISION_PREDICTION_RESOURCE_ID"):
        monkeypatch.delenv(name, raising=False)
    return home


@contextlib.contextmanager
def tmpfs(folder: Path, size: str):
    """A tmpfs of ``size`` mounted at ``folder`` (root with CAP_SYS_ADMIN only; the test is skipped elsewhere)."""
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"synthlab-{uuid.uuid4().hex[:8]}",
                           str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
