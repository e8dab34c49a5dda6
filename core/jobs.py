"""Persistent job queue and one worker thread per process.

Long work (generation, training, Azure calls) runs as a job: a row in ``jobs`` with its kind, params,
status and progress. Pages submit a job and poll it; a browser rerun or a closed tab does not stop
it. A job whose owning process died is put back in the queue when a process starts
(:func:`requeue_orphans`) — handlers are idempotent (generation derives every seed from the job
seed and the image index), so resuming makes only what is missing.

A handler is ``fn(ctx: JobContext) -> dict``; it reports with ``ctx.progress(done, total, msg)``, which
raises :class:`JobCancelled` once the job is cancelled.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .errors import JobCancelled, NotFound, UserError
from .store import Store, now

HANDLERS: dict[str, str] = {
    "generate": "core.generation:run_generate_job",
    "train": "core.training:run_train_job",
    "diagnose": "core.diagnostics:run_diagnose_job",
    "evaluate": "core.autoeval:run_evaluate_job",
}

ACTIVE = ("queued", "running")
_PROGRESS_INTERVAL = 0.25


def register(kind: str, target: str) -> None:
    """Map a job kind to ``"module:function"`` (resolved when the first job of that kind runs)."""
    HANDLERS[kind] = target


def _handler(kind: str) -> Callable[["JobContext"], dict]:
    try:
        module_name, func = HANDLERS[kind].split(":")
    except KeyError:
        raise UserError(f"unknown job kind {kind!r}") from None
    return getattr(importlib.import_module(module_name), func)


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: Optional[str]) -> bool:
    if not owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _params_key(kind: str, params: dict) -> str:
    return kind + ":" + json.dumps(params, sort_keys=True, default=str)


@dataclass
class JobContext:
    """What a running handler sees: its params and a way to report progress and notice cancellation."""

    store: Store
    job_id: int
    kind: str
    params: dict
    _last_write: float = field(default=0.0, repr=False)

    def progress(self, done: int, total: int, message: str = "", *, force: bool = False) -> None:
        """Record progress (throttled) and raise :class:`JobCancelled` if cancellation was requested."""
        t = time.monotonic()
        if force or t - self._last_write >= _PROGRESS_INTERVAL or done >= total:
            self._last_write = t
            with self.store.tx() as conn:
                conn.execute(
                    "UPDATE jobs SET done = ?, total = ?, message = ?, heartbeat = ? WHERE id = ?",
                    (int(done), int(total), message, time.time(), self.job_id),
                )
        self.check_cancelled()

    def cancelled(self) -> bool:
        row = self.store.conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (self.job_id,)).fetchone()
        return bool(row and row[0])

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")


def _job_view(row: dict) -> dict:
    row["params"] = json.loads(row["params"])
    row["result"] = json.loads(row["result"]) if row.get("result") else None
    row["cancel_requested"] = bool(row["cancel_requested"])
    row.pop("params_key", None)
    return row


def get_job(store: Store, job_id: int) -> dict:
    row = store.query_one("SELECT * FROM jobs WHERE id = ?", (int(job_id),))
    if row is None:
        raise NotFound(f"no job {job_id}")
    return _job_view(row)


def list_jobs(store: Store, kind: str | None = None, status: str | None = None, limit: int = 50) -> list[dict]:
    sql, params = "SELECT * FROM jobs WHERE 1=1", []
    if kind:
        sql += " AND kind = ?"
        params.append(kind)
    if status:
        sql += " AND status = ?"
        params.append(status)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(int(limit))
    return [_job_view(r) for r in store.query(sql, tuple(params))]


def submit(store: Store, kind: str, params: dict, *, claim: bool = False) -> int:
    """Queue a job, or return the unfinished job with identical kind and params.

    With ``claim`` the job is returned already owned by this process (to be run in the foreground
    with :func:`run_job`), so no worker thread picks it up meanwhile. An identical job still owned
    by a live process is left to it and a :class:`UserError` says so.
    """
    _handler(kind)
    key = _params_key(kind, params)
    me = owner_id()
    with store.tx() as conn:
        row = conn.execute(
            "SELECT id, status, owner FROM jobs WHERE params_key = ? AND status IN ('queued', 'running') "
            "ORDER BY id LIMIT 1",
            (key,),
        ).fetchone()
        if row is not None:
            if row["status"] == "running" and row["owner"] != me and _owner_alive(row["owner"]):
                if claim:
                    raise UserError(f"the same {kind} job ({row['id']}) is already running in another process")
                return row["id"]
            if claim:
                conn.execute(
                    "UPDATE jobs SET status = 'running', owner = ?, heartbeat = ?, cancel_requested = 0 WHERE id = ?",
                    (me, time.time(), row["id"]),
                )
            return row["id"]
        cur = conn.execute(
            "INSERT INTO jobs(kind, params, params_key, status, owner, heartbeat, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, json.dumps(params, sort_keys=True, default=str), key, "running" if claim else "queued",
             me if claim else None, time.time() if claim else None, now()),
        )
        return cur.lastrowid


def cancel(store: Store, job_id: int) -> dict:
    """Ask a job to stop. A queued job is cancelled at once; a running one at its next progress report."""
    get_job(store, job_id)
    with store.tx() as conn:
        conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')",
                     (job_id,))
        conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished = ? WHERE id = ? AND status = 'queued'",
            (now(), job_id),
        )
    return get_job(store, job_id)


def retry(store: Store, job_id: int) -> dict:
    """Put a failed or cancelled job back in the queue (idempotent handlers make only what is missing)."""
    with store.tx() as conn:
        conn.execute(
            "UPDATE jobs SET status = 'queued', error = NULL, owner = NULL, cancel_requested = 0, finished = NULL "
            "WHERE id = ? AND status IN ('failed', 'cancelled')",
            (job_id,),
        )
    return get_job(store, job_id)


def requeue_orphans(store: Store) -> list[int]:
    """Put back in the queue the running jobs whose owning process is gone."""
    requeued = []
    with store.tx() as conn:
        for row in conn.execute("SELECT id, owner FROM jobs WHERE status = 'running'").fetchall():
            if not _owner_alive(row["owner"]):
                conn.execute("UPDATE jobs SET status = 'queued', owner = NULL WHERE id = ?", (row["id"],))
                requeued.append(row["id"])
    return requeued


def _claim_next(store: Store) -> Optional[int]:
    me = owner_id()
    with store.tx() as conn:
        row = conn.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        conn.execute(
            "UPDATE jobs SET status = 'running', owner = ?, heartbeat = ? WHERE id = ? AND status = 'queued'",
            (me, time.time(), row["id"]),
        )
        return row["id"]


def run_job(store: Store, job_id: int) -> dict:
    """Run a claimed job in this thread to its end. Returns the job row.

    A :class:`UserError` or any other exception marks the job failed with its message (user errors
    are re-raised so the CLI can exit 2); cancellation marks it cancelled.
    """
    job = get_job(store, job_id)
    with store.tx() as conn:
        conn.execute(
            "UPDATE jobs SET status = 'running', owner = ?, started = COALESCE(started, ?), heartbeat = ? WHERE id = ?",
            (owner_id(), now(), time.time(), job_id),
        )
    ctx = JobContext(store, job_id, job["kind"], job["params"])
    try:
        ctx.check_cancelled()
        result = _handler(job["kind"])(ctx)
    except JobCancelled:
        _finish(store, job_id, "cancelled", error="cancelled by the user")
    except UserError as exc:
        _finish(store, job_id, "failed", error=str(exc))
        raise
    except Exception as exc:  # noqa: BLE001 - a job must end with a message, whatever failed
        _finish(store, job_id, "failed", error=_describe(exc), trace=traceback.format_exc())
        raise
    else:
        _finish(store, job_id, "done", result=result)
    return get_job(store, job_id)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror} ({exc.filename or ''})"
    return f"{type(exc).__name__}: {exc}"


def _finish(store: Store, job_id: int, status: str, *, result: Any = None, error: str | None = None,
            trace: str | None = None) -> None:
    with store.tx() as conn:
        conn.execute(
            "UPDATE jobs SET status = ?, result = ?, error = ?, finished = ?, owner = NULL WHERE id = ?",
            (status, json.dumps(result, default=str) if result is not None else None, error, now(), job_id),
        )
    if trace:
        log = store.root / "logs"
        try:
            log.mkdir(exist_ok=True)
            with open(log / "jobs.log", "a", encoding="utf-8") as fh:
                fh.write(f"--- job {job_id} failed at {now()}\n{trace}\n")
        except OSError:
            pass


class Worker(threading.Thread):
    """Runs queued jobs one after another in a daemon thread (one per process and store)."""

    def __init__(self, store: Store, poll_seconds: float = 0.5):
        super().__init__(name=f"synthlab-worker-{store.root.name}", daemon=True)
        self.store = store
        self.poll_seconds = poll_seconds
        self._stop_event = threading.Event()
        self.current: Optional[int] = None

    def run(self) -> None:
        requeue_orphans(self.store)
        while not self._stop_event.is_set():
            try:
                job_id = _claim_next(self.store)
            except Exception:  # noqa: BLE001 - a locked or vanished store must not kill the worker
                job_id = None
            if job_id is None:
                self._stop_event.wait(self.poll_seconds)
                continue
            self.current = job_id
            try:
                run_job(self.store, job_id)
            except Exception:  # noqa: BLE001 - already recorded on the job row
                pass
            finally:
                self.current = None

    def stop(self, timeout: float | None = 5) -> None:
        self._stop_event.set()
        self.join(timeout)


def wait(store: Store, job_id: int, timeout: float = 60, poll: float = 0.1) -> dict:
    """Block until a job ends (for tests and the CLI)."""
    deadline = time.monotonic() + timeout
    while True:
        job = get_job(store, job_id)
        if job["status"] not in ACTIVE:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(poll)


def batch_totals(store: Store, job_ids: list[int]) -> dict:
    """Where a batch of jobs stands as one number: ``{"jobs", "done", "total", "finished", "failed"}``.
    A job not started yet counts its planned size (``params["spec"]["count"]`` when it has one)."""
    out = {"jobs": 0, "done": 0, "total": 0, "finished": 0, "failed": 0}
    for job_id in job_ids:
        try:
            job = get_job(store, job_id)
        except NotFound:
            continue
        planned = int((job["params"].get("spec") or {}).get("count") or 1)
        total = job["total"] or planned
        out["jobs"] += 1
        out["total"] += total
        out["done"] += total if job["status"] == "done" else min(job["done"], total)
        out["finished"] += job["status"] not in ACTIVE
        out["failed"] += job["status"] == "failed"
    return out
