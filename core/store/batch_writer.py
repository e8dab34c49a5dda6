"""Writing many content-addressed image files at once, crash-safe, with one sync point per batch.

:func:`write_files` puts each file's bytes under a temporary name, makes them durable, renames them
into place and makes the renames durable, so that when it returns every file is whole and on disk
under its name. On Linux each of the two steps is one ``syncfs`` of the store's filesystem (one
journal commit for the whole batch, instead of an fsync per file and per folder); elsewhere the temp
files are fsynced concurrently and each touched folder once.
The caller commits the rows of those files afterwards, in one transaction: a crash at any moment leaves
no row without its whole file (at worst a file without a row, which the next import of it reuses).

A write the disk refuses (full, read-only, I/O error, a folder that is not one) raises
:class:`~core.errors.StoreWriteFailed`: that is the store failing, not the file, and the caller stops.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Callable, Iterable, Optional

from core.errors import StoreWriteFailed
from core.store.database import Store


def write_files(store: Store, files: Iterable[tuple[str, bytes]], pool: Executor) -> set[str]:
    """Write ``(image id, png bytes)`` pairs as the store's image files. Returns the ids newly written
    (a file already there with the right size is left as it is)."""
    todo = {}
    for image_id, data in files:
        target = store.image_file(image_id)
        if image_id not in todo and not (target.is_file() and target.stat().st_size == len(data)):
            todo[image_id] = (target, data)
    if not todo:
        return set()
    temps: list[Path] = []
    try:
        for folder in {t.parent for t, _ in todo.values()}:
            folder.mkdir(parents=True, exist_ok=True)
        sync = _syncfs(store.images_dir)
        futures = [pool.submit(_write_temp, item, sync is None) for item in todo.values()]
        failure = None
        for future in futures:
            try:
                temps.append(future.result())
            except OSError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        if sync is not None:
            sync()
        for tmp, (target, _) in zip(temps, todo.values()):
            os.replace(tmp, target)
        if sync is not None:
            sync()
        else:
            list(pool.map(_fsync_folder, {t.parent for t, _ in todo.values()}))
    except OSError as exc:
        for tmp in temps:
            try:
                tmp.unlink()
            except OSError:
                pass
        raise StoreWriteFailed(_message(store, exc)) from exc
    return set(todo)


def _write_temp(item: tuple[Path, bytes], fsync: bool) -> Path:
    target, data = item
    tmp = target.parent / f".tmp-{target.stem}-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return tmp


_LIBC: Optional[object] = None


def _syncfs(folder: Path) -> Optional[Callable[[], None]]:
    """A function that flushes ``folder``'s whole filesystem (Linux ``syncfs``), or None where there is none."""
    global _LIBC
    if not sys.platform.startswith("linux"):
        return None
    try:
        if _LIBC is None:
            import ctypes

            _LIBC = ctypes.CDLL(None, use_errno=True)
        syncfs = _LIBC.syncfs  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return None

    def sync() -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            if syncfs(fd) != 0:
                import ctypes

                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err), str(folder))
        finally:
            os.close(fd)
    return sync


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _message(store: Store, exc: OSError) -> str:
    where = ""
    if exc.filename and str(exc.filename).startswith(str(store.root)):
        where = f" ({Path(exc.filename).relative_to(store.root).parent})"
    return (f"cannot write to the store at {store.root}: {exc.strerror or exc}{where} — free some space "
            "(or make it writable) and run again; everything imported before is kept")
