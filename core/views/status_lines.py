"""The sidebar's status lines: who or which demo workspace, the device, jobs running and queued, the Ray engine,
and Azure (named once: its masked key, or in a demo without keys that it is off). A public demo visitor is never
shown the server's folders (:func:`shown_path`)."""

from __future__ import annotations

import os
from pathlib import Path

from core import config
from core.redact import plain
from core.run import cluster, jobs, workspaces
from core.store.database import Store


def sidebar_lines(store: Store, mode: str = "", *, workspace_id: str = "", user: str = "", device: str = "") -> list[str]:
    """The sidebar's captions in order; the first one is the hosting line (demo workspace, signed-in user) in
    those modes."""
    running = jobs.list_jobs(store, status="running", limit=5)
    queued = jobs.list_jobs(store, status="queued", limit=50)
    head = {"demo": demo_lines(workspace_id), "team": [f"Signed in as {plain(user)}"]}.get(mode, [])
    lines = head + [f"Device: **{device}**" if device else "", f"Jobs: {len(running)} running, {len(queued)} queued",
                    cluster.describe_status(cluster.engine_status())]
    key = config.setting("VISION_TRAINING_KEY")
    if mode != "demo" or key:  # a demo without keys already says Azure is off
        lines.append(f"Azure Custom Vision key: {config.mask(key)}")
    return [line for line in lines if line]


def demo_lines(workspace_id: str) -> list[str]:
    """The demo sidebar: this workspace (and how to come back to it), the limits, and Azure off without keys."""
    lines = [f"Demo workspace **{workspace_id[:8]}…** — keep this page's link to come back to it; nobody else can "
             "open it without the link.", "Demo limits: " + workspaces.Quotas.from_env().describe()]
    if not config.setting("VISION_TRAINING_KEY"):
        lines.append("Azure Custom Vision: off in this demo (the host has set no keys).")
    return lines


def shown_path(path: str | os.PathLike) -> str:
    """A file of the store as the page shows it: its name only in the demo (the server's folders are not a
    public visitor's business), the whole path elsewhere."""
    return Path(path).name if workspaces.is_demo() else str(path)
