"""Photos added from the app (the Data and Slice pages): import the uploads, then apply the rule for a changed
test set (:func:`core.analysis.autoeval.after_import`), and say what happened in one line."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from core.analysis import autoeval
from core.data.ingest import import_uploads
from core.store.database import Store

FROM_FOLDERS = "(from the zip's tag-named folders)"


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
