"""Rendering on the Ray actor pool: the adapter an actor runs, and the loop that hands chunks out.

The pool (:mod:`core.run.pool`) knows no domain; it runs :func:`render_chunk` by name. A local run
(no ``--workers``) never comes here and never touches Ray.
"""

from __future__ import annotations

import io
import os
from typing import Callable, Iterator

from core.run.pool import workers

RENDER = "core.generate.remote:render_chunk"


def render_chunk(device: str, plan, chunk: list[int], init_pngs: list[bytes]) -> dict:
    """Images ``chunk`` of ``plan`` rendered on ``device``, as PNG bytes with their prompts, device and scheduler."""
    from PIL import Image

    from core.generate import pipelines
    from core.store.database import png_bytes

    loaded = pipelines.get_pipeline(plan.model, plan.task, device, scheduler=plan.spec.scheduler,
                                     taesd=plan.taesd, compile=plan.spec.compile)
    inits = [Image.open(io.BytesIO(data)).convert("RGB") for data in init_pngs]
    rendered = pipelines.render_batch(plan, loaded, chunk, inits)
    return {
        "device": device, "dtype": pipelines.dtype_name(device),
        "scheduler": type(loaded.pipe.scheduler).__name__, "pid": os.getpid(),
        "images": [{"index": i, "png": png_bytes(image), "prompt": text, "negative": neg}
                   for i, image, text, neg in rendered],
    }


def render_on_cluster(plan, chunks: list[list[int]], init_pngs: list[bytes], workers_n: int,
                      tick: Callable[[], None] | None = None) -> Iterator[dict]:
    """Render ``chunks`` (lists of series indices, each one pipeline call) on ``workers_n`` actors;
    yields each chunk's result (``{"images": [{"index", "png", "prompt", "negative"}], "device", …}``) as it
    finishes. The caller writes them."""
    with workers(workers_n) as pool:
        inits_ref = pool.put(init_pngs)
        items = ((tuple(chunk), (plan, chunk, inits_ref)) for chunk in chunks)
        for _, result in pool.map(RENDER, items, tick=tick):
            result["engine"] = "ray"
            result["workers"] = workers_n
            yield result
