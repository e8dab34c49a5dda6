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

import contextvars
import getpass
import json
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional

from core import config
from core.errors import JobCancelled, NotFound, UserError
from core.progress import Progress
from core.redact import redact
from core.run import cancel_watch, registry, timeslice
from core.store.database import Store
from core.store.records import now

ACTIVE = ("queued", "running")
_PROGRESS_INTERVAL = 0.25
_here = threading.local()  # ``echo``: job id → the caller's own progress callback while :func:`run_here` runs it


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


_actor: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("synthlab_actor", default=None)


def set_actor(name: Optional[str]) -> None:
    """Who submits jobs from this thread from now on (the app sets the signed-in user per script run)."""
    _actor.set(name or None)


def actor() -> str:
    """Who is starting a job: the app's signed-in user, else ``SYNTHLAB_USER``, else the OS user."""
    name = _actor.get() or config.setting("SYNTHLAB_USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return f"uid {os.getuid()}"


def _check_quota(store: Store, kind: str, params: dict, same_job_active: bool) -> None:
    from core.run import workspaces

    if workspaces.is_demo():
        workspaces.check_job(store, kind, params, same_job_active=same_job_active)


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
                    (int(done), int(total), redact(message), time.time(), self.job_id),
                )
        self.check_cancelled()
        echo = getattr(_here, "echo", {}).get(self.job_id)
        if echo:
            echo(done, total, message)
        timeslice.maybe_yield(self.kind)

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
        params.append("running" if status == "interrupted" else status)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(int(limit))
    found = [_interrupted(_job_view(r)) for r in store.query(sql, tuple(params))]
    return [j for j in found if j["status"] == status] if status in ("running", "interrupted") else found


def _interrupted(job: dict) -> dict:
    """A job the store says is running whose owning process is gone (killed, crashed, power cut) is
    shown as ``interrupted``: nothing runs it until it is resumed (the same CLI command again, or an app
    worker starting, which queues it again). The row itself is not changed here."""
    if job["status"] == "running" and not _owner_alive(job.get("owner")):
        job["status"] = "interrupted"
        job["message"] = ("interrupted: its process is gone; run the same command again (or open the app) "
                          "to resume it")
    return job


def submit(store: Store, kind: str, params: dict, *, claim: bool = False) -> int:
    """Queue a job, or return the unfinished job with identical kind and params.

    With ``claim`` the job is returned already owned by this process (to be run in the foreground
    with :func:`run_job`), so no worker thread picks it up meanwhile. An identical job still owned
    by a live process is left to it and a :class:`UserError` says so.
    """
    registry.handler(kind)
    key = _params_key(kind, params)
    me = owner_id()
    with store.tx() as conn:
        row = conn.execute(
            "SELECT id, status, owner FROM jobs WHERE params_key = ? AND status IN ('queued', 'running') "
            "ORDER BY id LIMIT 1",
            (key,),
        ).fetchone()
        _check_quota(store, kind, params, row is not None)
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
            elif row["status"] == "running" and not _owner_alive(row["owner"]):  # interrupted: queued again
                conn.execute("UPDATE jobs SET status = 'queued', owner = NULL, cancel_requested = 0 WHERE id = ?",
                             (row["id"],))
            return row["id"]
        cur = conn.execute(
            "INSERT INTO jobs(kind, params, params_key, status, owner, heartbeat, created, started_by) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (kind, json.dumps(params, sort_keys=True, default=str), key, "running" if claim else "queued",
             me if claim else None, time.time() if claim else None, now(), actor()),
        )
        return cur.lastrowid


