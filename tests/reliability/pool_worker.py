"""``python -m tests.reliability.pool_worker HOME SECONDS``: the demo worker exactly as ``python -m core worker``
builds it (:func:`core.run.worker.build`), under a 1 024 open-file limit, with the test job kinds registered."""

from __future__ import annotations

import os
import resource
import sys
import time

from core.run import worker as worker_process
from tests.reliability import workspace_jobs


def main(home: str, seconds: float) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    os.environ["SYNTHLAB_MODE"] = "demo"
    workspace_jobs.register()
    worker = worker_process.build(home, poll_seconds=0.2)
    worker.start()
    print("ready", flush=True)
    time.sleep(seconds)
    worker.stop()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
