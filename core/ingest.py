"""Importing real and test photos: files, folders and ``.zip`` archives, deduplicated by content.

Every candidate file is read into memory (zip entries too: nothing is extracted to disk), checked, decoded,
normalised to RGB (:func:`imaging.to_rgb`) and stored with one atomic ``store.add_image`` — so a failure
part-way leaves each earlier image whole and no later one half-written. A file that cannot be used is
*rejected* with a reason and the import goes on.

Tags: with ``tag`` given, every file gets it (an unknown tag is an error). With ``tag=None``, a folder or zip
of tag-named subfolders maps each subfolder to its tag (``jeans/a.jpg`` → ``jeans``); a tag that does not exist
yet is created with an empty prompt and listed under ``created_tags``. A lone wrapping folder
(``clothes/jeans/a.jpg``, or an exported slice's ``train/jeans/…``) is looked through.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Optional

from PIL import Image, UnidentifiedImageError

from . import config
from .errors import InvalidInput, UserError
from .imaging import to_rgb
from .store import Store, validate_tag_name

IMPORT_SOURCES = ("real", "test")
SKIPPED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class ImportLimits:
    """What an imported file must satisfy. Defaults come from settings (environment or ``st.secrets``)."""

    min_side: int = 32
    max_bytes: int = 50_000_000
    max_pixels: int = Image.MAX_IMAGE_PIXELS or 89_478_485

    @classmethod
    def from_config(cls) -> "ImportLimits":
        def number(name: str, default: int) -> int:
            raw = config.setting(name)
            try:
                return int(raw) if raw else default
            except ValueError:
                raise InvalidInput(f"setting {name} must be a whole number, not {raw!r}") from None

        base = cls()
        return cls(
            min_side=number("SYNTHLAB_MIN_SIDE", base.min_side),
            max_bytes=number("SYNTHLAB_MAX_IMAGE_BYTES", base.max_bytes),
            max_pixels=number("SYNTHLAB_MAX_PIXELS", base.max_pixels),
        )


class Rejected(Exception):
    """One file that cannot be imported; ``str()`` is the reason shown to the user."""


@dataclass
class _Candidate:
    label: str            # what the user sees: a path, "archive.zip!jeans/a.jpg", an upload name
    folder_tag: Optional[str]  # the tag-named subfolder it sat in, if any
    read: Callable[[int], bytes]  # reads at most n bytes (n = limit + 1 to detect oversize)
    size: Optional[int]   # declared size in bytes when known before reading
    rejected: Optional[str] = None


def import_paths(store: Store, paths: Iterable[str | os.PathLike], tag: str | None = None,
                 source: str = "real", *, limits: ImportLimits | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Import files, folders and zips. Returns ``{"imported", "duplicates", "rejected": [{"path", "reason"}],
    "images": [ids], "created_tags": [names]}``; ``images`` holds the ids of every accepted file, new or
    duplicate, in import order."""
    candidates: list[_Candidate] = []
    with ExitStack() as opened:
        for raw in paths:
            path = Path(raw).expanduser()
            if path.is_dir():
                candidates.extend(_folder_candidates(path))
            elif path.is_file() and _is_zip_name(path.name):
                candidates.extend(_zip_candidates(str(path), lambda p=path: opened.enter_context(p.open("rb")),
                                                  opened))
            elif path.is_file():
                candidates.append(_file_candidate(path, str(path), None))
            else:
                candidates.append(_Candidate(str(path), None, _no_read, None, "no such file or folder"))
        return _import(store, candidates, tag, source, limits, progress)