def cancel(store: Store, job_id: int) -> dict:
    """Ask a job to stop. A queued (or interrupted) job is cancelled at once; a running one within about a
    second (:func:`core.run.cancel_watch.watch`), at the latest when its current C call returns."""
    job = _interrupted(get_job(store, job_id))
    with store.tx() as conn:
        conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')",
                     (job_id,))
        conn.execute(  # queued, or running in a process that is gone: nothing will run it, so it ends now
            "UPDATE jobs SET status = 'cancelled', finished = ?, owner = NULL WHERE id = ? "
            "AND (status = 'queued' OR (status = 'running' AND ?))",
            (now(), job_id, job["status"] == "interrupted"),
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
        for row in conn.execute("SELECT id, owner, cancel_requested FROM jobs WHERE status = 'running'").fetchall():
            if not _owner_alive(row["owner"]):
                if row["cancel_requested"]:  # the user asked it to stop: it ends cancelled, not resumed
                    conn.execute("UPDATE jobs SET status = 'cancelled', owner = NULL, finished = ? WHERE id = ?",
                                 (now(), row["id"]))
                    continue
                conn.execute("UPDATE jobs SET status = 'queued', owner = NULL WHERE id = ?", (row["id"],))
                requeued.append(row["id"])
    return requeued


def claim_next(store: Store) -> Optional[int]:
    """Claim the oldest queued job, kinds in :data:`core.run.registry.FIRST` (follow-on scoring) before the rest."""
    me = owner_id()
    with store.tx() as conn:
        first = ", ".join("?" * len(registry.FIRST)) or "NULL"
        row = conn.execute(f"SELECT id FROM jobs WHERE status = 'queued' ORDER BY kind IN ({first}) DESC, id LIMIT 1",
                           registry.FIRST).fetchone()
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
        _record_starter_on_runs(conn, job_id)
    ctx = JobContext(store, job_id, job["kind"], job["params"])
    try:
        ctx.check_cancelled()
        with cancel_watch.watch(store, job_id):
            result = registry.handler(job["kind"])(ctx)
    except timeslice.JobYielded as why:
        with store.tx() as conn:  # back in the queue, progress kept: it resumes at its next turn
            conn.execute("UPDATE jobs SET status = 'queued', owner = NULL, message = ? WHERE id = ?", (str(why), job_id))
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


def run_here(store: Store, job_id: int, progress: Progress = None) -> dict:
    """:func:`run_job` in this thread (the CLI's foreground path: a killed command leaves a job that the app
    or the same command finishes), with ``progress`` (e.g. a terminal line) seeing every update the job's
    handler reports. Returns the job row."""
    if not hasattr(_here, "echo"):
        _here.echo = {}
    if progress:
        _here.echo[job_id] = progress  # this job's own updates only: not those of jobs it runs inside it
    try:
        return run_job(store, job_id)
    finally:
        _here.echo.pop(job_id, None)


def run_queued(store: Store, job_id: int) -> dict:
    """What a worker does with a claimed job: run it, then its kind's follow-ons when it ended ``done``
    (:data:`core.run.registry.FOLLOW_ONS`). A follow-on that fails is logged and does not fail the job."""
    job = run_job(store, job_id)
    if job["status"] == "done":
        for follow in registry.follow_ons(job["kind"]):
            try:
                follow(store)
            except Exception:  # noqa: BLE001 - the job itself succeeded
                _log(store, f"--- follow-on of job {job_id} failed at {now()}\n{traceback.format_exc()}\n")
    return job


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror} ({exc.filename or ''})"
    return f"{type(exc).__name__}: {exc}"


def _record_starter_on_runs(conn, job_id: int) -> None:
    """Runs made by a job record who started the job."""
    conn.execute("UPDATE runs SET started_by = (SELECT started_by FROM jobs WHERE id = ?) "
                 "WHERE job_id = ? AND started_by IS NULL", (job_id, job_id))


def _finish(store: Store, job_id: int, status: str, *, result: Any = None, error: str | None = None,
            trace: str | None = None) -> None:
    with store.tx() as conn:
        conn.execute(
            "UPDATE jobs SET status = ?, result = ?, error = ?, finished = ?, owner = NULL WHERE id = ?",
            (status, redact(json.dumps(result, default=str)) if result is not None else None,
             redact(error) if error is not None else None, now(), job_id),
        )
        _record_starter_on_runs(conn, job_id)
    if trace:
        _log(store, f"--- job {job_id} failed at {now()}\n{trace}\n")


def _log(store: Store, text: str) -> None:
    log = store.root / "logs"
    try:
        log.mkdir(exist_ok=True)
        with open(log / "jobs.log", "a", encoding="utf-8") as fh:
            fh.write(redact(text))
    except OSError:
        pass


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
