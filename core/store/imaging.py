"""Image helpers: normalising imported photos to plain RGB, and the resize/crop cache.

A resized copy is a *cache*, never a second truth: it is keyed by (image id — the SHA-256 of the stored
PNG —, size, fit, resample), written atomically, and safe to delete at any time.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from core.errors import InvalidInput
from core.store.database import Store

FITS = ("crop", "pad", "stretch")
RESAMPLES: dict[str, Image.Resampling] = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "nearest": Image.Resampling.NEAREST,
}
MIN_SIZE, MAX_SIZE = 16, 4096
PAD_COLOR = (255, 255, 255)


def upright(image: Image.Image) -> tuple[Image.Image, str | None]:
    """``(image turned by its EXIF orientation, None)``, or ``(image as stored, note)`` when its EXIF or XMP
    cannot be read — a broken orientation tag is no reason to lose the photo."""
    try:
        return ImageOps.exif_transpose(image), None
    except Exception as exc:  # noqa: BLE001 - any failure of a foreign EXIF/XMP block
        return image, f"EXIF orientation ignored: {type(exc).__name__}: {str(exc)[:200]}"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB, the way a viewer would show it.

    EXIF orientation is applied; transparency is flattened onto white; 16-bit and 32-bit greyscale are
    scaled (not clipped) to 8 bits; CMYK, palette, greyscale and bilevel are converted.
    """
    image, _ = upright(image)
    icc = image.info.get("icc_profile")
    if icc and image.mode in ("RGB", "CMYK", "L"):
        converted = _icc_to_srgb(image, icc)
        if converted is not None:
            return converted
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(image).astype(np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0
        elif mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa") or (mode == "L" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, PAD_COLOR)
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _icc_to_srgb(image: Image.Image, icc: bytes) -> Image.Image | None:
    """Colours as the embedded ICC profile (Display P3, a CMYK press profile…) means them, in sRGB."""
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception:  # noqa: BLE001 - a broken or exotic profile: fall back to a plain conversion
        return None


def check_resize(size: int | None, fit: str = "crop", resample: str = "lanczos") -> None:
    """Refuse a size, fit or resample name that :func:`resize` would not accept."""
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidInput(f"size must be a whole number of pixels, not {size!r}")
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise InvalidInput(f"size must be between {MIN_SIZE} and {MAX_SIZE} px, not {size}")
    if fit not in FITS:
        raise InvalidInput(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    if resample not in RESAMPLES:
        raise InvalidInput(f"resample must be one of {', '.join(RESAMPLES)}, not {resample!r}")


def resize(image: Image.Image, size: int, fit: str = "crop", resample: str = "lanczos") -> Image.Image:
    """A ``size``×``size`` RGB copy.

    ``crop`` (default): shorter side to ``size``, then centre crop. ``pad``: longer side to ``size``,
    letterboxed on white. ``stretch``: both sides to ``size``, aspect ratio ignored.
    """
    check_resize(size, fit, resample)
    method = RESAMPLES[resample]
    image = image.convert("RGB") if image.mode != "RGB" else image
    if fit == "crop":
        return ImageOps.fit(image, (size, size), method=method, centering=(0.5, 0.5))
    if fit == "pad":
        return ImageOps.pad(image, (size, size), method=method, color=PAD_COLOR, centering=(0.5, 0.5))
    return image.resize((size, size), method)


def cache_file(store: Store, image_id: str, size: int, fit: str = "crop", resample: str = "lanczos") -> Path:
    return store.cache_dir / "resized" / f"{size}-{fit}-{resample}" / image_id[:2] / f"{image_id}.png"


def resized(store: Store, image_id: str, size: int | None, fit: str = "crop",
            resample: str = "lanczos") -> Image.Image:
    """Image ``image_id`` at ``size`` px (``None``: the original), from the cache when it is there.

    A cache entry that cannot be read is rebuilt from the original. The original is checked against its
    SHA-256 once per process (:meth:`Store.verify_image`), cache or not: a replaced file fails here.
    """
    check_resize(size, fit, resample)
    if size is None:
        return store.open_image(image_id)
    path = cache_file(store, image_id, size, fit, resample)
    if path.exists():
        try:
            with Image.open(path) as cached:
                cached.load()
                if cached.size == (size, size):
                    store.verify_image(image_id)
                    return cached.convert("RGB")
        except (OSError, SyntaxError, ValueError):
            pass
    image = resize(store.open_image(image_id), size, fit, resample)
    write_cache_file(path, lambda tmp: image.save(tmp, format="PNG"))
    return image


def resized_png(store: Store, image_id: str, size: int | None, fit: str = "crop",
                resample: str = "lanczos") -> bytes:
    """The PNG bytes of :func:`resized` (the stored file itself when ``size`` is None)."""
    if size is None:
        return store.image_bytes(image_id)
    path = cache_file(store, image_id, size, fit, resample)
    resized(store, image_id, size, fit, resample)
    try:
        return path.read_bytes()
    except OSError:
        from core.store.database import png_bytes

        return png_bytes(resized(store, image_id, size, fit, resample))


def write_cache_file(path: Path, write) -> None:
    """Write a cache file whole or not at all: ``write(tmp)`` fills a temporary name, then it is renamed
    into place. A cache is safe to lose, so a write that fails leaves nothing and raises nothing."""
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{threading.get_ident()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
