"""Importing photos: files, folders and ``.zip`` archives, deduplicated by content.

Every candidate file is read into memory (zip entries too: nothing is extracted to disk), checked, decoded,
normalised to RGB (:func:`imaging.to_rgb`) and encoded as the store's PNG in a small thread pool, a batch at
a time. Each batch's new files are written and made durable together (:mod:`core.store.batch_writer`), then its
rows — and any tag it creates — commit in one transaction: a crash part-way leaves every stored row with
its whole file, and a tag exists only once a file of it is stored. A file that cannot be used (any decoder
failure included) is *rejected* with a reason and the import goes on; a store that cannot be written to
stops the import with :class:`~core.errors.StoreWriteFailed` (the CLI's exit 2), keeping earlier batches.
Only regular files are read: a FIFO, device or socket (or a link to one) is rejected, never opened for
a blocking read (:mod:`core.data.ingest_sources` makes the candidates: files, folders, zip entries, uploads).

Tags: with ``tag`` given, every file gets it (an unknown tag is an error). With ``tag=None``, a folder or zip
of tag-named subfolders maps each subfolder to its tag (``jeans/a.jpg`` → ``jeans``); a tag that does not exist
yet is created with an empty prompt and listed under ``created_tags``. A lone wrapping folder
(``clothes/jeans/a.jpg``, or an exported slice's ``train/jeans/…``) is looked through.

Sources: ``real`` and ``test`` photos, or ``synthetic`` images made by another tool, which need the name of
that ``generator``; their provenance keeps it and the parameters found in the file
(:mod:`core.data.generator_metadata`: A1111 ``parameters``, ComfyUI ``prompt``, a same-stem JSON sidecar).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from PIL import Image, UnidentifiedImageError

from core import config
from core.data import generator_metadata
from core.data.ingest_sources import (
    Rejected,
    _Candidate,
    _file_candidate,
    _folder_candidates,
    _has_image_twin,
    _is_sidecar_name,
    _is_zip_name,
    _no_read,
    _regular,
    _sidecar_name,
    _zip_candidates,
)
from core.errors import InvalidInput, UserError
from core.redact import redact, secret_values
from core.run import demo_limits
from core.store.batch_writer import write_files
from core.store.database import Store, png_bytes
from core.store.imaging import to_rgb, upright
from core.store.records import PROVENANCE_FIELDS, now
from core.store.tagnames import validate_tag_name

IMPORT_SOURCES = ("real", "test", "synthetic")
BATCH_SIZE = 64
BATCH_BYTES = 64_000_000
GENERATOR_MAX = 200


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


@dataclass
class _Ready:
    """A candidate decoded and encoded as the store will keep it."""

    image_id: str
    png: bytes
    width: int
    height: int
    extra: dict
    provenance: dict = field(default_factory=dict)


def import_paths(store: Store, paths: Iterable[str | os.PathLike], tag: str | None = None,
                 source: str = "real", *, generator: str | None = None, limits: ImportLimits | None = None,
                 progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Import files, folders and zips. Returns ``{"imported", "duplicates", "rejected": [{"path", "reason"}],
    "images": [ids], "created_tags": [names]}``; ``images`` holds the ids of every accepted file, new or
    duplicate, in import order. ``progress(done, total, label)`` is called as files are settled."""
    candidates: list[_Candidate] = []
    with ExitStack() as opened:
        for raw in paths:
            path = Path(raw).expanduser()
            if path.is_dir():
                candidates.extend(_folder_candidates(path))
            elif _is_zip_name(path.name) and _regular(path):
                candidates.extend(_zip_candidates(str(path), lambda p=path: opened.enter_context(p.open("rb")),
                                                  opened))
            elif path.exists() or path.is_symlink():
                candidates.append(_file_candidate(path, str(path), None))
            else:
                candidates.append(_Candidate(str(path), None, _no_read, None, "no such file or folder"))
        return _import(store, candidates, tag, source, generator, limits, progress)


