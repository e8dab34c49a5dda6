"""Hosting modes and demo workspaces: one store per visitor, quotas, idle cleanup.

``SYNTHLAB_MODE`` (environment or ``st.secrets``) is ``local`` (default: one store, no limits),
``demo`` (a public demo: every visitor works in a workspace of their own, quotas apply) or ``team``
(one shared store behind Streamlit's login). On a Hugging Face Space (``SPACE_ID`` set by the host)
the default is ``demo``, so a fresh Space is safe on its first push.

A workspace is a full store under ``$SYNTHLAB_HOME/workspaces/ID`` where ``ID`` is 128 random bits
(32 hex digits). The id is the only key: whoever has it (the URL ``?workspace=ID``) can open it, and
nobody can list or guess it. Quotas are checked in :func:`check_job`, which :func:`core.run.jobs.submit`
calls for every job when the mode is ``demo`` — the app and the CLI alike. A refused job writes nothing.

Demo limits (environment, whole numbers): ``SYNTHLAB_DEMO_IMAGES_PER_JOB`` (new images one job may
make, default 40), ``SYNTHLAB_DEMO_TOTAL_IMAGES`` (generated images a workspace may hold, 400),
``SYNTHLAB_DEMO_MAX_PIXELS`` (width × height of one image, 512×512), ``SYNTHLAB_DEMO_MAX_STEPS``
(denoising steps, 30), ``SYNTHLAB_DEMO_CONCURRENT_JOBS`` (queued + running jobs, 2),
``SYNTHLAB_DEMO_IDLE_HOURS`` (a workspace unused this long is removed, 24), and
``SYNTHLAB_DEMO_MODELS`` (comma-separated generator models a visitor may use; default the configured
default model). Image-to-image from host paths is refused in a demo.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from core import config
from core.errors import NotFound, UserError
from core.run import workspace_pool

MODES = ("local", "demo", "team")
ID_BYTES = 16
_ID_PATTERN = re.compile(r"[0-9a-f]{32}")
_LAST_USED = ".last-used"


WELCOME = ("Welcome to the Synthlab demo. Start a workspace of your own: its link is the only key to it, so keep "
           "the page's address to come back.")


class NoWorkspaceYet(NotFound):
    """A visit without a workspace id: a workspace is made only when the visitor asks for one."""


class QuotaExceeded(UserError):
    """A demo visitor asked for more than the demo allows."""


class InvalidMode(UserError):
    """``SYNTHLAB_MODE`` names no mode."""


def mode() -> str:
    """The hosting mode: ``SYNTHLAB_MODE``, else ``demo`` on a Hugging Face Space, else ``local``."""
    value = (config.setting("SYNTHLAB_MODE") or ("demo" if os.environ.get("SPACE_ID") else "local")).strip().lower()
    if value not in MODES:
        raise InvalidMode(f"SYNTHLAB_MODE must be one of {', '.join(MODES)}, not {value!r}")
    return value


def is_demo() -> bool:
    return mode() == "demo"


# -- quotas --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quotas:
    """What one demo workspace may ask for."""

    images_per_job: int = 40
    total_images: int = 400
    max_pixels: int = 512 * 512
    max_steps: int = 30
    concurrent_jobs: int = 2
    idle_hours: float = 24.0
    models: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> "Quotas":
        d = cls()
        models = tuple(m.strip() for m in (config.setting("SYNTHLAB_DEMO_MODELS") or "").split(",") if m.strip())
        return cls(
            images_per_job=workspace_pool.count_setting("SYNTHLAB_DEMO_IMAGES_PER_JOB", d.images_per_job),
            total_images=workspace_pool.count_setting("SYNTHLAB_DEMO_TOTAL_IMAGES", d.total_images),
            max_pixels=workspace_pool.count_setting("SYNTHLAB_DEMO_MAX_PIXELS", d.max_pixels),
            max_steps=workspace_pool.count_setting("SYNTHLAB_DEMO_MAX_STEPS", d.max_steps),
            concurrent_jobs=workspace_pool.count_setting("SYNTHLAB_DEMO_CONCURRENT_JOBS", d.concurrent_jobs),
            idle_hours=float(workspace_pool.count_setting("SYNTHLAB_DEMO_IDLE_HOURS", int(d.idle_hours))),
            models=models or (config.BUILTIN_MODEL, config.DEFAULT_MODEL),
        )

    def describe(self) -> str:
        return (f"up to {self.images_per_job} new images per job, {self.total_images} generated images in all, "
                f"{self.max_pixels:,} pixels per image, {self.max_steps} steps, {self.concurrent_jobs} jobs at a time")


def check_job(store, kind: str, params: dict, *, same_job_active: bool = False) -> None:
    """Refuse (:class:`QuotaExceeded`) a demo job over a quota; return quietly when it fits.

    ``same_job_active`` is true when an identical job is already queued or running (submitting it again
    returns that job and adds no work, so the concurrency limit does not apply).
    """
    q = Quotas.from_env()
    if not same_job_active:
        active = store.conn.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()[0]
        if active >= q.concurrent_jobs:
            raise QuotaExceeded(f"demo limit: {q.concurrent_jobs} job(s) at a time per workspace and {active} "
                                "are queued or running; wait for one to finish or cancel it")
    if kind == "generate":
        _check_generation(store, params, q)


def _check_generation(store, params: dict, q: Quotas) -> None:
    spec = params.get("spec") or {}
    have = len(store.series_indices(params.get("series") or ""))
    new = max(int(spec.get("count") or 0) - have, 0)
    if new > q.images_per_job:
        raise QuotaExceeded(f"demo limit: at most {q.images_per_job} new images per job; this job asks for {new} "
                            f"(a series of {spec.get('count')} with {have} made) — ask for fewer")
    made = store.count_images(source="synthetic")
    if made + new > q.total_images:
        raise QuotaExceeded(f"demo limit: at most {q.total_images} generated images per workspace; it holds "
                            f"{made} and this job would add {new}")
    width, height = int(spec.get("width") or 0), int(spec.get("height") or 0)
    if width * height > q.max_pixels:
        raise QuotaExceeded(f"demo limit: at most {q.max_pixels:,} pixels per image; {width}×{height} is "
                            f"{width * height:,} — pick a smaller size")
    steps = int(spec.get("steps") or 0)
    if steps > q.max_steps:
        raise QuotaExceeded(f"demo limit: at most {q.max_steps} steps per image, not {steps}")
    if spec.get("init_images"):
        raise QuotaExceeded("demo limit: image-to-image from files on the server is off in the demo")
    model = spec.get("model")
    if model not in q.models:
        raise QuotaExceeded(f"demo limit: the generator must be one of {', '.join(q.models)}, not {model!r}")


# -- workspaces ------------------------------------------------------------------------------------

def root(home: str | os.PathLike | None = None) -> Path:
    return config.home(home) / "workspaces"


def valid_id(workspace_id: object) -> bool:
    return isinstance(workspace_id, str) and _ID_PATTERN.fullmatch(workspace_id) is not None


def path(workspace_id: str, home: str | os.PathLike | None = None) -> Path:
    if not valid_id(workspace_id):
        raise NotFound("no such workspace: a workspace id is 32 hexadecimal digits (start a new workspace)")
    return root(home) / workspace_id


_pool = workspace_pool.StorePool(capacity=256)


def create(home: str | os.PathLike | None = None) -> str:
    """A new, empty workspace; returns its id (128 random bits). Counted against the server's hourly cap
    (``SYNTHLAB_DEMO_NEW_WORKSPACES_PER_HOUR``): :class:`workspace_pool.CreationLimited` when it is reached."""
    from core.store.database import Store

    workspace_pool.claim_creation(root(home))
    while True:
        workspace_id = secrets.token_hex(ID_BYTES)
        folder = root(home) / workspace_id
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        break
    Store(folder).close()
    touch(workspace_id, home)
    return workspace_id


def exists(workspace_id: str, home: str | os.PathLike | None = None) -> bool:
    return valid_id(workspace_id) and (root(home) / workspace_id / "lab.db").is_file()


def open_store(workspace_id: str, home: str | os.PathLike | None = None):
    """The store of an existing workspace (a bounded pool per process); marks it used. :class:`NotFound`
    otherwise — also for a workspace removed since it was last opened: nothing serves it from memory."""
    store = _pool.get(path(workspace_id, home))
    touch(workspace_id, home)
    return store


def touch(workspace_id: str, home: str | os.PathLike | None = None) -> None:
    """Record that the workspace was used now (idle cleanup counts from here)."""
    marker = path(workspace_id, home) / _LAST_USED
    try:
        marker.touch()
    except OSError:
        pass


def last_used(workspace_id: str, home: str | os.PathLike | None = None) -> float:
    folder = path(workspace_id, home)
    marker = folder / _LAST_USED
    try:
        return marker.stat().st_mtime
    except OSError:
        return folder.stat().st_mtime


def list_ids(home: str | os.PathLike | None = None) -> list[str]:
    """Every workspace id under this home, sorted (for the host: workers and cleanup, never for visitors)."""
    folder = root(home)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if valid_id(p.name) and (p / "lab.db").is_file())


def work_watch(home: str | os.PathLike | None = None) -> workspace_pool.WorkWatch:
    """What the fair worker serves: ``watch.stores_with_work(last_root)``, a bounded window of the workspaces
    with jobs, opened in a pool of the worker's own (it never holds every workspace open), and
    ``watch.others_queued(root)`` for its time slices."""
    return workspace_pool.WorkWatch(root(home), workspace_pool.StorePool(), valid_id)


def remove_idle(max_age_hours: Optional[float] = None, home: str | os.PathLike | None = None,
                now: Optional[float] = None) -> list[str]:
    """Delete the workspaces unused for ``max_age_hours`` (default ``SYNTHLAB_DEMO_IDLE_HOURS``) that have no
    queued or running job (checked under the database's write lock). Returns the removed ids."""
    age = Quotas.from_env().idle_hours if max_age_hours is None else float(max_age_hours)
    limit = (time.time() if now is None else now) - age * 3600
    removed = []
    for workspace_id in list_ids(home):
        try:
            if last_used(workspace_id, home) > limit:
                continue
        except OSError:
            continue
        if workspace_pool.remove_if_idle(path(workspace_id, home), _pool):
            removed.append(workspace_id)
    return removed