def import_uploads(store: Store, files: Iterable[tuple[str, bytes]], tag: str | None = None,
                   source: str = "real", *, limits: ImportLimits | None = None,
                   progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Import uploaded ``(name, bytes)`` pairs (``st.file_uploader``); a ``.zip`` is opened in memory.
    Returns the same dict as :func:`import_paths`."""
    candidates: list[_Candidate] = []
    with ExitStack() as opened:
        for name, data in files:
            name = str(name)
            if _is_zip_name(name):
                candidates.extend(_zip_candidates(name, lambda d=data: io.BytesIO(d), opened))
            else:
                candidates.append(_Candidate(name, None, lambda n, d=data: d[:n], len(data)))
        return _import(store, candidates, tag, source, limits, progress)


# -- the import itself -----------------------------------------------------------------------------

def _import(store: Store, candidates: list[_Candidate], tag: str | None, source: str,
            limits: ImportLimits | None, progress) -> dict:
    if source not in IMPORT_SOURCES:
        raise InvalidInput(f"imported photos are {' or '.join(IMPORT_SOURCES)}, not {source!r}")
    limits = limits or ImportLimits.from_config()
    if tag is not None:
        tag = store.get_tag(validate_tag_name(tag))["name"]
    result: dict = {"imported": 0, "duplicates": 0, "rejected": [], "images": [], "created_tags": []}
    known = set(store.tag_names())
    seen: set[str] = set()
    for done, cand in enumerate(candidates, 1):
        try:
            if cand.rejected:
                raise Rejected(cand.rejected)
            target = tag or store.canonical_tag(_tag_for(cand))
            if cand.size is not None and cand.size > limits.max_bytes:
                raise Rejected(_too_large(cand.size, limits))
            image = decode(cand.read(limits.max_bytes + 1), limits)
            if target not in known:
                try:
                    store.add_tag(target)
                    result["created_tags"].append(target)
                except InvalidInput:
                    store.get_tag(target)  # another process created it meanwhile
                known.add(target)
            image_id, created = store.add_image(image, tag=target, source=source,
                                                original_name=cand.label[-500:],
                                                extra={"imported_format": image.info.get("format")})
            if not created:
                existing = store.get_image(image_id)
                if (existing["tag"], existing["source"]) != (target, source):
                    raise Rejected(f"the same image is already stored as {existing['source']} "
                                   f"{existing['tag']!r} (not relabelled)")
            result["imported" if created else "duplicates"] += 1
            if image_id not in seen:
                seen.add(image_id)
                result["images"].append(image_id)
        except Rejected as why:
            result["rejected"].append({"path": cand.label, "reason": str(why)})
        except UserError as why:
            result["rejected"].append({"path": cand.label, "reason": str(why)})
        if progress:
            progress(done, len(candidates), cand.label)
    return result


def _tag_for(cand: _Candidate) -> str:
    if cand.folder_tag is None:
        raise Rejected("no tag: choose a tag, or put the file in a tag-named subfolder")
    try:
        return validate_tag_name(cand.folder_tag)
    except InvalidInput as exc:
        raise Rejected(f"folder {cand.folder_tag!r} cannot be a tag: {exc}") from None


def decode(data: bytes, limits: ImportLimits | None = None) -> Image.Image:
    """Bytes → a checked, fully decoded 8-bit RGB image (no metadata), or :class:`Rejected` with the reason."""
    limits = limits or ImportLimits.from_config()
    if len(data) > limits.max_bytes:
        raise Rejected(_too_large(len(data), limits))
    if not data:
        raise Rejected("not an image (empty file)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise Rejected(f"decompression bomb: {exc}") from None
        except UnidentifiedImageError:
            raise Rejected("not an image (unknown or unsupported file format)") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise Rejected(f"truncated or corrupt image ({exc or type(exc).__name__})") from None
        width, height = image.size
        if width * height > limits.max_pixels:
            raise Rejected(f"decompression bomb: {width}×{height} = {width * height:,} pixels is over the "
                           f"limit of {limits.max_pixels:,}")
        if min(width, height) < limits.min_side:
            raise Rejected(f"too small: {width}×{height}, the shorter side must be at least {limits.min_side} px")
        fmt = image.format
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            if "truncated" in str(exc) or isinstance(exc, EOFError):
                raise Rejected(f"truncated image ({exc or 'the file ends early'})") from None
            raise Rejected(f"truncated or corrupt image ({exc})") from None
    try:
        rgb = to_rgb(image)
    except (OSError, ValueError) as exc:
        raise Rejected(f"unsupported image mode {image.mode} ({exc})") from None
    rgb = rgb.copy()
    rgb.info = {"format": fmt}
    return rgb


def _too_large(size: int, limits: ImportLimits) -> str:
    return f"larger than the upload limit ({_mb(size)} > {_mb(limits.max_bytes)})"


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


# -- candidates: where the bytes come from -------------------------------------------------------

def _no_read(n: int) -> bytes:
    return b""


def _is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def _skipped(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p in SKIPPED_NAMES for p in parts)


def _file_candidate(path: Path, label: str, folder_tag: Optional[str]) -> _Candidate:
    def read(n: int) -> bytes:
        try:
            with path.open("rb") as fh:
                return fh.read(n)
        except OSError as exc:
            raise Rejected(f"cannot read the file: {exc.strerror or exc}") from None

    try:
        size = path.stat().st_size
    except OSError:
        size = None
    return _Candidate(label, folder_tag, read, size)


def _folder_candidates(root: Path) -> list[_Candidate]:
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped([d]))
        for name in sorted(names):
            if not _skipped([name]):
                files.append(Path(folder, name).relative_to(root))
    rel = _tag_relative([PurePosixPath(p.as_posix()) for p in files], _image_suffixes())
    out = []
    for path, (tag, _) in zip(files, rel):
        full = root / path
        if _is_zip_name(full.name):
            out.append(_Candidate(str(full), None, _no_read, None,
                                  "a zip inside a folder is not opened: import it on its own"))
        else:
            out.append(_file_candidate(full, str(full), tag))
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
    rel = _tag_relative([p for _, p in safe], _image_suffixes())
    for (info, path), (tag, _) in zip(safe, rel):
        entry_label = f"{label}!{path.as_posix()}"
        if _is_zip_name(path.name):
            out.append(_Candidate(entry_label, None, _no_read, None, "a zip inside a zip is not opened"))
        elif info.flag_bits & 0x1:
            out.append(_Candidate(entry_label, None, _no_read, None, "encrypted zip entry"))
        else:
            out.append(_Candidate(entry_label, tag, _zip_reader(archive, info), info.file_size))
    return out


def _zip_reader(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        try:
            with archive.open(info) as fh:
                return fh.read(n)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
            raise Rejected(f"cannot read the zip entry ({exc})") from None
    return read


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
