"""A generic Ray actor pool: N actors that run any importable function by its ``"module:function"`` name.

``--workers N`` runs the heavy part of a job on N actors: each sets its device and torch threads once and
calls ``function(device, *args)`` (the adapters live beside their domain: :mod:`core.generate.remote`,
:mod:`core.models.remote`). The job's process stays the single writer of the store: it decides what is
missing, hands work out, and commits each result as it arrives, so idempotency and resume are those of a
local run. An actor that dies is restarted by Ray and its unfinished tasks are retried; work whose actor is
gone for good is handed to another one. Functions keep what they load (pipelines, encoders) in their own
module caches, so a warm actor keeps its models between calls.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional

from core.errors import UserError
from core.run.cluster import Sizing, WorkersFailed, check_workers, session, size_workers

IN_FLIGHT_PER_WORKER = 2
ACTOR_RESTARTS = 4
TASK_RETRIES = 4
REASSIGN_LIMIT = 8


def resolve(target: str) -> Callable:
    """The function named ``"module:function"``."""
    module_name, _, func = target.partition(":")
    return getattr(importlib.import_module(module_name), func)


class _Worker:
    """An actor body: sets its device and threads once; runs the functions it is handed."""

    def __init__(self, device: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.device = device
        self.threads = threads

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def call(self, target: str, *args) -> Any:
        """``target(device, *args)`` for a ``"module:function"`` target."""
        return resolve(target)(self.device, *args)


_actor_class = None


def _remote_class():
    global _actor_class
    if _actor_class is None:
        import ray

        _actor_class = ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=TASK_RETRIES)(_Worker)
    return _actor_class


@dataclass
class Pool:
    """N live actors of one Ray session, and the results handed back as they finish."""

    sizing: Sizing
    actors: list = field(default_factory=list)
    started: bool = False
    address: str = ""

    def pids(self) -> list[int]:
        """The process ids of the actors (for tests and the status line)."""
        import ray

        return ray.get([a.pid.remote() for a in self.actors], timeout=60)

    def put(self, value: Any) -> Any:
        """``value`` in the cluster's object store once, to hand to many calls by reference."""
        import ray

        return ray.put(value)

    def stop(self) -> None:
        import ray

        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.actors = []

    def map(self, target: str, items: Iterable[tuple[Any, tuple]], *, tick: Callable[[], None] | None = None,
            ) -> Iterator[tuple[Any, Any]]:
        """Run ``target(device, *args)`` on an actor for each ``(key, args)``, at most :data:`IN_FLIGHT_PER_WORKER` per actor,
        and yield ``(key, result)`` in the order they finish. ``tick`` is called while waiting (it may
        raise to cancel). Work whose actor died for good is retried on another actor."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        queue = list(items)
        queue.reverse()
        pending: dict = {}
        dead: set[int] = set()
        next_actor = 0

        def submit(key, args, tried: int) -> None:
            nonlocal next_actor
            live = [n for n in range(len(self.actors)) if n not in dead]
            if not live:
                raise WorkersFailed(f"all {len(self.actors)} Ray workers died and could not be restarted")
            load = {n: 0 for n in live}
            for _, (_, _, n, _) in pending.items():
                if n in load:
                    load[n] += 1
            n = min(live, key=lambda k: (load[k], (k - next_actor) % len(self.actors)))
            next_actor = (n + 1) % len(self.actors)
            ref = self.actors[n].call.remote(target, *args)
            pending[ref] = (key, args, n, tried)

        def fill() -> None:
            while queue:
                live = [n for n in range(len(self.actors)) if n not in dead]
                if len(pending) >= IN_FLIGHT_PER_WORKER * max(1, len(live)):
                    return
                key, args = queue.pop()
                submit(key, args, 0)

        fill()
        while pending:
            if tick:
                tick()
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            for ref in done:
                key, args, n, tried = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except (ActorDiedError, ActorUnavailableError, RayActorError):
                    dead.add(n)
                    if tried >= REASSIGN_LIMIT:
                        raise WorkersFailed(f"work item {key!r} failed on {tried + 1} Ray workers") from None
                    submit(key, args, tried + 1)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause()
                    if isinstance(cause, UserError):
                        raise cause from None
                    raise
                yield key, result
            fill()


_current = threading.local()


def current_pool() -> Optional[Pool]:
    """The pool this thread is using (inside :func:`workers`), else None."""
    return getattr(_current, "pool", None)


@contextlib.contextmanager
def workers(n: int) -> Iterator[Pool]:
    """N actors on the cluster for the length of the block (in this thread).

    On a Ray this module started (or joined) the actors end with the block. On a Ray that was already
    running in this process they are kept for the next block of the same size (their loaded models
    with them), unless the block ended in an error or a cancellation, which stops them.
    """
    n = check_workers(n)
    if not n:
        raise UserError("workers() needs at least one worker")
    with session() as info:
        sizing = size_workers(n, info["resources"])
        key = (str(info["address"]), sizing)
        pool = None if info["started"] else _warm.pop(key, None)
        if pool is None:
            stop_warm_pools()  # kept actors of another size hold resources the new ones need
            cls = _remote_class().options(num_cpus=sizing.num_cpus, num_gpus=sizing.num_gpus)
            pool = Pool(sizing, [cls.remote(sizing.device, sizing.threads) for _ in range(n)], info["started"],
                        str(info["address"]))
        previous = current_pool()
        _current.pool = pool
        keep = False
        try:
            yield pool
            keep = not info["started"]
        finally:
            _current.pool = previous
            if keep:
                _warm[key] = pool
            else:
                pool.stop()


_warm: dict[tuple, Pool] = {}


def stop_warm_pools() -> None:
    """Stop the actors kept between jobs on a Ray that this process did not start."""
    while _warm:
        _warm.popitem()[1].stop()
