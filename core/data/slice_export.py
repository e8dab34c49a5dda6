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

    ``train/<tag>/<id>.png`` at the slice's pixel size, and ``train/metadata.parquet`` with ``file_name``,
    ``label`` and provenance columns, so ``datasets.load_dataset("imagefolder", data_dir=…)`` reads the
    unpacked folder as an image-classification set: ``label`` is a ``ClassLabel`` whose names are the
    slice's tags, and every column has its type (a real-only slice's generation columns are typed and
    empty, never null-typed). The types travel as the ``huggingface`` schema metadata of the parquet file.
    ``out`` is a ``.zip`` path or an existing folder (a name is chosen); it goes through
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


# -- the Slice page's export as a job: it survives leaving the page, its bar moves per image -----------------

EXPORT_KIND = "export"


def submit_export(store: Store, ref: int | str) -> int:
    """Queue the export of a slice into the store's ``exports/`` folder (an unknown slice raises here)."""
    from core.run import jobs

    return jobs.submit(store, EXPORT_KIND, {"slice": get_slice(store, ref)["id"]})


def run_export_job(ctx) -> dict:
    """Job handler (``registry.HANDLERS["export"]``): the zip under ``exports/``, named by the slice and its
    hash (an export of the same slice again replaces it whole)."""
    folder = ctx.store.root / "exports"
    folder.mkdir(exist_ok=True)
    return {"zip": str(export_slice(ctx.store, ctx.params["slice"], folder, progress=ctx.progress)),
            "slice": ctx.params["slice"]}


def finished_export(store: Store, slice_id: int) -> Path | None:
    """The zip of the latest finished export of this slice, while its file is there."""
    from core.run import jobs

    for job in jobs.list_jobs(store, kind=EXPORT_KIND, status="done", limit=50):
        if job["params"]["slice"] == slice_id:
            found = Path(job["result"]["zip"])
            return found if found.is_file() else None
    return None


def export_bytes(store: Store, ref: int | str, progress=None) -> bytes:
    """The export zip of :func:`export_slice`, in memory (for a download button)."""
    buf = io.BytesIO()
    write_export(store, get_slice(store, ref), buf, progress)
    return buf.getvalue()


# Column, arrow type, datasets type: the metadata's one schema, whatever the slice holds.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("file_name", "string"), ("label", "class_label"), ("image_id", "string"), ("source", "string"),
    ("original_width", "int64"), ("original_height", "int64"), ("model_id", "string"),
    ("model_revision", "string"), ("prompt", "string"), ("negative_prompt", "string"), ("seed", "int64"),
    ("steps", "int64"), ("guidance", "float64"), ("scheduler", "string"), ("original_name", "string"),
    ("slice_id", "int64"), ("slice_hash", "string"), ("slice_name", "string"), ("count_per_tag", "int64"),
    ("size", "int64"), ("real_fraction", "float64"), ("repeat", "int64"),
)


def class_names(slice_: dict, members: list[dict]) -> list[str]:
    """The label names of an export: the slice's tags (its spec's, else its members'), sorted as
    ``imagefolder`` sorts folder names."""
    return sorted(set(slice_["spec"].get("tags") or []) | {m["tag"] for m in members})


def metadata_parquet(rows: list[dict], names: list[str]) -> bytes:
    """``rows`` as parquet bytes with the ``datasets`` features in the schema metadata (``label`` as a
    ``ClassLabel`` index)."""
    import pyarrow as pa
    import pyarrow.json as pa_json  # from JSON lines: building arrays from Python lists would import pandas
    import pyarrow.parquet as pq

    arrow = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "class_label": pa.int64()}
    features = {name: ({"names": list(names), "_type": "ClassLabel"} if kind == "class_label"
                       else {"dtype": kind, "_type": "Value"}) for name, kind in COLUMNS}
    schema = pa.schema([(name, arrow[kind]) for name, kind in COLUMNS])
    index = {name: i for i, name in enumerate(names)}
    lines = "".join(json.dumps({**r, "label": index[r["label"]]}, ensure_ascii=False) + "\n" for r in rows)
    table = pa_json.read_json(io.BytesIO(lines.encode()), parse_options=pa_json.ParseOptions(explicit_schema=schema))
    if table.num_rows != len(rows):  # an empty slice: read_json gives no rows and may lose the columns
        table = schema.empty_table()
    table = table.select([name for name, _ in COLUMNS]).replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _typed(value, kind: str):
    if value is None:
        return None
    try:
        return {"int64": int, "float64": float}.get(kind, str)(value)
    except (TypeError, ValueError):
        return None


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
            row = {
                "file_name": file_name, "label": image["tag"], "image_id": image["id"],
                "source": image["source"], "original_width": image["width"], "original_height": image["height"],
                "model_id": p.get("model_id"), "model_revision": p.get("model_revision"),
                "prompt": p.get("prompt"), "negative_prompt": p.get("negative"), "seed": p.get("seed"),
                "steps": p.get("steps"), "guidance": p.get("guidance"), "scheduler": p.get("scheduler"),
                "original_name": p.get("original_name"), "slice_id": slice_["id"], "slice_hash": slice_["hash"],
                "slice_name": slice_["name"], "count_per_tag": slice_["count_per_tag"],
                "size": spec["size"], "real_fraction": slice_["real_fraction"], "repeat": slice_["repeat"],
            }
            rows.append({name: row[name] if name == "label" else _typed(row[name], kind) for name, kind in COLUMNS})
        meta = metadata_parquet(rows, class_names(slice_, members))
        archive.writestr(_entry("train/metadata.parquet"), meta, compress_type=zipfile.ZIP_DEFLATED)
    if progress:
        progress(len(members), len(members), "done")


def _entry(name: str) -> zipfile.ZipInfo:
    """A zip entry with a fixed date and ordinary permissions: the same slice exports to the same bytes."""
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o644 << 16
    return info


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "slice"
