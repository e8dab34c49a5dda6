"""Shapes shared by every table: the image sources, the provenance fields an image keeps, timestamps."""

from __future__ import annotations

from datetime import datetime, timezone

SOURCES = ("synthetic", "real", "test")


PROVENANCE_FIELDS = (
    "model_id",
    "model_revision",
    "prompt",
    "negative",
    "seed",
    "steps",
    "guidance",
    "scheduler",
    "series",
    "series_index",
    "job_id",
    "original_name",
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
