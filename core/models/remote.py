"""Embedding on the Ray actor pool: the adapter an actor runs, and the embedding cache's hook.

The pool (:mod:`core.run.pool`) knows no domain; it runs :func:`embed_on_actor` by name. Outside
:func:`embedding_workers` the vectors are computed here, one batch after another, without Ray.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

from core.run.cluster import check_workers
from core.run.pool import Pool, current_pool, workers

EMBED = "core.models.remote:embed_on_actor"


def embed_on_actor(device: str, ref, images: list, tiles: bool = False) -> Any:
    """Vectors of ``images`` with encoder ``ref`` on ``device`` (each image as the mean of its tiles with ``tiles``)."""
    from core.models import encoders

    return (encoders.embed_tiled if tiles else encoders.embed)(ref, images, device)


def embed_batches(ref, batches: list[list[str]], load: Callable[[list[str]], list], *, tiles: bool = False,
                  ) -> Iterator[tuple[list[str], Any]]:
    """Embeddings of ``batches`` of image ids, ``(batch, vectors)`` as each finishes.

    The hook of the embedding cache: inside :func:`embedding_workers` the vectors are computed on the
    pool's actors (pixels loaded here, in the writer's process); otherwise here, one batch after another.
    ``tiles``: each image as the mean of its encoder-sized tiles (:func:`core.models.encoders.embed_tiled`).
    """
    pool = current_pool()
    if pool is None:
        from core.models import encoders

        compute = encoders.embed_tiled if tiles else encoders.embed
        for batch in batches:
            yield batch, compute(ref, load(batch))
        return
    items = ((tuple(batch), (ref, load(batch), tiles)) for batch in batches)
    for key, vectors in pool.map(EMBED, items):
        yield list(key), vectors


@contextlib.contextmanager
def embedding_workers(n: Optional[int]) -> Iterator[Optional[Pool]]:
    """For ``train/diagnose --workers N``: embeddings computed inside the block go to N actors (none: here)."""
    if not check_workers(n):
        yield None
        return
    with workers(int(n)) as pool:
        yield pool
