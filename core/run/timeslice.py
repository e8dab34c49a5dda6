"""Fair share in time: a long job yields the demo's one worker to other workspaces' queued jobs.

Turns alone are not fair: one visitor's 40-image generation held the only worker for minutes while another
visitor's one-image job stayed queued. So, in a demo, a job of a *resumable* kind (:data:`YIELDING`: its
handler makes only what is missing when run again, as generation does) that has run longer than a slice
(``SYNTHLAB_DEMO_SLICE_SECONDS``, default 10) yields at its next progress report — between batches, with
every image so far committed — when another workspace has a job queued. The job goes back to *queued*
with its progress kept and the message below; the fair worker serves the next workspace, and the yielded
job resumes at its next turn. Jobs run in the foreground (the CLI) never yield: nothing calls
:func:`slice_for` there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from core import config
from core.errors import JobCancelled, UserError

SLICE_SETTING = "SYNTHLAB_DEMO_SLICE_SECONDS"
DEFAULT_SLICE_SECONDS = 10.0
CHECK_EVERY = 1.0
YIELDING: set[str] = {"generate"}
PAUSED = "paused: another visitor's job runs first (fair share in time); this one resumes at its next turn"


class JobYielded(JobCancelled):
    """Raised inside a job that gives the worker to another workspace; the job is queued again."""


@dataclass
class _Slice:
    deadline: float
    others_waiting: Callable[[], bool]
    next_check: float = 0.0


_local = threading.local()


def slice_seconds() -> float:
    text = (config.setting(SLICE_SETTING) or "").strip()
    if not text:
        return DEFAULT_SLICE_SECONDS
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{SLICE_SETTING} must be a number of seconds, not {text!r}") from None
    if value <= 0:
        raise UserError(f"{SLICE_SETTING} must be more than 0, not {text}")
    return value


def register_yielding(kind: str) -> None:
    """Declare a job kind resumable (its handler makes only what is missing), so it may yield."""
    YIELDING.add(kind)


@contextmanager
def slice_for(others_waiting: Callable[[], bool], seconds: float | None = None) -> Iterator[None]:
    """Run the block (one job) under a time slice: after ``seconds`` it yields when ``others_waiting()``."""
    _local.state = _Slice(time.monotonic() + (slice_seconds() if seconds is None else seconds), others_waiting)
    try:
        yield
    finally:
        _local.state = None


def maybe_yield(kind: str) -> None:
    """Raise :class:`JobYielded` when this job's slice is over and another workspace waits (checked at most
    once a second); otherwise return at once."""
    state = getattr(_local, "state", None)
    if state is None or kind not in YIELDING:
        return
    now = time.monotonic()
    if now < state.deadline or now < state.next_check:
        return
    state.next_check = now + CHECK_EVERY
    if state.others_waiting():
        raise JobYielded(PAUSED)
