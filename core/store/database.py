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
import unicodedata
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from PIL import Image

from core import config
from core.errors import InvalidInput, NotFound, UnknownTag, UserError

SOURCES = ("synthetic", "real", "test")
TAG_NAME_MAX = 64
PROMPT_MAX = 10_000

PROVENANCE_FIELDS = (
    "model_id",
    "model_revision",
    "prompt",
    "negative",
    "seed",
    "steps",
    "guidance",
    "scheduler",
    "series",
    "series_index",
    "job_id",
    "original_name",
)

_VERIFIED: set[tuple] = set()  # image files whose SHA-256 was checked in this process: (path, size, mtime, inode, dev)

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE tags(
            name TEXT PRIMARY KEY,
            prompt TEXT NOT NULL DEFAULT '',
            negative TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL);
        CREATE TABLE images(
            id TEXT PRIMARY KEY,
            tag TEXT NOT NULL REFERENCES tags(name),
            source TEXT NOT NULL CHECK (source IN ('synthetic', 'real', 'test')),
            path TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            model_id TEXT, model_revision TEXT, prompt TEXT, negative TEXT,
            seed INTEGER, steps INTEGER, guidance REAL, scheduler TEXT,
            series TEXT, series_index INTEGER, job_id INTEGER, original_name TEXT,
            extra TEXT NOT NULL DEFAULT '{}',
            rejected INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL,
            UNIQUE(series, series_index));
        CREATE INDEX images_by_tag ON images(tag, source, rejected);
        CREATE TABLE jobs(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            params TEXT NOT NULL,
            params_key TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            done INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '',
            error TEXT,
            result TEXT,
            owner TEXT,
            heartbeat REAL,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            created TEXT NOT NULL,
            started TEXT,
            finished TEXT);
        CREATE INDEX jobs_by_status ON jobs(status, id);
        CREATE TABLE slices(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            hash TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            spec TEXT NOT NULL,
            count_per_tag INTEGER NOT NULL,
            size INTEGER,
            real_fraction REAL NOT NULL,
            repeat INTEGER NOT NULL,
            created TEXT NOT NULL);
        CREATE INDEX slices_by_name ON slices(name);
        CREATE TABLE slice_images(
            slice_id INTEGER NOT NULL REFERENCES slices(id),
            image_id TEXT NOT NULL REFERENCES images(id),
            position INTEGER NOT NULL,
            PRIMARY KEY (slice_id, image_id));
        CREATE TABLE runs(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            slice_id INTEGER REFERENCES slices(id),
            backend TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'queued',
            job_id INTEGER,
            artifact TEXT,
            metrics TEXT NOT NULL DEFAULT '{}',
            error TEXT,
            created TEXT NOT NULL,
            started TEXT,
            finished TEXT);
        CREATE TABLE predictions(
            run_id INTEGER NOT NULL REFERENCES runs(id),
            image_id TEXT NOT NULL REFERENCES images(id),
            probabilities TEXT NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (run_id, image_id));
        """,
    ),
    (
        2,
        """
        CREATE TABLE embeddings(
            encoder TEXT NOT NULL,
            size INTEGER NOT NULL,
            image_id TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (encoder, size, image_id));
        CREATE INDEX runs_by_slice ON runs(slice_id, backend, status);
        """,
    ),
    (
        3,
        """
        CREATE TABLE azure_projects(
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            endpoint TEXT NOT NULL,
            series_key TEXT NOT NULL,
            sweep TEXT NOT NULL,
            name TEXT NOT NULL,
            project_id TEXT,
            spec TEXT NOT NULL DEFAULT '{}',
            created TEXT NOT NULL,
            UNIQUE (endpoint, series_key));
        CREATE TABLE azure_tags(
            project INTEGER NOT NULL REFERENCES azure_projects(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            tag_id TEXT NOT NULL,
            PRIMARY KEY (project, tag));
        CREATE TABLE azure_images(
            project INTEGER NOT NULL REFERENCES azure_projects(id) ON DELETE CASCADE,
            image_id TEXT NOT NULL,
            azure_image_id TEXT NOT NULL,
            status TEXT NOT NULL,
            created TEXT NOT NULL,
            PRIMARY KEY (project, image_id));
        CREATE TABLE azure_iterations(
            project INTEGER NOT NULL REFERENCES azure_projects(id) ON DELETE CASCADE,
            slice_id INTEGER NOT NULL,
            params_key TEXT NOT NULL,
            iteration_id TEXT,
            status TEXT NOT NULL,
            published_name TEXT,
            error TEXT,
            created TEXT NOT NULL,
            PRIMARY KEY (project, slice_id, params_key));
        """,
    ),
    (
        4,
        """
        CREATE TABLE slice_filtered(
            slice_id INTEGER NOT NULL REFERENCES slices(id),
            image_id TEXT NOT NULL REFERENCES images(id),
            reason TEXT NOT NULL,
            PRIMARY KEY (slice_id, image_id));
        """,
    ),
    (
        5,
        """
        ALTER TABLE jobs ADD COLUMN started_by TEXT;
        ALTER TABLE runs ADD COLUMN started_by TEXT;
        """,
    ),
    (
        6,
        """
        CREATE TABLE IF NOT EXISTS image_signatures(
            image_id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            phash INTEGER NOT NULL,
            hashes BLOB NOT NULL,
            thumb BLOB NOT NULL,
            created TEXT NOT NULL);
        """,
    ),
]


class StoreReadOnly(UserError):
    """A write was asked of a store that can only be read (read-only mount or permissions)."""


class StoreTooNew(UserError):
    """The store's schema is newer than this version of Synthlab knows."""


class StoreDamaged(UserError):
    """``lab.db`` or an image file of the store is missing, truncated or not what it should be."""


def store_damage(store: "Store", exc: BaseException) -> Optional[StoreDamaged]:
    """The user-facing :class:`StoreDamaged` for an SQLite error that means ``lab.db`` is damaged
    (not a database, malformed, truncated), else None."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or any(
            t in text for t in ("file is not a database", "malformed", "file is encrypted")):
        return StoreDamaged(f"the store's database {store.db_path} is damaged ({text}): restore lab.db from a "
                            "backup, or move the store folder away and start a new one; nothing was written")
    return None


def _is_storage_error(exc: sqlite3.Error) -> bool:
    """A full, failing or read-only disk under ``lab.db`` (not a bug in a query)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")) or \
        any(text in str(exc) for text in ("disk is full", "disk I/O error", "readonly database"))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def validate_tag_name(name: str) -> str:
    """A tag name is shown, stored and used as a folder name in exports: keep it plain.

    Letters (any script), digits, spaces, ``-``, ``_`` and ``.``; 1–64 characters; not only dots.
    """
    if not isinstance(name, str):
        raise InvalidInput("tag name must be text")
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise InvalidInput("tag name is empty")
    if len(name) > TAG_NAME_MAX:
        raise InvalidInput(f"tag name is longer than {TAG_NAME_MAX} characters")
    for ch in name:
        if ch in "/\\":
            raise InvalidInput(f"tag name {name!r} contains a path separator")
        if unicodedata.category(ch)[0] == "C":
            raise InvalidInput(f"tag name {name!r} contains a control character")
        if not (ch.isalnum() or ch in " -_."):
            raise InvalidInput(
                f"tag name {name!r} contains {ch!r}: use letters, digits, spaces, '-', '_' or '.'"
            )
    if set(name) <= {"."}:
        raise InvalidInput(f"tag name {name!r} is not allowed")
    return name


def validate_prompt(text: str, what: str = "prompt") -> str:
    if text is None:
        return ""
    if len(text) > PROMPT_MAX:
        raise InvalidInput(f"{what} is longer than {PROMPT_MAX} characters ({len(text)})")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in text):
        raise InvalidInput(f"{what} contains control characters")
    return text.strip()


