"""Job handlers for the workspace tests (registered by name in the test and in the worker it starts)."""

from __future__ import annotations

import time


def run_echo_job(ctx) -> dict:
    """A trivial job: one image's worth of work."""
    ctx.progress(1, 1, "echo", force=True)
    return {"echo": ctx.params.get("n")}


def run_steps_job(ctx) -> dict:
    """A long job made of batches (like generating 40 images): ``steps`` batches of ``seconds`` each."""
    steps = int(ctx.params.get("steps", 40))
    for i in range(steps):
        time.sleep(float(ctx.params.get("seconds", 0.1)))
        ctx.progress(i + 1, steps, f"batch {i + 1}/{steps}", force=True)
    return {"steps": steps}


def register() -> None:
    from core.run.registry import register as register_kind
    from core.run.timeslice import register_yielding

    register_kind("echo", "tests.reliability.workspace_jobs:run_echo_job")
    register_kind("steps", "tests.reliability.workspace_jobs:run_steps_job")
    register_yielding("steps")  # it may restart: its result does not depend on where it stopped
