"""Safe output paths: the one guard every command that writes a user-named file goes through
(``report --out``, ``export --out``, the pages' save buttons).

Contract of :func:`check_output`:

- an empty path is refused;
- nothing that belongs to a store is ever written: ``lab.db`` and its ``-wal`` / ``-shm`` / ``-journal``
  files (also when reached by another name: a hard link or a bind mount is compared by inode), and
  anything under the store's ``images/``, ``cache/``, ``models/``, ``logs/`` or ``workspaces/``;
- only a regular file may be replaced: devices, FIFOs, sockets and folders are refused;
- **symbolic links are refused**, never written through (a link could lead anywhere, the store included):
  give the real path;
- the folder must exist and be writable.

:func:`write_output` writes to a temporary file beside the target (created with mode 0666 less the
umask, so a report is as shareable as any file the user makes; an existing file keeps its mode),
fsyncs it and renames it into place: a failed write leaves the old file, byte for byte.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Optional, Type

from core.errors import UserError

STORE_FILES = ("lab.db", "lab.db-wal", "lab.db-shm", "lab.db-journal")
STORE_FOLDERS = ("images", "cache", "models", "logs", "workspaces")


class OutputRefused(UserError):
    """An output path that would overwrite the store, a device, a link, or cannot be written."""


def _store_roots(store_root: Optional[os.PathLike]) -> list[Path]:
    roots = []
    if store_root is not None:
        roots.append(Path(store_root).resolve())
    return roots


def _is_store_path(target: Path, roots: list[Path]) -> Optional[str]:
    """Which store file or folder ``target`` is (its resolved path or its inode), else None."""
    resolved = target.parent.resolve() / target.name
    for root in roots:
        for name in STORE_FILES:
            own = root / name
            if resolved == own:
                return str(own)
            try:
                if resolved.exists() and own.exists() and os.path.samefile(resolved, own):
                    return str(own)
            except OSError:
                pass
        for folder in STORE_FOLDERS:
            if resolved.is_relative_to(root / folder):
                return str(root / folder) + os.sep
        if resolved == root:
            return str(root)
    return None


def refuse_store_path(out: str | os.PathLike, store_root: Optional[os.PathLike], *, what: str,
                      error: Type[UserError] = OutputRefused) -> None:
    """Raise ``error`` when ``out`` is one of the store's own files or folders (see the module)."""
    target = Path(out).expanduser().absolute()
    owned = _is_store_path(target, _store_roots(store_root))
    if owned is not None:
        raise error(f"cannot write the {what} to {target}: that is the store's own {owned} — writing there "
                    "would destroy the store; write the file outside the store folder")


def check_output(out: str | os.PathLike | None, store_root: Optional[os.PathLike], *, what: str,
                 error: Type[UserError] = OutputRefused) -> Path:
    """The absolute path ``out`` names, if a new regular file may be written there (see the module).

    Raises ``error`` (a :class:`UserError`) with ``cannot write the WHAT to PATH: REASON``.
    """
    if out is None or not str(out).strip():
        raise error(f"no output file given for the {what}")
    target = Path(out).expanduser().absolute()

    def refuse(reason: str) -> UserError:
        return error(f"cannot write the {what} to {target}: {reason}")

    refuse_store_path(target, store_root, what=what, error=error)
    if target.parent.exists() and not target.parent.is_dir():
        raise refuse(f"{target.parent} is a file, not a folder")
    if not target.parent.is_dir():
        raise refuse(f"the folder {target.parent} does not exist")
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise refuse(exc.strerror or str(exc)) from None
    if info is not None:
        if stat.S_ISLNK(info.st_mode):
            raise refuse("it is a symbolic link; links are not written through, give the real path")
        if stat.S_ISDIR(info.st_mode):
            raise refuse("it is a folder; give a file name")
        if not stat.S_ISREG(info.st_mode):
            kind = ("a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                    "a named pipe (FIFO)" if stat.S_ISFIFO(info.st_mode) else
                    "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
            raise refuse(f"it is {kind}; only regular files are written")
    if not os.access(target.parent, os.W_OK):
        raise refuse(f"the folder {target.parent} is not writable")
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_output(target: Path, write: Callable[[BinaryIO], None], *, what: str,
                 error: Type[UserError] = OutputRefused) -> Path:
    """Write ``target`` (already passed :func:`check_output`) with ``write(fh)``, atomically."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode) if target.is_file() else 0o666 & ~_umask()
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise error(f"cannot write the {what} to {target}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != tmp else ""
        raise error(f"cannot write the {what} to {target}: {exc.strerror or exc}{where}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
