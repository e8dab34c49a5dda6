"""Images as Azure Custom Vision takes them: encoded within its size limits, at the side a slice asks for."""

from __future__ import annotations

import io
from typing import Optional

from PIL import Image

from core.errors import BackendError, InvalidInput, NotFound
from core.store.database import Store, png_bytes
from core.train.backends import azure_settings as az

JPEG_QUALITIES = (95, 90, 85, 80, 70, 60, 50, 40)


MAX_BATCH_BYTES = 48 * 1024 * 1024   # raw bytes per upload call (the JSON body is base64, a third larger)


def tiny_png() -> bytes:
    return png_bytes(Image.new("RGB", (az.MIN_SIDE, az.MIN_SIDE), (128, 128, 128)))


def encode_within(image: Image.Image, limit: int, png: Optional[bytes] = None) -> bytes:
    """The image as PNG, or — when that is over ``limit`` bytes — as JPEG at the highest quality
    that fits (then smaller, keeping the shorter side ≥ 256 px). Deterministic: the same image gives
    the same bytes, so a retried upload is an ``OKDuplicate``, never a second image."""
    data = png if png is not None else png_bytes(image)
    if len(data) <= limit:
        return data
    rgb = image.convert("RGB")
    while True:
        for quality in JPEG_QUALITIES:
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=quality, optimize=True)
            if buf.tell() <= limit:
                return buf.getvalue()
        short = min(rgb.size)
        if short <= az.MIN_SIDE:
            raise BackendError(f"an image of {rgb.width}×{rgb.height} px cannot be brought under "
                               f"{limit // (1024 * 1024)} MB")
        scale = max(az.MIN_SIDE / short, 0.75)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.LANCZOS)


def slice_view(slice_: dict) -> tuple[Optional[int], str, str]:
    spec = slice_.get("spec") or {}
    return slice_.get("size", spec.get("size")), spec.get("fit", "crop"), spec.get("resample", "lanczos")


def training_bytes(store: Store, image_id: str, view: tuple) -> bytes:
    from core.store import imaging

    size, fit, resample = view
    png = imaging.resized_png(store, image_id, size, fit, resample)
    if len(png) <= az.MAX_TRAINING_BYTES:
        return png
    return encode_within(imaging.resized(store, image_id, size, fit, resample), az.MAX_TRAINING_BYTES, png)


def prediction_bytes(store: Store, image: dict, view: tuple, limit: int) -> bytes:
    from core.store import imaging

    size, fit, resample = view
    stored = store.query_one("SELECT id FROM images WHERE id = ?", (image["id"],)) is not None
    if stored:
        png = imaging.resized_png(store, image["id"], size, fit, resample)
        if len(png) <= limit:
            return png
        return encode_within(imaging.resized(store, image["id"], size, fit, resample), limit, png)
    with Image.open(image["path"]) as opened:
        picture = imaging.to_rgb(opened)
        picture.load()
    if size is not None:
        picture = imaging.resize(picture, size, fit, resample)
    return encode_within(picture, limit)


def min_side(store: Store, slice_: dict) -> int:
    """The shorter side, in px, of the smallest image the slice would upload."""
    size = slice_view(slice_)[0]
    if size is not None:
        return int(size)
    ids = list(slice_.get("images") or [m["id"] for m in slice_.get("members", [])])
    if not ids:
        return 0
    smallest = None
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        row = store.query_one(f"SELECT MIN(MIN(width, height)) AS s FROM images WHERE id IN "
                              f"({','.join('?' * len(chunk))})", tuple(chunk))
        if row and row["s"] is not None:
            smallest = row["s"] if smallest is None else min(smallest, row["s"])
    return int(smallest or 0)


def check_min_side(store: Store, slice_: dict) -> None:
    """Refuse, before any network call, a slice whose images are under Azure's 256 px floor."""
    side = min_side(store, slice_)
    if side < az.MIN_SIDE:
        raise InvalidInput(f"slice {slice_.get('name')!r} (n={slice_.get('count_per_tag')}) has images of {side} px "
                           f"on the shorter side; Azure Custom Vision needs at least {az.MIN_SIDE} px — cut the "
                           f"slice at --size {az.MIN_SIDE} or more")


def run_view(store: Store, run: dict) -> tuple:
    """(size, fit, resample) the run was trained at: test images are shown to Azure the same way."""
    if "fit" not in run and run.get("slice"):
        try:
            from core.data.slicing import get_slice

            return slice_view(get_slice(store, run["slice"]))
        except NotFound:
            pass
    return run.get("size"), run.get("fit") or "crop", run.get("resample") or "lanczos"
