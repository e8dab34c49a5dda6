"""Job handlers used by the job-runner tests: real work (counting rows into the store), no mocks."""

import time

from core.errors import InvalidInput


def count_up(ctx):
    """Adds one row per step to a table; idempotent per (job, step) like generation is."""
    with ctx.store.tx() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS steps(job INTEGER, i INTEGER, PRIMARY KEY (job, i))")
    n = int(ctx.params["n"])
    for i in range(n):
        with ctx.store.tx() as conn:
            conn.execute("INSERT OR IGNORE INTO steps VALUES (?, ?)", (ctx.job_id, i))
        ctx.progress(i + 1, n, f"step {i + 1}")
        time.sleep(float(ctx.params.get("delay", 0)))
    return {"steps": n}


def refuse(ctx):
    raise InvalidInput("that will not do")


def crash(ctx):
    raise RuntimeError("boom")


def busy_silent(ctx):
    """Pure-Python work that never reports progress (as a long model fit): cancel must still stop it."""
    deadline = time.monotonic() + float(ctx.params.get("seconds", 60))
    n = 0
    while time.monotonic() < deadline:
        n = (n * 31 + 7) % 1_000_003
    return {"n": n}


def swallows_errors(ctx):
    """A loop that catches every Exception (as careless handler code might): cancel must still win."""
    deadline = time.monotonic() + float(ctx.params.get("seconds", 60))
    while time.monotonic() < deadline:
        try:
            sum(range(1000))
        except Exception:  # noqa: BLE001 - on purpose
            pass
    return {}
