"""Content-addressed image files: images/ab/abcdef….png named by the SHA-256 of their bytes, written once, verified on read."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path
from typing import Optional

from PIL import Image

from core.errors import InvalidInput
from core.store import failures

_VERIFIED: set[tuple] = set()  # image files whose SHA-256 was checked in this process: (path, size, mtime, inode, dev)


class ImageFiles:
    """Methods of :class:`core.store.database.Store` (content-addressed image files)."""

    def image_file(self, image_id: str) -> Path:
        return self.images_dir / image_id[:2] / f"{image_id}.png"

    def write_png(self, data: bytes) -> str:
        """Write PNG bytes under their SHA-256 (temp file, fsync, rename). Returns the id."""
        self._refuse_write("store an image")
        image_id = hashlib.sha256(data).hexdigest()
        target = self.image_file(image_id)
        if target.exists() and target.stat().st_size == len(data):
            return image_id
        tmp = target.parent / f".tmp-{image_id}-{os.getpid()}-{threading.get_ident()}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            where = Path(exc.filename).relative_to(self.root) if exc.filename and str(exc.filename).startswith(
                str(self.root)) else target.relative_to(self.root)
            raise InvalidInput(f"cannot write to the store at {self.root}: {exc.strerror or exc} ({where})") from exc
        return image_id

    def image_bytes(self, image_id: str) -> bytes:
        """The stored PNG bytes of ``image_id``, checked against the SHA-256 they are named by.

        A missing, unreadable or replaced file is a :class:`StoreDamaged` naming the file and what to do.
        """
        path = self.image_file(image_id)
        known = self._file_key(image_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise self._damaged_image(image_id, "is missing") from None
        except OSError as exc:
            raise self._damaged_image(image_id, f"cannot be read ({exc.strerror or exc})") from None
        if known is not None and known in _VERIFIED and len(data) == known[1]:
            return data
        if hashlib.sha256(data).hexdigest() != image_id:
            raise self._damaged_image(image_id, "does not match its SHA-256 (the file was replaced or damaged)")
        if known is not None:
            _VERIFIED.add(known)
        return data

    def verify_image(self, image_id: str) -> None:
        """Check an image file against its SHA-256 once per process (again if the file changed since)."""
        key = self._file_key(image_id)
        if key is None or key not in _VERIFIED:
            self.image_bytes(image_id)

    def _file_key(self, image_id: str) -> Optional[tuple]:
        try:
            st = os.stat(self.image_file(image_id))
        except OSError:
            return None
        return (str(self.image_file(image_id)), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    def _damaged_image(self, image_id: str, what: str) -> failures.StoreDamaged:
        row = self.query_one("SELECT tag, source FROM images WHERE id = ?", (image_id,))
        of = f" ({row['source']} image of tag {row['tag']!r})" if row else ""
        return failures.StoreDamaged(f"image file {self.image_file(image_id)} {what}{of}: restore it from a backup of the "
                            f"store's images folder, or reject the image (python -m core images reject {image_id}) "
                            "and run again")

    def open_image(self, image_id: str) -> Image.Image:
        """Image ``image_id`` as RGB, from bytes checked against its SHA-256 (:meth:`image_bytes`)."""
        data = self.image_bytes(image_id)
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise self._damaged_image(image_id, f"cannot be decoded ({exc})") from None
