"""The threads that run queued jobs: :class:`Worker` (one store, oldest job first) and :class:`FairWorker`
(many stores — demo workspaces — round-robin, with time slices). The job rows and their running live in
:mod:`core.run.jobs`; these only claim and call."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Sequence

from core.run import jobs, timeslice
from core.store.database import Store


class Worker(threading.Thread):
    """Runs queued jobs one after another in a daemon thread (one per process and store)."""

    def __init__(self, store: Store, poll_seconds: float = 0.5):
        super().__init__(name=f"synthlab-worker-{store.root.name}", daemon=True)
        self.store = store
        self.poll_seconds = poll_seconds
        self._stop_event = threading.Event()
        self.current: Optional[int] = None

    def run(self) -> None:
        if self.store.read_only:  # nothing can be claimed or recorded in a read-only store
            return
        jobs.requeue_orphans(self.store)
        while not self._stop_event.is_set():
            try:
                job_id = jobs.claim_next(self.store)
            except Exception:  # noqa: BLE001 - a locked or vanished store must not kill the worker
                job_id = None
            if job_id is None:
                self._stop_event.wait(self.poll_seconds)
                continue
            self.current = job_id
            try:
                jobs.run_queued(self.store, job_id)
            except Exception:  # noqa: BLE001 - already recorded on the job row
                pass
            finally:
                self.current = None

    def stop(self, timeout: float | None = 5) -> None:
        self._stop_event.set()
        self.join(timeout)


def claim_fair(stores: Sequence[Store], last: Optional[str] = None) -> Optional[tuple[Store, int]]:
    """Claim the next job round-robin over ``stores`` (one per demo workspace): the first store after
    ``last`` (a store root, in sorted root order) that has a queued job gives its oldest one. So a
    workspace that queued ten jobs first gets one turn, then every other waiting workspace gets one."""
    ordered = sorted(stores, key=lambda s: str(s.root))
    roots = [str(s.root) for s in ordered]
    start = 0
    if last is not None:
        start = next((i for i, r in enumerate(roots) if r > last), 0)
    for store in ordered[start:] + ordered[:start]:
        try:
            job_id = jobs.claim_next(store)
        except Exception:  # noqa: BLE001 - a workspace removed or locked meanwhile: serve the others
            continue
        if job_id is not None:
            return store, job_id
    return None


class FairWorker(threading.Thread):
    """One worker for many stores (demo workspaces), serving their queued jobs round-robin.

    ``stores`` is called before each claim, so new workspaces join and removed ones leave; each store's
    orphaned jobs are requeued the first time it is seen. ``housekeeping`` (e.g. removing idle
    workspaces) is called every ``housekeeping_seconds``.
    """

    def __init__(self, stores: Callable[[], Sequence[Store]], poll_seconds: float = 0.5,
                 housekeeping: Callable[[], Any] | None = None, housekeeping_seconds: float = 300,
                 waiting: Callable[[str], bool] | None = None):
        super().__init__(name="synthlab-fair-worker", daemon=True)
        self.stores = stores
        self.poll_seconds = poll_seconds
        self.housekeeping = housekeeping
        self.housekeeping_seconds = housekeeping_seconds
        self.waiting = waiting  # waiting(root): another workspace has a queued job (time slices, core.run.timeslice)
        self._stop_event = threading.Event()
        self._seen: set[str] = set()
        self.last: Optional[str] = None
        self.current: Optional[tuple[str, int]] = None
        self.served: list[tuple[str, int]] = []

    def step(self) -> bool:
        """Claim and run one job; False when no store has a queued job."""
        stores = list(self.stores())
        for store in stores:
            if str(store.root) not in self._seen:
                self._seen.add(str(store.root))
                try:
                    jobs.requeue_orphans(store)
                except Exception:  # noqa: BLE001
                    pass
        claimed = claim_fair(stores, self.last)
        if claimed is None:
            return False
        store, job_id = claimed
        self.last = str(store.root)
        self.current = (self.last, job_id)
        self.served.append(self.current)
        root, waiting = self.last, self.waiting
        try:
            if waiting is None:
                jobs.run_queued(store, job_id)
            else:
                with timeslice.slice_for(lambda: waiting(root)):
                    jobs.run_queued(store, job_id)
        except Exception:  # noqa: BLE001 - already recorded on the job row
            pass
        finally:
            self.current = None
        return True

    def run(self) -> None:
        next_housekeeping = time.monotonic()
        while not self._stop_event.is_set():
            if self.housekeeping and time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + self.housekeeping_seconds
                try:
                    self.housekeeping()
                except Exception:  # noqa: BLE001
                    pass
            try:
                worked = self.step()
            except Exception:  # noqa: BLE001 - a locked or vanished store must not kill the worker
                worked = False
            if not worked:
                self._stop_event.wait(self.poll_seconds)

    def stop(self, timeout: float | None = 5) -> None:
        self._stop_event.set()
        self.join(timeout)
