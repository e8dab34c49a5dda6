"""Demo quotas on images that enter a workspace any way: uploads, ``import`` of every source, the sample.

Generation has its own quotas (:func:`core.workspaces.check_job`); before this module an import or the
clothing sample could put any number of images into a demo workspace (``sample clothing --per-tag 3000``:
12 040 images in one command). Here every way in is checked *before anything is written*, from the app and
from ``SYNTHLAB_MODE=demo python -m core`` alike:

* ``SYNTHLAB_DEMO_MAX_IMAGES`` (default 1000): images of any source a workspace may hold;
* ``SYNTHLAB_DEMO_MAX_BYTES`` (default 200 000 000): bytes of image files a workspace may hold, counting
  what an import brings at its files' sizes;
* ``SYNTHLAB_DEMO_TOTAL_IMAGES`` (the generation quota, 400): synthetic images, generated or imported.

A refusal is a :class:`core.workspaces.QuotaExceeded` with one line that names the limit, what the
workspace holds and what the command asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.run import workspace_pool, workspaces
from core.run.workspaces import QuotaExceeded

DEFAULT_MAX_IMAGES = 1000
DEFAULT_MAX_BYTES = 200_000_000
SAMPLE_TAGS = 4


@dataclass(frozen=True)
class ImageQuota:
    max_images: int
    max_bytes: int
    max_synthetic: int

    @classmethod
    def from_env(cls) -> ImageQuota:
        env_int = workspace_pool.count_setting  # one parser of the demo settings, with its messages
        return cls(max_images=env_int("SYNTHLAB_DEMO_MAX_IMAGES", DEFAULT_MAX_IMAGES),
                   max_bytes=env_int("SYNTHLAB_DEMO_MAX_BYTES", DEFAULT_MAX_BYTES),
                   max_synthetic=workspaces.Quotas.from_env().total_images)


def held_bytes(root: str | os.PathLike) -> int:
    """Bytes of the image files a store holds (one ``scandir`` per shard folder)."""
    total = 0
    images = Path(root) / "images"
    try:
        shards = list(os.scandir(images))
    except OSError:
        return 0
    for shard in shards:
        if not shard.is_dir(follow_symlinks=False):
            continue
        try:
            total += sum(e.stat(follow_symlinks=False).st_size for e in os.scandir(shard.path)
                         if e.is_file(follow_symlinks=False))
        except OSError:
            continue
    return total


def _mb(n: int) -> str:
    return f"{n / 1_000_000:,.1f} MB"


def check_incoming(store, files: int, nbytes: int, *, source: str, what: str = "this import") -> None:
    """Refuse (:class:`QuotaExceeded`) ``files`` new images of ``nbytes`` bytes that would take a demo
    workspace over a quota; quiet outside demo mode. ``what`` names the command in the message."""
    if not workspaces.is_demo():
        return
    q = ImageQuota.from_env()
    held = store.count_images()
    if held + files > q.max_images:
        raise QuotaExceeded(f"demo limit: at most {q.max_images:,} images per workspace; it holds {held:,} and "
                            f"{what} brings up to {files:,} — bring fewer")
    if source == "synthetic":
        made = store.count_images(source="synthetic")
        if made + files > q.max_synthetic:
            raise QuotaExceeded(f"demo limit: at most {q.max_synthetic:,} synthetic images per workspace; it "
                                f"holds {made:,} and {what} brings up to {files:,} — bring fewer")
    have = held_bytes(store.root)
    if have + nbytes > q.max_bytes:
        raise QuotaExceeded(f"demo limit: at most {_mb(q.max_bytes)} of images per workspace; it holds "
                            f"{_mb(have)} and {what} brings {_mb(nbytes)} — bring fewer or smaller files")


def sample_bytes_per_image(size: int) -> int:
    """What one sample photo takes as a PNG at ``size`` px (an upscaled 28 px greyscale scan compresses to
    about a tenth of its raw RGB size; a quarter is the bound used)."""
    return size * size * 3 // 4


def check_sample(store, per_tag: int, test_per_tag: int, size: int, tags: int = SAMPLE_TAGS, held: int = 0) -> None:
    """Refuse a clothing sample that would take a demo workspace over its image or byte quota (``held``: the
    sample photos the workspace already has, which a second load does not import again)."""
    files = max((per_tag + test_per_tag) * tags - held, 0)
    check_incoming(store, files, files * sample_bytes_per_image(size), source="real",
                   what=f"the clothing sample ({per_tag} + {test_per_tag} per tag, {tags} tags)")
