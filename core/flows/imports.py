"""Photos added from the app (the Data and Slice pages): import the uploads, then apply the rule for a changed
test set (:func:`core.analysis.autoeval.after_import`), and say what happened in one line.

A page's import is a job (kind ``import``): the uploads are kept under the store's ``uploads/`` folder until the
job has imported them, so leaving the page does not stop it, and a killed process resumes it (photos already
stored are recognised by their content hash, never stored twice)."""

from __future__ import annotations

import secrets
import shutil
from typing import Callable, Iterable, Optional

from core.analysis import autoeval
from core.data.ingest import check_uploads, import_uploads
from core.errors import UserError
from core.run import jobs
from core.store.database import Store

FROM_FOLDERS = "(from the zip's tag-named folders)"
IMPORT_KIND = "import"


def import_photos(store: Store, files: Iterable[tuple[str, bytes]], tag: Optional[str], role: str, *,
                  generator: Optional[str] = None,
                  progress: Optional[Callable[[int, int, str], None]] = None) -> dict:
    """Import uploaded ``(name, bytes)`` pairs into ``tag`` (``None`` or :data:`FROM_FOLDERS`: the zip's
    tag-named folders) under ``role``; test photos queue the finished runs to be scored again. Returns
    :func:`core.data.ingest.import_uploads`'s dict with ``role`` added."""
    tag = None if tag in (None, FROM_FOLDERS) else tag
    result = import_uploads(store, files, tag, role, generator=generator, progress=progress)
    autoeval.after_import(store, role, result["imported"])
    return {**result, "role": role}


def summary(result: dict, *, with_role: bool = False) -> str:
    """``Imported N [role photo(s)] · duplicates D · rejected R[ · created tags: …]``."""
    created = f" · created tags: {', '.join(result['created_tags'])}" if result["created_tags"] else ""
    what = f" {result['role']} photo(s)" if with_role else ""
    return (f"Imported {result['imported']}{what} · duplicates {result['duplicates']} · "
            f"rejected {len(result['rejected'])}{created}")


def submit_import(store: Store, files: Iterable[tuple[str, bytes]], tag: Optional[str], role: str, *,
                  generator: Optional[str] = None) -> int:
    """Queue the import of uploaded ``(name, bytes)`` pairs as a job. What can be refused at once (the role and
    generator, the tag, a demo workspace's quota) raises here, before anything is written or queued."""
    files = [(str(name), data) for name, data in files]
    tag = None if tag in (None, FROM_FOLDERS) else tag
    check_uploads(store, files, tag, role, generator=generator)
    token = secrets.token_hex(8)
    folder = store.root / "uploads" / token
    folder.mkdir(parents=True)
    for n, (_, data) in enumerate(files):
        (folder / str(n)).write_bytes(data)
    return jobs.submit(store, IMPORT_KIND, {"uploads": token, "names": [name for name, _ in files], "tag": tag,
                                            "role": role, "generator": generator})


def run_import_job(ctx) -> dict:
    """Job handler (``registry.HANDLERS["import"]``): :func:`import_photos` of the kept uploads, its bar moving per
    file; the uploads are removed once imported (a cancelled or failed import keeps them for a retry)."""
    p = ctx.params
    folder = ctx.store.root / "uploads" / p["uploads"]
    if not folder.is_dir():
        raise UserError("the uploaded files of this import are gone (it finished before, or they were removed): "
                        "upload them again")
    files = [(name, (folder / str(n)).read_bytes()) for n, name in enumerate(p["names"])]
    result = import_photos(ctx.store, files, p["tag"], p["role"], generator=p.get("generator"), progress=ctx.progress)
    shutil.rmtree(folder, ignore_errors=True)
    return result


def followed(store: Store, job_id: Optional[int]) -> tuple[Optional[int], Optional[dict], Optional[str]]:
    """A page's import job as ``(its id while queued or running, its result once done, its error once failed
    or cancelled)``."""
    if not job_id:
        return None, None, None
    try:
        job = jobs.get_job(store, job_id)
    except UserError:  # another store (a demo workspace left for another)
        return None, None, None
    if job["status"] in jobs.ACTIVE:
        return job_id, None, None
    if job["status"] == "done":
        return None, job["result"], None
    return None, None, f"The import (job {job_id}) {job['status']}: {job['error']}"
