"""Writing many content-addressed image files at once, crash-safe, with one sync point per batch.

:func:`write_files` puts each file's bytes under a temporary name, fsyncs them concurrently (the
filesystem's journal commits them together instead of once per file), renames them into place and
then fsyncs each touched folder once, so that when it returns every file is whole and durable on disk.
The caller commits the rows of those files afterwards, in one transaction: a crash at any moment leaves
no row without its whole file (at worst a file without a row, which the next import of it reuses).

A write the disk refuses (full, read-only, I/O error, a folder that is not one) raises
:class:`~core.errors.StoreWriteFailed`: that is the store failing, not the file, and the caller stops.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import Iterable

from .errors import StoreWriteFailed
from .store import Store


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
        futures = [pool.submit(_write_temp, item) for item in todo.values()]
        failure = None
        for future in futures:
            try:
                temps.append(future.result())
            except OSError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        for tmp, (target, _) in zip(temps, todo.values()):
            os.replace(tmp, target)
        for folder in {t.parent for t, _ in todo.values()}:
            _fsync_folder(folder)
    except OSError as exc:
        for tmp in temps:
            try:
                tmp.unlink()
            except OSError:
                pass
        raise StoreWriteFailed(_message(store, exc)) from exc
    return set(todo)


def _write_temp(item: tuple[Path, bytes]) -> Path:
    target, data = item
    tmp = target.parent / f".tmp-{target.stem}-{os.getpid()}-{threading.get_ident()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return tmp


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