def import_uploads(store: Store, files: Iterable[tuple[str, bytes]], tag: str | None = None,
                   source: str = "real", *, generator: str | None = None, limits: ImportLimits | None = None,
                   progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Import uploaded ``(name, bytes)`` pairs (``st.file_uploader``); a ``.zip`` is opened in memory.
    Returns the same dict as :func:`import_paths`."""
    with ExitStack() as opened:
        return _import(store, _upload_candidates(files, opened), tag, source, generator, limits, progress)


def check_uploads(store: Store, files: Iterable[tuple[str, bytes]], tag: str | None = None, source: str = "real",
                  *, generator: str | None = None) -> None:
    """What :func:`import_uploads` refuses before it reads anything into the store (the source and generator,
    the tag, a demo workspace's quota), checked alone: a page queues an import job only when this passes."""
    with ExitStack() as opened:
        _checked(store, _upload_candidates(files, opened), tag, source, generator)


def _upload_candidates(files: Iterable[tuple[str, bytes]], opened: ExitStack) -> list[_Candidate]:
    files = [(str(name), data) for name, data in files]
    by_name = {name: data for name, data in files}
    candidates: list[_Candidate] = []
    for name, data in files:
        if _is_zip_name(name):
            candidates.extend(_zip_candidates(name, lambda d=data: io.BytesIO(d), opened))
        elif _is_sidecar_name(name) and _has_image_twin(name, by_name):
            continue
        else:
            twin = _sidecar_name(name)
            candidates.append(_Candidate(name, None, lambda n, d=data: d[:n], len(data),
                                         sidecar=(lambda t=twin: by_name.get(t))))
    return candidates


# -- the import itself -----------------------------------------------------------------------------

def check_source(source: str, generator: str | None) -> Optional[str]:
    """The generator name to record (None for photos), or :class:`InvalidInput`."""
    if source not in IMPORT_SOURCES:
        raise InvalidInput(f"imported images are {', '.join(IMPORT_SOURCES[:-1])} or {IMPORT_SOURCES[-1]}, "
                           f"not {source!r}")
    name = (generator or "").strip()
    if source != "synthetic":
        if name:
            raise InvalidInput("--generator is for synthetic images only (use --source synthetic)")
        return None
    if not name:
        raise InvalidInput("importing synthetic images needs the tool that made them: --generator NAME "
                           "(e.g. comfyui, a1111, dall-e-3)")
    if len(name) > GENERATOR_MAX or any(ord(c) < 32 for c in name):
        raise InvalidInput(f"generator name must be plain text of at most {GENERATOR_MAX} characters")
    return name


def _checked(store: Store, candidates: list[_Candidate], tag: str | None, source: str,
             generator: str | None) -> tuple[str | None, str | None]:
    """``(generator, tag)`` as stored, once the source, the tag and the demo quota allow the import."""
    generator = check_source(source, generator)
    if tag is not None:
        tag = store.get_tag(validate_tag_name(tag))["name"]
    readable = [c for c in candidates if not c.rejected]
    demo_limits.check_incoming(store, len(readable), sum(c.size or 0 for c in readable), source=source)
    return generator, tag


def _import(store: Store, candidates: list[_Candidate], tag: str | None, source: str, generator: str | None,
            limits: ImportLimits | None, progress) -> dict:
    generator, tag = _checked(store, candidates, tag, source, generator)
    limits = limits or ImportLimits.from_config()
    result: dict = {"imported": 0, "duplicates": 0, "rejected": [], "images": [], "created_tags": []}
    total = len(candidates)
    done = 0
    seen: set[str] = set()

    def settle(label: str, reason: Optional[str] = None) -> None:
        nonlocal done
        if reason is not None:
            result["rejected"].append({"path": label, "reason": reason})
        done += 1
        if progress:
            progress(done, total, label)

    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="synthlab-import") as pool:
        batches = _batches(candidates)
        pending = _submit(store, pool, batches[0], tag, source, generator, limits) if batches else []
        for k in range(len(batches)):
            current = pending
            # decode the next batch while this one is written and committed
            pending = _submit(store, pool, batches[k + 1], tag, source, generator, limits) if k + 1 < len(batches) else []
            _store_batch(store, current, source, result, seen, settle, pool)
    return result


def _batches(candidates: list[_Candidate]) -> list[list[_Candidate]]:
    """At most :data:`BATCH_SIZE` files and about :data:`BATCH_BYTES` of input per batch (two batches are
    in memory at once: one decoding, one being written)."""
    out: list[list[_Candidate]] = []
    size = 0
    for cand in candidates:
        if not out or len(out[-1]) >= BATCH_SIZE or (size + (cand.size or 0) > BATCH_BYTES and out[-1]):
            out.append([])
            size = 0
        out[-1].append(cand)
        size += cand.size or 0
    return out


def _submit(store: Store, pool, batch: list[_Candidate], tag, source, generator, limits) -> list[tuple[_Candidate, Any]]:
    out: list[tuple[_Candidate, Any]] = []
    for cand in batch:
        try:
            if cand.rejected:
                raise Rejected(cand.rejected)
            target = tag or store.canonical_tag(_tag_for(cand))
            if cand.size is not None and cand.size > limits.max_bytes:
                raise Rejected(_too_large(cand.size, limits))
            out.append((cand, (target, pool.submit(_prepare, cand, limits, generator))))
        except Rejected as why:
            out.append((cand, str(why)))
    return out


def _prepare(cand: _Candidate, limits: ImportLimits, generator: Optional[str]) -> _Ready | str:
    """Read, decode and encode one candidate (in a worker thread); a string is the reason it is rejected."""
    try:
        image = decode(cand.read(limits.max_bytes + 1), limits)
        data = png_bytes(image)
        extra: dict = {"imported_format": image.info.get("format")}
        provenance: dict = {}
        notes = list(image.info.get("notes") or [])
        if generator is not None:
            sidecar = cand.sidecar() if cand.sidecar else None
            provenance, found = generator_metadata.parameters(image.info.get("text") or {}, sidecar)
            notes += found.pop("metadata_notes", [])
            extra.update(found, generator=generator)
        if notes:
            extra["metadata_notes"] = notes
        return _Ready(hashlib.sha256(data).hexdigest(), data, image.width, image.height, extra, provenance)
    except (Rejected, UserError) as why:
        return str(why)
    except MemoryError:
        return "too large to decode in memory"
    except Exception as exc:  # noqa: BLE001 - one file's failure is its rejection, never an aborted import
        return f"cannot read the image ({type(exc).__name__}: {str(exc)[:200]})"


def _store_batch(store: Store, batch: list[tuple[_Candidate, Any]], source: str, result: dict, seen: set[str],
                 settle, pool) -> None:
    """Settle one batch: dedupe, write the new files durably, then commit their rows (and new tags) at once."""
    ready: list[tuple[_Candidate, str, _Ready]] = []
    for cand, outcome in batch:
        if isinstance(outcome, str):
            settle(cand.label, outcome)
            continue
        target, future = outcome
        got = future.result() if isinstance(future, Future) else future
        if isinstance(got, str):
            settle(cand.label, got)
        else:
            ready.append((cand, target, got))
    ids = sorted({r.image_id for _, _, r in ready})
    stored: dict[str, tuple[str, str]] = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for row in store.query(f"SELECT id, tag, source FROM images WHERE id IN ({','.join('?' * len(chunk))})",
                               tuple(chunk)):
            stored[row["id"]] = (row["tag"], row["source"])
    fresh: dict[str, tuple[_Candidate, str, _Ready]] = {}
    outcomes: list[tuple[_Candidate, str, Optional[str]]] = []  # (candidate, id, reason or None)
    for cand, target, r in ready:
        have = stored.get(r.image_id)
        if have is None and r.image_id in fresh:
            have = (fresh[r.image_id][1], source)
        if have is not None and have != (target, source):
            outcomes.append((cand, r.image_id, f"the same image is already stored as {have[1]} {have[0]!r} "
                                                 "(not relabelled)"))
            continue
        if have is None:
            fresh[r.image_id] = (cand, target, r)
        outcomes.append((cand, r.image_id, None))

    refused_tags: dict[str, str] = {}
    if fresh:
        written = write_files(store, [(i, r.png) for i, (_, _, r) in fresh.items()], pool)
        refused_tags = _commit(store, fresh, source, result)
        for image_id, (_, target, _) in fresh.items():
            if target in refused_tags and image_id in written:
                _unlink_quietly(store.image_file(image_id))
    for cand, image_id, reason in outcomes:
        target = fresh[image_id][1] if image_id in fresh else None
        if reason is None and target in refused_tags:
            reason = refused_tags[target]
        if reason is None:
            result["imported" if image_id in fresh and fresh[image_id][0] is cand else "duplicates"] += 1
            if image_id not in seen:
                seen.add(image_id)
                result["images"].append(image_id)
        settle(cand.label, reason)


def _commit(store: Store, fresh: dict, source: str, result: dict) -> dict[str, str]:
    """One transaction: the tags this batch creates, then its rows. Returns ``{tag: reason}`` for tags
    that could not be created (their files are not stored)."""
    refused: dict[str, str] = {}
    with store.tx() as conn:
        known = {r["name"] for r in store.query("SELECT name FROM tags")}
        created: list[str] = []
        names: dict[str, str] = {}  # target → the stored tag it is (``shoes`` → ``SHOES`` made just before)
        for target in dict.fromkeys(t for _, t, _ in fresh.values()):
            if target in known:
                names[target] = target
                continue
            same = store.canonical_tag(target)
            if same in known or same in created:
                names[target] = same
                continue
            try:
                names[target] = store.add_tag(target)["name"]
                created.append(names[target])
            except InvalidInput as exc:
                refused[target] = f"folder {target!r} cannot be a tag: {exc}"
        stamp = now()
        masking = bool(secret_values())  # a key inside a file name or foreign metadata is stored masked
        for image_id, (cand, target, r) in fresh.items():
            if target in refused:
                continue
            row = {"id": image_id, "tag": names[target], "source": source,
                   "path": str(store.image_file(image_id).relative_to(store.root)), "width": r.width,
                   "height": r.height, "extra": _json(r.extra), "created": stamp,
                   **{k: r.provenance.get(k) for k in PROVENANCE_FIELDS}, "original_name": cand.label[-500:]}
            if masking:
                row = {k: redact(v) if isinstance(v, str) and k not in ("id", "path") else v for k, v in row.items()}
            conn.execute(f"INSERT OR IGNORE INTO images({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})",
                         row)
    result["created_tags"].extend(created)
    return refused


def _json(value: dict) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _tag_for(cand: _Candidate) -> str:
    if cand.folder_tag is None:
        raise Rejected("no tag: choose a tag, or put the file in a tag-named subfolder")
    try:
        return validate_tag_name(cand.folder_tag)
    except InvalidInput as exc:
        raise Rejected(f"folder {cand.folder_tag!r} cannot be a tag: {exc}") from None


def decode(data: bytes, limits: ImportLimits | None = None) -> Image.Image:
    """Bytes → a checked, fully decoded 8-bit RGB image, or :class:`Rejected` with the reason.

    Any decoder failure (a fuzzed AVIF's ``RuntimeError`` included) is a rejection, never an error of the
    import. ``info`` keeps only ``format`` and ``text``, the generator text chunks (:data:`TEXT_CHUNKS`).
    """
    try:
        return _decode(data, limits)
    except (Rejected, UserError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder plugin's own failure: this file, not the import
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise Rejected(f"cannot decode the image ({type(exc).__name__}{': ' + detail if detail else ''})") from None


def _decode(data: bytes, limits: ImportLimits | None) -> Image.Image:
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
        text = {k: v for k, v in image.info.items() if k in generator_metadata.TEXT_CHUNKS and isinstance(v, str)}
    image, note = upright(image)
    try:
        rgb = to_rgb(image)
    except (OSError, ValueError) as exc:
        raise Rejected(f"unsupported image mode {image.mode} ({exc})") from None
    rgb = rgb.copy()
    rgb.info = {"format": fmt, "text": text, "notes": [note] if note else []}
    return rgb


def _too_large(size: int, limits: ImportLimits) -> str:
    return f"larger than the upload limit ({_mb(size)} > {_mb(limits.max_bytes)})"


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"