def png_bytes(image: Image.Image) -> bytes:
    """Encode an image as PNG deterministically (no metadata), RGB."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class Store:
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
            damaged = store_damage(self, exc)
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
            raise StoreReadOnly(f"the store at {self.root} is read-only (its folder or lab.db cannot be written): "
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
            if _is_storage_error(exc):
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
        latest = max(v for v, _ in MIGRATIONS)
        conn = self.conn
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > latest:
            raise StoreTooNew(f"this store was made by a newer Synthlab (schema {current}); upgrade Synthlab to "
                              f"open {self.db_path} (this version knows schemas up to {latest}; nothing was written)")
        if current == latest:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return
        self._refuse_write(f"upgrade its schema from {current} to {latest}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            for version, sql in sorted(MIGRATIONS):
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

    def add_tag(self, name: str, prompt: str = "", negative: str = "", *, update: bool = False) -> dict:
        """Create a tag (or, with ``update``, change its prompts). A name equal to an existing one under
        NFC and case-folding (:func:`core.store.tagnames.tag_key`) is the same tag: refused unless ``update``."""
        from core.store.tagnames import tag_key

        name = validate_tag_name(name)
        prompt = validate_prompt(prompt)
        negative = validate_prompt(negative, "negative prompt")
        with self.tx() as conn:
            same = [r[0] for r in conn.execute("SELECT name FROM tags").fetchall() if tag_key(r[0]) == tag_key(name)]
            existing = name if name in same else (same[0] if len(same) == 1 else None)
            if same and not update:
                shown = existing or same[0]
                hint = "" if shown == name else f" ({name!r} is the same name: tag names ignore case)"
                raise InvalidInput(f"tag {shown!r} already exists{hint}")
            if same and existing is None:
                raise InvalidInput(f"tag {name!r} is ambiguous: the store has {', '.join(map(repr, same))}")
            if existing:
                conn.execute("UPDATE tags SET prompt = ?, negative = ? WHERE name = ?", (prompt, negative, existing))
                name = existing
            else:
                conn.execute(
                    "INSERT INTO tags(name, prompt, negative, created) VALUES (?, ?, ?, ?)",
                    (name, prompt, negative, now()),
                )
        return self.get_tag(name)

    def find_tag(self, name: str) -> Optional[str]:
        """The stored name of tag ``name``: the exact name, else the one tag with the same
        :func:`core.store.tagnames.tag_key` (NFC, case-folded); None when there is none. A name that matches
        two stored tags only by key (a store made before names were unique) is refused as ambiguous."""
        from core.store.tagnames import nfc, tag_key

        if not isinstance(name, str):
            return None
        names = self.tag_names()
        for candidate in (name, nfc(name)):
            if candidate in names:
                return candidate
        same = [n for n in names if tag_key(n) == tag_key(name)]
        if len(same) > 1:
            raise InvalidInput(f"tag {name!r} is ambiguous: the store has {', '.join(map(repr, same))} "
                               "(name one exactly)")
        return same[0] if same else None

    def canonical_tag(self, name: str) -> str:
        """The stored name of the tag ``name`` refers to, or ``name`` (NFC) when there is none yet."""
        from core.store.tagnames import nfc

        return self.find_tag(name) or nfc(name)

    def get_tag(self, name: str) -> dict:
        found = self.find_tag(name)
        row = None if found is None else self.query_one(
            "SELECT name, prompt, negative, created FROM tags WHERE name = ?", (found,))
        if row is None:
            raise UnknownTag(name)
        row["counts"] = self.tag_counts(row["name"])
        return row

    def tag_counts(self, name: str) -> dict[str, int]:
        counts = {s: 0 for s in SOURCES}
        for row in self.query(
            "SELECT source, COUNT(*) AS n FROM images WHERE tag = ? AND rejected = 0 GROUP BY source", (name,)
        ):
            counts[row["source"]] = row["n"]
        return counts

    def list_tags(self) -> list[dict]:
        tags = self.query("SELECT name, prompt, negative, created FROM tags ORDER BY name")
        counts: dict[str, dict[str, int]] = {t["name"]: {s: 0 for s in SOURCES} for t in tags}
        for row in self.query(
            "SELECT tag, source, COUNT(*) AS n FROM images WHERE rejected = 0 GROUP BY tag, source"
        ):
            counts[row["tag"]][row["source"]] = row["n"]
        for tag in tags:
            tag["counts"] = counts[tag["name"]]
        return tags

    def tag_names(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM tags ORDER BY name")]

    # -- images -------------------------------------------------------------------------------

    def image_file(self, image_id: str) -> Path:
        return self.images_dir / image_id[:2] / f"{image_id}.png"

    def write_png(self, data: bytes) -> str:
        """Write PNG bytes under their SHA-256 (temp file, fsync, rename). Returns the id."""
        self._refuse_write("store an image")
        image_id = hashlib.sha256(data).hexdigest()
        target = self.image_file(image_id)
        if target.exists() and target.stat().st_size == len(data):
            return image_id
        tmp = target.parent / f".tmp-{image_id}-{os.getpid()}-{threading.get_ident()}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            where = Path(exc.filename).relative_to(self.root) if exc.filename and str(exc.filename).startswith(
                str(self.root)) else target.relative_to(self.root)
            raise InvalidInput(f"cannot write to the store at {self.root}: {exc.strerror or exc} ({where})") from exc
        return image_id

    def add_image(self, image: Image.Image, *, tag: str, source: str, extra: dict | None = None,
                  **provenance: Any) -> tuple[str, bool]:
        """Store an image and its provenance. Returns ``(id, created)``; ``created`` is False for a duplicate.

        The file is on disk (renamed into place) before the row commits.
        """
        if source not in SOURCES:
            raise InvalidInput(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
        unknown = set(provenance) - set(PROVENANCE_FIELDS)
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
            "created": now(),
            **{k: provenance.get(k) for k in PROVENANCE_FIELDS},
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
        provenance = {k: row.pop(k) for k in PROVENANCE_FIELDS}
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
            if source not in SOURCES:
                raise InvalidInput(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
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

    def image_bytes(self, image_id: str) -> bytes:
        """The stored PNG bytes of ``image_id``, checked against the SHA-256 they are named by.

        A missing, unreadable or replaced file is a :class:`StoreDamaged` naming the file and what to do.
        """
        path = self.image_file(image_id)
        known = self._file_key(image_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self._damaged_image(image_id, "is missing") from None
        except OSError as exc:
            raise self._damaged_image(image_id, f"cannot be read ({exc.strerror or exc})") from None
        if known is not None and known in _VERIFIED and len(data) == known[1]:
            return data
        if hashlib.sha256(data).hexdigest() != image_id:
            raise self._damaged_image(image_id, "does not match its SHA-256 (the file was replaced or damaged)")
        if known is not None:
            _VERIFIED.add(known)
        return data

    def verify_image(self, image_id: str) -> None:
        """Check an image file against its SHA-256 once per process (again if the file changed since)."""
        key = self._file_key(image_id)
        if key is None or key not in _VERIFIED:
            self.image_bytes(image_id)

    def _file_key(self, image_id: str) -> Optional[tuple]:
        try:
            st = os.stat(self.image_file(image_id))
        except OSError:
            return None
        return (str(self.image_file(image_id)), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    def _damaged_image(self, image_id: str, what: str) -> StoreDamaged:
        row = self.query_one("SELECT tag, source FROM images WHERE id = ?", (image_id,))
        of = f" ({row['source']} image of tag {row['tag']!r})" if row else ""
        return StoreDamaged(f"image file {self.image_file(image_id)} {what}{of}: restore it from a backup of the "
                            f"store's images folder, or reject the image (python -m core images reject {image_id}) "
                            "and run again")

    def open_image(self, image_id: str) -> Image.Image:
        """Image ``image_id`` as RGB, from bytes checked against its SHA-256 (:meth:`image_bytes`)."""
        data = self.image_bytes(image_id)
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise self._damaged_image(image_id, f"cannot be decoded ({exc})") from None
