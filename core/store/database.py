"""The store: SQLite (WAL) plus content-addressed PNG files under ``SYNTHLAB_HOME``.

It is the single source of truth. Image files are named by the SHA-256 of their PNG bytes
(``images/ab/abcdef….png``), written to a temporary name and renamed *before* their row commits,
so a crash leaves neither a half-written file nor a row without a file. Schema changes are
numbered migrations applied on open, so an old store opens in a new version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from PIL import Image

from core import config
from core.errors import InvalidInput, NotFound
from core.store import failures, migrations, records
from core.store.files import ImageFiles
from core.store.tags import Tags


def png_bytes(image: Image.Image) -> bytes:
    """Encode an image as PNG deterministically (no metadata), RGB."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class Store(Tags, ImageFiles):
    """One store folder: ``lab.db`` and ``images/``. Safe to share between threads."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.root = config.home(home)
        self.images_dir = self.root / "images"
        self.cache_dir = self.root / "cache"
        self.db_path = self.root / "lab.db"
        self._local = threading.local()
        self._immutable = False
        self.read_only = self.db_path.exists() and not (
            os.access(self.root, os.W_OK) and os.access(self.db_path, os.W_OK))
        if not self.read_only:
            try:
                self.images_dir.mkdir(parents=True, exist_ok=True)
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                if not self.db_path.exists():
                    raise InvalidInput(f"cannot create the store folder {self.root}: {exc.strerror}") from exc
                self.read_only = True
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            damaged = failures.store_damage(self, exc)
            if damaged is None:
                raise
            raise damaged from None
        if not self.read_only:
            self._remove_temp_files()

    # -- connections and transactions -------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.read_only:
                conn = self._connect_read_only()
            else:
                conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """``lab.db`` opened for reading only (a read-only mount or permissions). Without its ``-shm`` file
        a WAL database can only be opened as immutable (nothing else may write it meanwhile)."""
        from urllib.parse import quote

        uri = "file:" + quote(str(self.db_path)) + "?mode=ro"
        for suffix in (("",) if self._immutable else ("", "&immutable=1")):
            conn = sqlite3.connect(uri + suffix, uri=True, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            try:
                conn.execute("PRAGMA user_version").fetchone()
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:
                conn.close()
                if suffix:
                    raise
                self._immutable = True
                continue
            return conn
        raise AssertionError("unreachable")

    def _refuse_write(self, what: str = "change it") -> None:
        if self.read_only:
            raise failures.StoreReadOnly(f"the store at {self.root} is read-only (its folder or lab.db cannot be written): "
                                f"reading works, but Synthlab cannot {what} — make it writable, or copy it to a "
                                "writable folder and use --home there")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT, ROLLBACK on error). Nestable."""
        self._refuse_write()
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back (a full disk, an I/O error); a failed COMMIT may not have
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if failures.is_storage_error(exc):
                raise InvalidInput(f"cannot write to the store at {self.root}: {exc} — free some space (or make "
                                   "it writable) and run again; everything saved before is kept") from exc
            raise

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def query_one(self, sql: str, params: tuple | dict = ()) -> Optional[dict]:
        row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        """Apply the migrations this store lacks. A store of a newer schema is refused (never written:
        this version does not know what the newer one keeps)."""
        latest = max(v for v, _ in migrations.MIGRATIONS)
        conn = self.conn
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > latest:
            raise failures.StoreTooNew(f"this store was made by a newer Synthlab (schema {current}); upgrade Synthlab to "
                              f"open {self.db_path} (this version knows schemas up to {latest}; nothing was written)")
        if current == latest:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return
        self._refuse_write(f"upgrade its schema from {current} to {latest}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for version, sql in sorted(migrations.MIGRATIONS):
                if version <= current:
                    continue
                for statement in sql.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={int(version)}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _remove_temp_files(self) -> None:
        for tmp in self.images_dir.glob("*/.tmp-*"):
            try:
                tmp.unlink()
            except OSError:
                pass

    # -- tags ---------------------------------------------------------------------------------

    # -- images -------------------------------------------------------------------------------

    def add_image(self, image: Image.Image, *, tag: str, source: str, extra: dict | None = None,
                  **provenance: Any) -> tuple[str, bool]:
        """Store an image and its provenance. Returns ``(id, created)``; ``created`` is False for a duplicate.

        The file is on disk (renamed into place) before the row commits.
        """
        if source not in records.SOURCES:
            raise InvalidInput(f"source must be one of {', '.join(records.SOURCES)}, not {source!r}")
        unknown = set(provenance) - set(records.PROVENANCE_FIELDS)
        if unknown:
            raise TypeError(f"unknown provenance fields: {sorted(unknown)}")
        tag = self.get_tag(tag)["name"]
        data = png_bytes(image)
        image_id = hashlib.sha256(data).hexdigest()
        existing = self.query_one("SELECT id FROM images WHERE id = ?", (image_id,))
        if existing:
            return image_id, False
        self.write_png(data)
        row = {
            "id": image_id,
            "tag": tag,
            "source": source,
            "path": str(self.image_file(image_id).relative_to(self.root)),
            "width": image.width,
            "height": image.height,
            "extra": json.dumps(extra or {}, sort_keys=True),
            "created": records.now(),
            **{k: provenance.get(k) for k in records.PROVENANCE_FIELDS},
        }
        cols = ", ".join(row)
        marks = ", ".join(f":{k}" for k in row)
        with self.tx() as conn:
            cur = conn.execute(f"INSERT OR IGNORE INTO images({cols}) VALUES ({marks})", row)
        return image_id, cur.rowcount == 1

    def get_image(self, image_id: str) -> dict:
        row = self.query_one("SELECT * FROM images WHERE id = ?", (image_id,))
        if row is None:
            raise NotFound(f"no image {image_id!r}")
        return self._image_view(row)

    def _image_view(self, row: dict) -> dict:
        provenance = {k: row.pop(k) for k in records.PROVENANCE_FIELDS}
        provenance.update(json.loads(row.pop("extra") or "{}"))
        row["path"] = str(self.root / row["path"])
        row["rejected"] = bool(row["rejected"])
        row["provenance"] = provenance
        return row

    def list_images(self, tag: str | None = None, source: str | None = None, *, include_rejected: bool = True,
                    limit: int | None = None, offset: int = 0) -> list[dict]:
        """Images, newest first within a tag, with provenance under ``provenance``."""
        where, params = self._image_filter(tag, source, include_rejected)
        sql = f"SELECT * FROM images {where} ORDER BY tag, source, created, series, series_index, id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [int(limit), int(offset)]
        return [self._image_view(r) for r in self.query(sql, tuple(params))]

    def count_images(self, tag: str | None = None, source: str | None = None, *, include_rejected: bool = True) -> int:
        where, params = self._image_filter(tag, source, include_rejected)
        return self.conn.execute(f"SELECT COUNT(*) FROM images {where}", tuple(params)).fetchone()[0]

    def _image_filter(self, tag, source, include_rejected) -> tuple[str, list]:
        clauses, params = [], []
        if tag is not None:
            clauses.append("tag = ?")
            params.append(self.get_tag(tag)["name"])
        if source is not None:
            if source not in records.SOURCES:
                raise InvalidInput(f"source must be one of {', '.join(records.SOURCES)}, not {source!r}")
            clauses.append("source = ?")
            params.append(source)
        if not include_rejected:
            clauses.append("rejected = 0")
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    def set_rejected(self, image_id: str, rejected: bool = True) -> None:
        """Reject (or restore) an image: it stays on disk but never enters a slice."""
        with self.tx() as conn:
            cur = conn.execute("UPDATE images SET rejected = ? WHERE id = ?", (int(rejected), image_id))
        if cur.rowcount == 0:
            raise NotFound(f"no image {image_id!r}")

    def series_indices(self, series: str) -> dict[int, str]:
        """``{index: image id}`` of the images a generation series already has."""
        rows = self.query("SELECT series_index, id FROM images WHERE series = ?", (series,))
        return {r["series_index"]: r["id"] for r in rows}

