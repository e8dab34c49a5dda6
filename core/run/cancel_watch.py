"""Cancellation that does not wait for a handler's next progress report.

A handler notices a cancel at :meth:`core.run.jobs.JobContext.progress`; one busy in a long loop without
a report (a model fit, a big embedding batch) would run on for minutes. :func:`watch` runs beside a job:
it polls the job's ``cancel_requested`` flag and, once it is set and the job still runs after a short
grace, raises an exception inside the job's thread (CPython's asynchronous exception, delivered at the
next bytecode, so a long C call still finishes first) that surfaces as :class:`core.errors.JobCancelled`. ``with`` blocks and ``finally``
clauses unwind as for any exception, so transactions roll back. ``jobs cancel`` asks, then waits a
bounded time for the job to say it stopped (:func:`core.cli.service_commands.cancel_and_wait`).
"""

from __future__ import annotations

import ctypes
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from core.errors import JobCancelled

POLL_SECONDS = 0.25
GRACE_SECONDS = 1.0
REPEAT_SECONDS = 1.0


class _Stop(BaseException):
    """What is raised inside the job's thread: a ``BaseException``, so handler code that catches every
    ``Exception`` does not swallow it; :func:`watch` turns it into :class:`JobCancelled`."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


@contextmanager
def watch(store, job_id: int, *, poll: float = POLL_SECONDS, grace: float = GRACE_SECONDS) -> Iterator[None]:
    """Run the body (a job's handler) so that a cancel request stops it within ``grace`` + ``poll`` seconds
    (plus the C call in progress). Raises :class:`JobCancelled` when it stopped it."""
    target = threading.get_ident()
    lock = threading.Lock()
    state = {"running": True, "injected": False}
    done = threading.Event()

    def requested() -> bool:
        try:
            row = store.conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        except Exception:  # noqa: BLE001 - a locked store: ask again at the next poll
            return False
        return bool(row and row[0])

    def run() -> None:
        since = None
        last = 0.0
        while not done.wait(poll):
            if since is None:
                if requested():
                    since = time.monotonic()
                continue
            now = time.monotonic()
            if now - since >= grace and now - last >= REPEAT_SECONDS:
                with lock:
                    if state["running"]:
                        state["injected"] = True
                        last = now
                        _raise_in(target, _Stop)
        try:
            store.close()  # this thread's connection, if it polled at all (``store.conn`` would open one)
        except Exception:  # noqa: BLE001
            pass

    thread = threading.Thread(target=run, name=f"synthlab-cancel-watch-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    except _Stop:
        state["injected"] = True
    finally:
        while True:  # a stop delivered while closing down is caught here too
            try:
                with lock:
                    state["running"] = False
                    _raise_in(target, None)  # a pending, undelivered stop is dropped; raised below instead
                break
            except _Stop:
                state["injected"] = True
        done.set()
    if state["injected"]:
        raise JobCancelled(f"job {job_id} was cancelled")
