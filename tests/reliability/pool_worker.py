"""``python -m tests.reliability.pool_worker HOME SECONDS``: the demo worker over a :class:`StorePool` and a
:class:`WorkWatch`, under a 1 024 open-file limit (what ``python -m core worker`` builds in demo mode)."""

from __future__ import annotations

import resource
import sys
import time

from core.run import jobs, workspace_pool, workspaces
from tests.reliability import workspace_jobs


def main(home: str, seconds: float) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    workspace_jobs.register()
    pool = workspace_pool.StorePool()
    watch = workspace_pool.WorkWatch(workspaces.root(home), pool, workspaces.valid_id)
    worker = jobs.FairWorker(lambda: watch.stores_with_work(worker.last), poll_seconds=0.2)
    worker.start()
    print("ready", flush=True)
    time.sleep(seconds)
    worker.stop()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
