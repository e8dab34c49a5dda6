"""What can be wrong with a store: read-only, written by a newer version, or damaged on disk."""

from __future__ import annotations

import sqlite3
from typing import Optional

from core.errors import UserError


class StoreReadOnly(UserError):
    """A write was asked of a store that can only be read (read-only mount or permissions)."""


class StoreTooNew(UserError):
    """The store's schema is newer than this version of Synthlab knows."""


class StoreDamaged(UserError):
    """``lab.db`` or an image file of the store is missing, truncated or not what it should be."""


def store_damage(store, exc: BaseException) -> Optional[StoreDamaged]:
    """The user-facing :class:`StoreDamaged` for an SQLite error that means ``lab.db`` is damaged
    (not a database, malformed, truncated), else None."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or any(
            t in text for t in ("file is not a database", "malformed", "file is encrypted")):
        return StoreDamaged(f"the store's database {store.db_path} is damaged ({text}): restore lab.db from a "
                            "backup, or move the store folder away and start a new one; nothing was written")
    return None


def is_storage_error(exc: sqlite3.Error) -> bool:
    """A full, failing or read-only disk under ``lab.db`` (not a bug in a query)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN")) or \
        any(text in str(exc) for text in ("disk is full", "disk I/O error", "readonly database"))


def storage_failure(root, exc: BaseException) -> Optional[UserError]:
    """The user-facing error for an SQLite error that means the disk under the store is full, failing or
    read-only — raised anywhere, not only inside a write transaction (a full disk can fail the read that
    follows a write as ``disk I/O error``) — else None."""
    if root is None or not isinstance(exc, sqlite3.Error) or not is_storage_error(exc):
        return None
    return UserError(f"cannot write to the store at {root}: {exc} — free some space (or make it writable) "
                     "and run again; everything saved before is kept")
