"""Where imported bytes come from: files, folders, zip entries and uploads, as *candidates*.

A candidate reads its bytes lazily (at most a limit plus one, to tell an oversize file) and knows the
tag-named subfolder it sat in and its same-stem JSON sidecar, if any. Only regular files are opened —
non-blocking, checked again on the open descriptor — so a FIFO or device is rejected, never read.
Zip entries are read in memory; unsafe (zip-slip), nested and encrypted entries are refused.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Optional

from PIL import Image

from core.data import generator_metadata

SKIPPED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}
NOT_REGULAR = "not a regular file (a pipe, device or socket is never read)"


class Rejected(Exception):
    """One file that cannot be imported; ``str()`` is the reason shown to the user."""


@dataclass
class _Candidate:
    label: str            # what the user sees: a path, "archive.zip!jeans/a.jpg", an upload name
    folder_tag: Optional[str]  # the tag-named subfolder it sat in, if any
    read: Callable[[int], bytes]  # reads at most n bytes (n = limit + 1 to detect oversize)
    size: Optional[int]   # declared size in bytes when known before reading
    rejected: Optional[str] = None
    sidecar: Optional[Callable[[], Optional[bytes]]] = None  # the same-stem .json beside it, if any


def _no_read(n: int) -> bytes:
    return b""


def _is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def _skipped(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p in SKIPPED_NAMES for p in parts)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _file_candidate(path: Path, label: str, folder_tag: Optional[str],
                    sidecar: Optional[Path] = None) -> _Candidate:
    """A file on disk. Only a regular file is opened — non-blocking, and checked again on the open
    descriptor — so a FIFO, a device (``/dev/zero``) or a link to one is rejected, never read."""
    def read(n: int) -> bytes:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        except OSError as exc:
            raise Rejected(f"cannot read the file: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Rejected(NOT_REGULAR)
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read(n)
        except OSError as exc:
            raise Rejected(f"cannot read the file: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def read_sidecar() -> Optional[bytes]:
        if sidecar is None or not _regular(sidecar):
            return None
        try:
            with sidecar.open("rb") as fh:
                return fh.read(generator_metadata.MAX_RAW + 1)
        except OSError:
            return None

    try:
        info = path.stat()
    except OSError as exc:
        return _Candidate(label, folder_tag, _no_read, None, f"cannot read the file: {exc.strerror or exc}")
    if not stat.S_ISREG(info.st_mode):
        return _Candidate(label, folder_tag, _no_read, None, NOT_REGULAR)
    return _Candidate(label, folder_tag, read, info.st_size, sidecar=read_sidecar)


def _is_sidecar_name(name: str) -> bool:
    return name.lower().endswith(".json")


def _sidecar_name(name: str) -> str:
    stem, dot, _ = name.rpartition(".")
    return f"{stem}.json" if dot else f"{name}.json"


def _has_image_twin(name: str, names: Iterable[str]) -> bool:
    """A ``.json`` whose stem is also an image's stem beside it: read as that image's sidecar."""
    stem = name[:-len(".json")]
    return any(other != name and other.rpartition(".")[0] == stem for other in names)


def _folder_candidates(root: Path) -> list[_Candidate]:
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped([d]))
        kept = [n for n in sorted(names) if not _skipped([n])]
        for name in kept:
            if not (_is_sidecar_name(name) and _has_image_twin(name, kept)):
                files.append(Path(folder, name).relative_to(root))
    rel = _tag_relative([PurePosixPath(p.as_posix()) for p in files], _image_suffixes())
    out = []
    for path, (tag, _) in zip(files, rel):
        full = root / path
        if _is_zip_name(full.name):
            out.append(_Candidate(str(full), None, _no_read, None,
                                  "a zip inside a folder is not opened: import it on its own"))
        else:
            out.append(_file_candidate(full, str(full), tag, full.with_name(_sidecar_name(full.name))))
    return out


def _zip_candidates(label: str, opener: Callable[[], io.IOBase], opened: ExitStack) -> list[_Candidate]:
    try:
        archive = opened.enter_context(zipfile.ZipFile(opener()))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        return [_Candidate(label, None, _no_read, None, f"not a readable zip file ({exc})")]
    safe: list[tuple[zipfile.ZipInfo, PurePosixPath]] = []
    out: list[_Candidate] = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts:
            out.append(_Candidate(f"{label}!{info.filename}", None, _no_read, None,
                                  "unsafe path in zip (absolute or '..': zip-slip), refused"))
        elif not _skipped(parts):
            safe.append((info, PurePosixPath(*[p for p in parts if p not in ("", ".")])))
    names = [p.as_posix() for _, p in safe]
    by_name = dict(zip(names, (i for i, _ in safe)))
    safe = [(i, p) for i, p in safe if not (_is_sidecar_name(p.name) and _has_image_twin(p.as_posix(), names))]
    rel = _tag_relative([p for _, p in safe], _image_suffixes())
    for (info, path), (tag, _) in zip(safe, rel):
        entry_label = f"{label}!{path.as_posix()}"
        twin = by_name.get(_sidecar_name(path.as_posix()))
        if _is_zip_name(path.name):
            out.append(_Candidate(entry_label, None, _no_read, None, "a zip inside a zip is not opened"))
        elif info.flag_bits & 0x1:
            out.append(_Candidate(entry_label, None, _no_read, None, "encrypted zip entry"))
        else:
            sidecar = None
            if twin is not None and twin.file_size <= generator_metadata.MAX_RAW:
                sidecar = _zip_sidecar(_zip_reader(archive, twin))
            out.append(_Candidate(entry_label, tag, _zip_reader(archive, info), info.file_size, sidecar=sidecar))
    return out


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        try:
            with archive.open(info) as fh:
                return fh.read(n)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
            raise Rejected(f"cannot read the zip entry ({exc})") from None
    return read


def _zip_sidecar(read: Callable[[int], bytes]) -> Callable[[], Optional[bytes]]:
    def sidecar() -> Optional[bytes]:
        try:
            return read(generator_metadata.MAX_RAW + 1)
        except Rejected:
            return None
    return sidecar


def _image_suffixes() -> set[str]:
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _tag_relative(paths: list[PurePosixPath],
                  image_suffixes: set[str]) -> Iterator[tuple[Optional[str], PurePosixPath]]:
    """For each relative path, (the tag-named subfolder it lies in, or None; the path under it).

    A lone wrapping folder — the only thing at its level, holding subfolders and no images of its own
    (``clothes/jeans/…``, an export's ``train/jeans/…``) — is looked through, repeatedly.
    """
    depth = 0
    while True:
        tops = {p.parts[depth] for p in paths if len(p.parts) > depth + 1}
        loose = [p for p in paths if len(p.parts) == depth + 1]
        own_images = [p for p in paths if len(p.parts) == depth + 2 and p.suffix.lower() in image_suffixes]
        has_subfolders = any(len(p.parts) > depth + 2 for p in paths)
        if len(tops) != 1 or loose or own_images or not has_subfolders:
            break
        depth += 1
    for p in paths:
        if len(p.parts) > depth + 1:
            yield p.parts[depth], PurePosixPath(*p.parts[depth + 1:])
        else:
            yield None, p
