"""Commands that look after the service: jobs, the worker, workspaces, Azure status and cleanup."""

from __future__ import annotations

import argparse

from core.store.database import Store


def cmd_jobs_list(store: Store, a: argparse.Namespace) -> dict:
    from core.run.jobs import list_jobs

    jobs = list_jobs(store, kind=a.kind, status=a.status)
    for j in jobs:
        print(f"job {j['id']} {j['kind']:<9} {j['status']:<9} {j['done']}/{j['total']} {j['error'] or j['message']}")
    return {"jobs": jobs}


def cmd_jobs_cancel(store: Store, a: argparse.Namespace) -> dict:
    job = cancel_and_wait(store, a.id)
    print(job["message"], flush=True)
    return {"job": job}


def cancel_and_wait(store, job_id: int, timeout: float = 5.0, poll: float = 0.1) -> dict:
    """Ask a job to stop and wait up to ``timeout`` seconds for it to end. Returns the job row, with
    ``message`` saying what happened in one line."""
    import time

    from core.run import jobs

    before = jobs.get_job(store, job_id)
    if before["status"] not in jobs.ACTIVE and before["status"] != "interrupted":
        job = jobs.get_job(store, job_id)
        job["message"] = f"job {job_id} is already {job['status']}: nothing to cancel"
        return job
    jobs.cancel(store, job_id)
    deadline = time.monotonic() + timeout
    job = jobs.get_job(store, job_id)
    while job["status"] in jobs.ACTIVE and time.monotonic() < deadline:
        time.sleep(poll)
        job = jobs.get_job(store, job_id)
    if job["status"] == "cancelled":
        job["message"] = f"job {job_id} ({job['kind']}) cancelled"
    elif job["status"] in jobs.ACTIVE:
        job["message"] = (f"job {job_id} ({job['kind']}): cancel requested; still {job['status']} after "
                          f"{timeout:.0f} s (it stops when its current step ends)")
    else:
        job["message"] = f"job {job_id} ({job['kind']}) ended {job['status']} before the cancel took effect"
    return job


def cmd_azure_status(store: Store, a: argparse.Namespace) -> dict:
    from core.train.backends.azure_status import status

    result = status(store, check=not a.offline)
    for name, value in result["settings"].items():
        print(f"{name:<30} {value}")
    if "connection" in result:
        print(("ok: " if result["connection"]["ok"] else "not connected: ") + result["connection"]["message"])
    for p in result["projects"]:
        print(f"project {p['project_id'] or '(being created)'} {p['name']}: {p['images']} images, "
              f"{p['iterations']} iterations")
    return result


def cmd_azure_cleanup(store: Store, a: argparse.Namespace) -> dict:
    from core.train.backends.azure_projects import cleanup

    result = cleanup(store, a.sweep)
    for p in result["deleted"]:
        print(f"deleted project {p['project_id']} {p['name']}")
    for p in result["already_gone"]:
        print(f"already gone: {p['name']}")
    return result


def cmd_worker(store: Store, a: argparse.Namespace) -> dict:
    import os

    from core.run.worker import serve

    print(f"worker {os.getpid()} serving {store.root} (Ctrl-C to stop)", flush=True)
    return serve(store.root, poll_seconds=a.poll, until=a.seconds)


def cmd_workspace_new(store: Store, a: argparse.Namespace) -> dict:
    from core.run import workspaces

    workspace_id = workspaces.create(store.root)
    print(f"workspace {workspace_id}: open the app with ?workspace={workspace_id}")
    return {"workspace": workspace_id, "path": str(workspaces.path(workspace_id, store.root))}


def cmd_workspace_clean(store: Store, a: argparse.Namespace) -> dict:
    from core.run import workspaces

    removed = workspaces.remove_idle(a.max_age_hours, home=store.root)
    print(f"removed {len(removed)} idle workspace(s)")
    return {"removed": removed}
