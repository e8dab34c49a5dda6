"""A slice written out: a folder or zip of tag-named subfolders, the files named by image id."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

from core.data.slicing import get_slice, slice_members
from core.errors import InvalidInput
from core.store import imaging
from core.store.database import Store


def export_slice(store: Store, ref: int | str, out: str | os.PathLike, progress=None) -> Path:
    """Write a slice as a zip in Hugging Face's ``imagefolder`` layout; returns the zip's path.

    ``train/<tag>/<id>.png`` at the slice's pixel size, and ``train/metadata.jsonl`` with ``file_name``,
    ``label`` (the tag) and provenance columns, so ``datasets.load_dataset("imagefolder", data_dir=…)``
    reads the unpacked folder (``label`` is a string column; ``.class_encode_column("label")`` makes it a
    ``ClassLabel``). ``out`` is a ``.zip`` path or an existing folder (a name is chosen); it goes through
    :func:`core.store.outputs.check_output` (never the store's own files, a device, a link or an empty path).
    The zip is written to a temporary name and renamed: no half-written export is ever left behind.
    ``progress(done, total, message)`` is called once per image.
    """
    from core.store.outputs import check_output, refuse_store_path, write_output

    s = get_slice(store, ref)
    if out is None or not str(out).strip():
        raise InvalidInput("no output given for the export: give a .zip path or an existing folder")
    target = Path(out).expanduser()
    if target.absolute() != store.root:
        refuse_store_path(target, store.root, what="export", error=InvalidInput)
    if os.path.lexists(target) and (target.is_symlink() or not (target.is_dir() or target.is_file())):
        check_output(target, store.root, what="export", error=InvalidInput)  # a device, FIFO, socket or link
    if target.is_dir() and not target.is_symlink():
        target = target / f"{_safe(s['name'])}-n{s['count_per_tag']}-{s['size'] or 'orig'}px-r{s['repeat']}-{s['hash'][:12]}.zip"
    elif target.suffix.lower() != ".zip":
        target = target.with_name(target.name + ".zip")
    target = check_output(target, store.root, what="export", error=InvalidInput)
    return write_output(target, lambda fh: write_export(store, s, fh, progress), what="export",
                        error=InvalidInput)


def export_bytes(store: Store, ref: int | str, progress=None) -> bytes:
    """The export zip of :func:`export_slice`, in memory (for a download button)."""
    buf = io.BytesIO()
    write_export(store, get_slice(store, ref), buf, progress)
    return buf.getvalue()


def write_export(store: Store, slice_: dict, fh, progress=None) -> None:
    spec = slice_["spec"]
    rows = []
    members = slice_members(store, slice_["id"])
    with zipfile.ZipFile(fh, "w") as archive:
        for n, image in enumerate(members):
            if progress:
                progress(n, len(members), f"{image['tag']}/{image['id'][:12]}")
            file_name = f"{image['tag']}/{image['id']}.png"
            data = imaging.resized_png(store, image["id"], spec["size"], spec.get("fit", "crop"),
                                       spec.get("resample", "lanczos"))
            archive.writestr(_entry(f"train/{file_name}"), data, compress_type=zipfile.ZIP_STORED)
            p = image["provenance"]
            rows.append({
                "file_name": file_name, "label": image["tag"], "image_id": image["id"],
                "source": image["source"], "original_width": image["width"], "original_height": image["height"],
                "model_id": p.get("model_id"), "model_revision": p.get("model_revision"),
                "prompt": p.get("prompt"), "negative_prompt": p.get("negative"), "seed": p.get("seed"),
                "steps": p.get("steps"), "guidance": p.get("guidance"), "scheduler": p.get("scheduler"),
                "original_name": p.get("original_name"), "slice_id": slice_["id"], "slice_hash": slice_["hash"],
                "slice_name": slice_["name"], "count_per_tag": slice_["count_per_tag"],
                "size": spec["size"], "real_fraction": slice_["real_fraction"], "repeat": slice_["repeat"],
            })
        meta = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
        archive.writestr(_entry("train/metadata.jsonl"), meta, compress_type=zipfile.ZIP_DEFLATED)
    if progress:
        progress(len(members), len(members), "done")


def _entry(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed date and ordinary permissions: the same slice exports to the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    return info


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "slice"
