"""What each job kind runs, and what follows it: ``"module:function"`` strings, resolved lazily.

A kind's handler takes a :class:`core.run.jobs.JobContext` and returns the job's JSON result. A
*follow-on* is called with the store by the worker after a job of its kind ends ``done`` (the
foreground CLI runs jobs itself and schedules nothing): a finished training run queues the
evaluation of pending runs, so results appear the moment a run ends. Keeping both tables here lets
the run layer schedule domain work without importing it.
"""

from __future__ import annotations

import importlib
from typing import Callable

from core.errors import UserError

HANDLERS: dict[str, str] = {
    "generate": "core.generate.generation:run_generate_job",
    "train": "core.train.training:run_train_job",
    "diagnose": "core.analysis.diagnostics:run_diagnose_job",
    "evaluate": "core.analysis.autoeval:run_evaluate_job",
    "experiment": "core.flows.experiment_run:run_experiment_job",
    "sample": "core.data.sample_jobs:run_sample_job",
    "export": "core.data.slice_export:run_export_job",
    "import": "core.flows.imports:run_import_job",
}

FOLLOW_ONS: dict[str, list[str]] = {
    "train": ["core.analysis.autoeval:submit_if_needed"],
}

# Kinds a worker claims before any queued job of another kind: short follow-ons whose result someone is
# waiting for (a run's score must not wait behind thirty queued training runs).
FIRST: tuple[str, ...] = ("evaluate",)


def register(kind: str, target: str) -> None:
    """Map a job kind to ``"module:function"`` (resolved when the first job of that kind runs)."""
    HANDLERS[kind] = target


def resolve(target: str) -> Callable:
    """The function a ``"module:function"`` string names."""
    module_name, _, func = target.partition(":")
    return getattr(importlib.import_module(module_name), func)


def handler(kind: str) -> Callable:
    """The handler of a job kind; a :class:`UserError` for a kind nobody registered."""
    try:
        target = HANDLERS[kind]
    except KeyError:
        raise UserError(f"unknown job kind {kind!r}") from None
    return resolve(target)


def follow_ons(kind: str) -> list[Callable]:
    """The functions the worker calls with the store after a job of ``kind`` ends ``done``."""
    return [resolve(target) for target in FOLLOW_ONS.get(kind, [])]
