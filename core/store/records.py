"""Shapes shared by every table: the image sources, the provenance fields an image keeps, timestamps."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional, TypedDict

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


# -- the records core functions return (annotations only: plain dicts at run time, keys as documented) --------

class RunRecord(TypedDict, total=False):
    """A training run (:func:`core.train.training.get_run`)."""

    id: int
    slice: Optional[int]
    slice_name: str
    count_per_tag: int
    size: Optional[int]
    fit: str
    resample: str
    real_fraction: Optional[float]
    repeat: int
    backend: str
    params: dict[str, Any]
    encoder: Optional[str]
    mode: Optional[str]
    status: str
    job_id: Optional[int]
    artifact: Optional[str]
    metrics: dict[str, Any]
    tags: list[str]
    error: Optional[str]
    accuracy: Optional[float]
    accuracy_ci: Optional[list[float]]
    input_px: Optional[int]
    time: Optional[float]
    created: str
    started: Optional[str]
    finished: Optional[str]


class SliceRecord(TypedDict, total=False):
    """A slice (:func:`core.data.slicing.get_slice`): its spec, member image ids and content hash."""

    id: int
    name: str
    count_per_tag: int
    size: Optional[int]
    real_fraction: float
    repeat: int
    hash: str
    images: list[str]
    spec: dict[str, Any]
    composition: dict[str, dict[str, int]]
    created: bool
    filtered: list[dict]
    repeat_overlap: Optional[dict]


class ResultRecord(TypedDict, total=False):
    """A run's evaluation on the test photos (:func:`core.analysis.evaluation.results`; the CLI's ``evaluate``)."""

    run: int
    slice: Optional[int]
    slice_name: str
    arm: str
    arm_label: str
    arm_spec: dict[str, Any]
    backend: str
    encoder: Optional[str]
    mode: Optional[str]
    count_per_tag: int
    size: Optional[int]
    input_px: Optional[int]
    real_fraction: Optional[float]
    repeat: int
    accuracy: float
    accuracy_ci: list[float]
    macro_f1: Optional[float]
    per_tag: dict[str, dict[str, Any]]
    per_image: list[dict[str, Any]]
    confusion: dict[str, Any]
    stale: bool


class DiagnosisRecord(TypedDict, total=False):
    """A diagnosis (:func:`core.analysis.diagnostics.diagnose`; ``job`` and ``finished`` once stored)."""

    encoder: dict[str, Any]
    sizes: list[int]
    embedding_size: int
    duplicate_threshold: int
    duplicates: dict[str, Any]
    tags: dict[str, dict[str, Any]]
    spectrum: dict[str, Any]
    label_issues: list[dict]
    label_issues_note: Optional[str]
    job: int
    finished: str
