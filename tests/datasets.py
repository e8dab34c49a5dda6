"""A small real image set that a package ships: scikit-learn's handwritten digits (no download).

``load_digits`` holds ~180 scans of each digit at 8×8 px (UCI optical digits, real handwriting by 43
people). Digits 0–3 become four tags; each tag's first ``n_train`` distinct scans are ``real`` training
photos and the next ``n_test`` are held-out ``test`` photos, upscaled to ``size`` px PNGs (dark ink on
white) and imported through :func:`core.data.ingest.import_paths` like a user's folder of tag subfolders.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

DIGIT_TAGS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def digit_images(n_train: int = 60, n_test: int = 30, size: int = 64, n_tags: int = 4
                 ) -> dict[str, dict[str, list[Image.Image]]]:
    """``{"real": {tag: [images]}, "test": {tag: [images]}}`` — disjoint, each scan used once."""
    from sklearn.datasets import load_digits

    data = load_digits()
    out: dict[str, dict[str, list[Image.Image]]] = {"real": {}, "test": {}}
    for digit in range(n_tags):
        tag = DIGIT_TAGS[digit]
        seen: set[bytes] = set()
        scans = []
        for scan in data.images[data.target == digit]:
            key = scan.astype(np.uint8).tobytes()
            if key not in seen:
                seen.add(key)
                scans.append(scan)
        if len(scans) < n_train + n_test:
            raise ValueError(f"digit {digit} has only {len(scans)} distinct scans")
        pictures = [_picture(scan, size) for scan in scans[: n_train + n_test]]
        out["real"][tag] = pictures[:n_train]
        out["test"][tag] = pictures[n_train:]
    return out


def _picture(scan: np.ndarray, size: int) -> Image.Image:
    ink = (255 - scan * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(ink, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def write_digits(folder: str | os.PathLike, **options) -> dict[str, Path]:
    """Write ``folder/real/<tag>/*.png`` and ``folder/test/<tag>/*.png``; returns the two folders."""
    folder = Path(folder)
    for source, by_tag in digit_images(**options).items():
        for tag, pictures in by_tag.items():
            (folder / source / tag).mkdir(parents=True, exist_ok=True)
            for i, picture in enumerate(pictures):
                picture.save(folder / source / tag / f"{tag}-{i:03d}.png")
    return {"real": folder / "real", "test": folder / "test"}


def import_digits(store, folder: str | os.PathLike, **options) -> dict[str, dict]:
    """Write the digits and import them into ``store`` (tags created from the subfolder names)."""
    from core.data.ingest import import_paths

    folders = write_digits(folder, **options)
    return {source: import_paths(store, [path], tag=None, source=source) for source, path in folders.items()}


_templates: dict[tuple, Path] = {}


def digits_template(counts: tuple[int, ...] = (5, 20, 60), size: int = 32, n_test: int = 30) -> Path:
    """A store folder (built once per process) holding the digits and one slice sweep named ``digits``
    (``counts`` per tag, real photos only, at ``size`` px). Copy it with :func:`copy_store`."""
    key = (tuple(counts), size, n_test)
    if key not in _templates:
        import atexit
        import shutil
        import tempfile

        from core.data.slicing import SliceSpec, build_slices
        from core.store.database import Store

        root = Path(tempfile.mkdtemp(prefix="synthlab-digits-"))
        atexit.register(shutil.rmtree, root, True)
        store = Store(root / "home")
        import_digits(store, root / "files", n_train=max(counts), n_test=n_test)
        build_slices(store, SliceSpec(name="digits", counts=tuple(counts), size=size, real_fraction=1.0))
        store.close()
        _templates[key] = root / "home"
    return _templates[key]


def copy_store(template: Path, home: str | os.PathLike):
    """A private copy of a template store at ``home`` (a fresh folder), opened."""
    import shutil

    from core.store.database import Store

    shutil.copytree(template, home, dirs_exist_ok=True)
    return Store(home)


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
_fashion_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def fashion_available() -> bool:
    """Debian's ``dataset-fashion-mnist`` is installed (CI installs it; ``.ci/run``)."""
    return (FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists()


def fashion_arrays(split: str = "t10k") -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [n, 28, 28], labels uint8 [n])`` of one split, read from the IDX files."""
    import gzip

    if split not in _fashion_cache:
        with gzip.open(FASHION_DIR / f"{split}-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(FASHION_DIR / f"{split}-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        _fashion_cache[split] = (images, labels)
    return _fashion_cache[split]


def fashion_images(classes: dict[str, int] | None = None, n_train: int = 60, n_test: int = 30, size: int = 64,
                   split: str = "t10k") -> dict[str, dict[str, list[Image.Image]]]:
    """Real clothing photos as ``{"real": {tag: [...]}, "test": {tag: [...]}}``, disjoint, upscaled
    bicubic to ``size`` px RGB. ``classes`` maps tag → Fashion-MNIST label (default: jeans=Trouser,
    shoes=Sneaker, shirts=Shirt, other=Bag)."""
    classes = classes or {"jeans": 1, "shoes": 7, "shirts": 6, "other": 8}
    images, labels = fashion_arrays(split)
    out: dict[str, dict[str, list[Image.Image]]] = {"real": {}, "test": {}}
    for tag, label in classes.items():
        picked = images[labels == label][: n_train + n_test]
        if len(picked) < n_train + n_test:
            raise ValueError(f"class {label} has only {len(picked)} photos")
        pictures = [Image.fromarray(a, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
                    for a in picked]
        out["real"][tag] = pictures[:n_train]
        out["test"][tag] = pictures[n_train:]
    return out
