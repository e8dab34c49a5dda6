"""Demo workspaces at scale: a bounded set of open stores, work found without opening every store, removed
workspaces never reopened, new workspaces capped per hour, and idle cleanup that cannot race a new job.

Why: a store keeps up to three files open (``lab.db``, ``-wal``, ``-shm``). A worker that opened every
workspace and kept it open stopped serving anyone at ~1 500 workspaces under the common 1 024 open-file
limit. Here:

* :class:`StorePool` keeps at most ``capacity`` stores open, closing the least recently used, and checks
  on every ``get`` that the workspace's ``lab.db`` is still the file it opened: a removed (or replaced)
  workspace raises :class:`~core.errors.NotFound` with :data:`REMOVED` and is never served from memory —
  nor re-created, since a store is only constructed over an existing ``lab.db``.
* :class:`WorkWatch` finds the workspaces with queued or running jobs by watching each ``lab.db`` and
  ``-wal`` signature (size, mtime) and querying, with a short-lived connection, only those that
  changed; so a poll over 10 000 workspaces is a directory scan, and a job in a workspace untouched for a
  day is found as fast as one in a fresh workspace.
* :func:`claim_creation` allows at most ``SYNTHLAB_DEMO_NEW_WORKSPACES_PER_HOUR`` new workspaces per hour
  per server (a file of timestamps under an ``flock``, shared by every process of the server).
* :func:`remove_if_idle` removes a workspace only while holding its database's write lock after seeing no
  queued or running job, and renames it away before releasing the lock, so no job can be queued into a
  workspace that is being removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from core import config
from core.errors import NotFound, UserError

REMOVED = "no such workspace (it may have been removed after being idle): start a new one"
DEFAULT_CAPACITY = 64
DEFAULT_NEW_PER_HOUR = 200
_TRASH = ".removed"
_CREATED_LOG = ".created"
_ACTIVE_SQL = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')"


class CreationLimited(UserError):
    """The server made as many new workspaces this hour as it may."""


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder / "lab.db")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _open_store(folder: Path):
    from core.store.database import Store

    return Store(folder)


class StorePool:
    """At most ``capacity`` open workspace stores, least recently used closed first.

    ``get`` is for one serving thread (the worker): closing a store closes the calling thread's connection.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, opener: Callable[[Path], object] = _open_store):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._opener = opener
        self._open: OrderedDict[str, tuple[object, tuple[int, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, folder: str | os.PathLike):
        """The open store of the workspace at ``folder``; :class:`NotFound` when it was removed."""
        folder = Path(folder)
        key = str(folder)
        with self._lock:
            ident = _identity(folder)
            entry = self._open.get(key)
            if entry is not None and entry[1] != ident:
                self._close(key)
                entry = None
            if ident is None:
                raise NotFound(REMOVED)
            if entry is None:
                entry = (self._opener(folder), ident)
                self._open[key] = entry
                while len(self._open) > self.capacity:
                    self._close(next(iter(self._open)))
            self._open.move_to_end(key)
            return entry[0]

    def discard(self, folder: str | os.PathLike) -> None:
        with self._lock:
            self._close(str(Path(folder)))

    def close_all(self) -> None:
        with self._lock:
            for key in list(self._open):
                self._close(key)

    def open_count(self) -> int:
        return len(self._open)

    def _close(self, key: str) -> None:
        entry = self._open.pop(key, None)
        if entry is not None:
            with contextlib.suppress(Exception):  # a store whose files vanished closes as it can
                entry[0].close()


def _signature(folder: Path) -> tuple:
    out = []
    for name in ("lab.db", "lab.db-wal"):
        try:
            st = os.stat(folder / name)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def queued_jobs(folder: Path) -> int:
    """Queued jobs of a workspace (see :func:`active_jobs`)."""
    return active_jobs(folder, "SELECT COUNT(*) FROM jobs WHERE status = 'queued'")


def active_jobs(folder: Path, sql: str = _ACTIVE_SQL) -> int:
    """Queued + running jobs of a workspace, read with a short-lived connection that never creates a
    database (``mode=rw``) and, closing last, leaves no ``-wal``/``-shm`` behind; 0 when the workspace has no
    jobs table yet, or is gone."""
    try:
        conn = sqlite3.connect(f"file:{folder / 'lab.db'}?mode=rw", uri=True, timeout=5)
    except sqlite3.Error:
        return 0
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


class WorkWatch:
    """The workspaces with queued or running jobs, found by a directory scan plus a query of the changed ones."""

    def __init__(self, root: str | os.PathLike, pool: StorePool, valid: Callable[[str], bool]):
        self.root = Path(root)
        self.pool = pool
        self.valid = valid
        self._signatures: dict[str, tuple] = {}
        self._busy: set[str] = set()
        self._last: str | None = None

    def busy_ids(self) -> list[str]:
        """Ids with queued or running jobs, sorted; queries only workspaces whose files changed."""
        try:
            names = [e.name for e in os.scandir(self.root) if self.valid(e.name)]
        except OSError:
            names = []
        present = set(names)
        for gone in [n for n in self._signatures if n not in present]:
            self._signatures.pop(gone, None)
            self._busy.discard(gone)
        for name in names:
            folder = self.root / name
            signature = _signature(folder)
            if signature[0] is None:
                self._busy.discard(name)
                continue
            if self._signatures.get(name) == signature and name not in self._busy:
                continue
            self._signatures[name] = signature
            if active_jobs(folder):
                self._busy.add(name)
            else:
                self._busy.discard(name)
        return sorted(self._busy)

    def others_queued(self, root: str) -> bool:
        """Whether a workspace other than the one at ``root`` has a queued job (a fresh scan)."""
        for name in self.busy_ids():
            folder = self.root / name
            if str(folder) != str(root) and queued_jobs(folder):
                return True
        return False

    def stores_with_work(self, after: str | None = None) -> list:
        """Open stores of busy workspaces: at most ``capacity - 1``, starting after the root ``after`` (the
        last one served), so every busy workspace gets its turn however many there are."""
        ids = self.busy_ids()
        folders = [str(self.root / i) for i in ids]
        start = next((k for k, f in enumerate(folders) if after is not None and f > after), 0)
        window = (folders[start:] + folders[:start])[: max(self.pool.capacity - 1, 1)]
        out = []
        for folder in window:
            try:
                out.append(self.pool.get(folder))
            except (NotFound, OSError, sqlite3.Error):
                self._busy.discard(Path(folder).name)
        return out


# -- creating and removing ------------------------------------------------------------------------

def count_setting(name: str, default: int) -> int:
    """A whole-number, non-negative setting (the demo's caps and quotas), ``default`` when unset; a bad value
    is one :class:`UserError` naming the setting."""
    text = (config.setting(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {text!r}") from None
    if value < 0:
        raise UserError(f"{name} must not be negative, not {value}")
    return value


def new_per_hour() -> int:
    return count_setting("SYNTHLAB_DEMO_NEW_WORKSPACES_PER_HOUR", DEFAULT_NEW_PER_HOUR)


def claim_creation(root: str | os.PathLike, limit: int | None = None, now: float | None = None) -> None:
    """Count one new workspace against the server's hourly cap, or raise :class:`CreationLimited`."""
    limit = new_per_hour() if limit is None else limit
    now = time.time() if now is None else now
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / _CREATED_LOG, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        recent = []
        for line in fh.read().split():
            try:
                stamp = float(line)
            except ValueError:
                continue
            if now - 3600 < stamp <= now + 60:
                recent.append(stamp)
        if len(recent) >= limit:
            wait = max(1, int((min(recent) + 3600 - now) // 60) + 1)
            raise CreationLimited(f"demo limit: this server made its {limit} new workspaces for this hour; "
                                  f"try again in {wait} minute{'s' if wait != 1 else ''} (or keep using "
                                  "a workspace link you have)")
        recent.append(now)
        fh.seek(0)
        fh.truncate()
        fh.write("\n".join(f"{s:.3f}" for s in recent) + "\n")


def remove_if_idle(folder: str | os.PathLike, pool: StorePool | None = None, *, busy_timeout: float = 5) -> bool:
    """Remove a workspace unless it has a queued or running job; True when removed.

    The check and the rename happen under the database's write lock (``BEGIN IMMEDIATE``): a job queued
    before it is seen and keeps the workspace; one queued after finds the workspace gone.
    """
    folder = Path(folder)
    if not (folder / "lab.db").is_file():
        return False
    trash = folder.parent / _TRASH
    trash.mkdir(exist_ok=True)
    target = trash / f"{folder.name}.{os.getpid()}.{time.monotonic_ns()}"
    try:
        conn = sqlite3.connect(f"file:{folder / 'lab.db'}?mode=rw", uri=True, timeout=busy_timeout,
                               isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            busy = conn.execute(_ACTIVE_SQL).fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            busy = 0
        if busy:
            conn.execute("ROLLBACK")
            return False
        os.rename(folder, target)
        conn.execute("ROLLBACK")
    except (sqlite3.Error, OSError):
        return False
    finally:
        conn.close()
    if pool is not None:
        pool.discard(folder)
    shutil.rmtree(target, ignore_errors=True)
    return True
