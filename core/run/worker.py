"""The job worker as its own process: ``python -m core [--home DIR] worker``.

The store stays the queue; this process only claims and runs jobs, so a page's scripts (many visitors'
reruns) and the worker no longer share one interpreter's GIL. One worker per home: it holds an exclusive
``flock`` on ``HOME/worker.lock`` while it lives (the kernel drops it when the process dies, even by
``kill -9``), so the app finds a live worker again after its own restart and starts one only when none
holds the lock. In demo mode it serves every workspace under the home round-robin
(:class:`core.run.job_threads.FairWorker`) and removes idle workspaces; otherwise it runs the home's one store.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from core import config
from core.errors import UserError
from core.run import job_threads, workspaces

LOCK_NAME = "worker.lock"
WORKER_KINDS = ("thread", "process")


def worker_kind() -> str:
    """``SYNTHLAB_WORKER``, else ``process`` for the hosted modes (many visitors: bench/visitors.py measured
    a thread worker losing over half its images/s to 50 polling sessions) and ``thread`` for one local user."""
    default = "process" if workspaces.mode() in ("demo", "team") else "thread"
    kind = (config.setting("SYNTHLAB_WORKER") or default).strip().lower()
    if kind not in WORKER_KINDS:
        raise UserError(f"SYNTHLAB_WORKER must be one of {', '.join(WORKER_KINDS)}, not {kind!r}")
    return kind


class WorkerRunning(UserError):
    """Another worker process already serves this home."""


WORKER_KINDS = ("thread", "process")


def lock_path(home: str | os.PathLike | None = None) -> Path:
    return config.home(home) / LOCK_NAME


class LockNotAFile(UserError):
    """``HOME/worker.lock`` is something other than a regular file (a folder, most likely)."""


def _check_lock_file(path: Path) -> None:
    if path.is_dir() or (path.exists() and not path.is_file()):
        kind = "a folder" if path.is_dir() else "not a regular file"
        fix = f"rmdir {path}" if path.is_dir() else f"rm {path}"
        raise LockNotAFile(f"{path} is {kind}, not the worker's lock file: remove it ({fix}) and start the worker again")


def alive(home: str | os.PathLike | None = None) -> Optional[int]:
    """The pid of the live worker process of this home, or None when none holds the lock."""
    path = lock_path(home)
    if not path.exists():
        return None
    _check_lock_file(path)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


def _hold_lock(home) -> object:
    path = lock_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_lock_file(path)
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        pid = fh.read().strip()
        fh.close()
        raise WorkerRunning(f"a worker (pid {pid or '?'}) already serves {config.home(home)}") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def _secrets_file_source(paths: Optional[list[Path]] = None) -> None:
    """The app's ``st.secrets`` come from ``.streamlit/secrets.toml``; this process has no Streamlit, so it
    reads the same files (project folder, then the user's) for settings not in the environment."""
    import tomllib

    values: dict = {}
    if paths is None:
        paths = [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml"]
    for path in paths:
        try:
            with open(path, "rb") as fh:
                values.update(tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError):
            continue
    if values:
        config.register_secret_source(lambda name: values.get(name) if isinstance(values.get(name), str) else None)


def build(home: str | os.PathLike | None = None, poll_seconds: float = 0.5) -> threading.Thread:
    """The worker thread for a home: fair over workspaces in demo mode, else the home's one store."""
    if workspaces.is_demo():
        watch = workspaces.work_watch(home)
        worker = job_threads.FairWorker(lambda: watch.stores_with_work(worker.last), poll_seconds=poll_seconds,
                                 housekeeping=lambda: workspaces.remove_idle(home=home), waiting=watch.others_queued)
        return worker
    from core.store.database import Store

    return job_threads.Worker(Store(home), poll_seconds=poll_seconds)


def serve(home: str | os.PathLike | None = None, *, poll_seconds: float = 0.5,
          until: Optional[float] = None) -> dict:
    """Run jobs in this process until SIGTERM/SIGINT, ``until`` seconds, or the home's removal. Refuses
    when a worker lives."""
    lock = _hold_lock(home)
    _secrets_file_source()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = build(home, poll_seconds)
    worker.start()
    started = time.monotonic()
    try:
        while not stop.is_set() and worker.is_alive():
            if until is not None and time.monotonic() - started >= until:
                break
            if not lock_path(home).exists():  # the home was deleted under us: nothing left to serve
                break
            stop.wait(0.5)
    finally:
        worker.stop()
        lock.close()
    return {"worker": os.getpid(), "mode": workspaces.mode(), "seconds": round(time.monotonic() - started, 1)}


def ensure_running(home: str | os.PathLike | None = None) -> int:
    """The pid of this home's worker process, starting one (detached, logging to ``logs/worker.log``)
    when none is alive. Two callers racing start two, and the second exits at once on the lock."""
    pid = alive(home)
    if pid is not None:
        return pid
    root = config.home(home)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    log = open(root / "logs" / "worker.log", "a")
    env = {**os.environ, "SYNTHLAB_MODE": workspaces.mode()}  # the mode may come from st.secrets
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(root), "worker"], env=env,
                            cwd=Path(__file__).resolve().parents[2], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if alive(home) is not None:
            break
        time.sleep(0.05)
    return proc.pid
