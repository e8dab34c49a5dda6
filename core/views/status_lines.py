"""The sidebar's status lines: jobs running and queued, the Ray engine, the Azure key (masked)."""

from __future__ import annotations

from core import config
from core.run import cluster, jobs, workspaces
from core.store.database import Store


def sidebar_lines(store: Store) -> list[str]:
    running = jobs.list_jobs(store, status="running", limit=5)
    queued = jobs.list_jobs(store, status="queued", limit=50)
    return [f"Jobs: {len(running)} running, {len(queued)} queued",
            cluster.describe_status(cluster.engine_status()),
            f"Azure Custom Vision key: {config.mask(config.setting('VISION_TRAINING_KEY'))}"]


def demo_lines(workspace_id: str) -> list[str]:
    """The demo sidebar: this workspace (and how to come back to it), the limits, and Azure off without keys."""
    lines = [f"Demo workspace **{workspace_id[:8]}…** — keep this page's link to come back to it; nobody else can "
             "open it without the link.", "Demo limits: " + workspaces.Quotas.from_env().describe()]
    if not config.setting("VISION_TRAINING_KEY"):
        lines.append("Azure Custom Vision: off in this demo (the host has set no keys).")
    return lines
