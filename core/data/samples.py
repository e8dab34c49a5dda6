"""The clothing sample: real photos for the four tags of the original experiment, with no camera.

Zalando's Fashion-MNIST (MIT licence; 70 000 grayscale 28×28 photos in 10 classes) maps onto the
tags ``jeans`` (Trouser), ``shoes`` (Sneaker; optionally Sandal and Ankle boot), ``shirts`` (Shirt;
optionally T-shirt/top) and ``other`` (Bag). Real photos come from the training split, test photos
from the held-out split, so the two never overlap. Source, in order: Debian's
``dataset-fashion-mnist`` files (``SYNTHLAB_FASHION_DIR`` overrides the folder), else the hub dataset
``zalando-datasets/fashion_mnist`` through ``datasets`` when the hub can be reached, else
:class:`SampleUnavailable` naming both ways to get it.

Photos are stored upscaled (``size`` px, bicubic) with provenance ``{"dataset": "fashion-mnist",
"index": i, "original_size": 28, "split": …, "class": …}``. Images are content-addressed, so loading
the sample again imports nothing new.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import config
from core.errors import InvalidInput, SampleUnavailable
from core.progress import Progress
from core.run import demo_limits
from core.store.database import Store

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
HUB_DATASET = "zalando-datasets/fashion_mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SPLITS = {"real": "train", "test": "t10k"}
_HUB_SPLITS = {"train": "train", "t10k": "test"}
ORIGINAL_SIZE = 28
SAMPLE_ROWS_PER_CLASS = 3000
"""The sample takes real photos only from the first 3000 training rows of each class (file order); the
rows after them train the built-in generator ``fashion-mini``, so its training data never meets a photo
the experiment uses as real or test."""
MAX_PER_TAG = {"train": SAMPLE_ROWS_PER_CLASS, "t10k": 1000}



@dataclass(frozen=True)
class SampleTag:
    name: str
    labels: tuple[int, ...]
    prompt: str
    negative: str = "text, watermark, person, mannequin"


def sample_tags(more_shoes: bool = False, more_shirts: bool = False) -> tuple[SampleTag, ...]:
    """The four tags, their Fashion-MNIST labels and prompts in the spirit of the original experiment."""
    return (
        SampleTag("jeans", (1,), "a product photo of {blue|black|light blue|ripped|faded} jeans, "
                                 "{folded|flat lay|on a hanger}, plain white background"),
        SampleTag("shoes", (7, 5, 9) if more_shoes else (7,),
                  "a product photo of {a pair of|one} {white|black|running|canvas|leather} sneakers, "
                  "{side view|top view}, plain white background"),
        SampleTag("shirts", (6, 0) if more_shirts else (6,),
                  "a product photo of a {plaid|white|denim|striped|linen} {button-up|flannel|casual} shirt, "
                  "{folded|flat lay|on a hanger}, plain white background"),
        SampleTag("other", (8,), "a product photo of a {leather|canvas|tote|shoulder} bag, "
                                 "plain white background"),
    )


def debian_dir() -> Path:
    return Path(config.setting("SYNTHLAB_FASHION_DIR") or DEBIAN_DIR)


def _debian_split(split: str) -> tuple[np.ndarray, np.ndarray] | None:
    folder = debian_dir()
    images, labels = folder / f"{split}-images-idx3-ubyte.gz", folder / f"{split}-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        return None
    try:
        with gzip.open(images) as f:
            pixels = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, ORIGINAL_SIZE, ORIGINAL_SIZE)
        with gzip.open(labels) as f:
            targets = np.frombuffer(f.read(), np.uint8, offset=8)
    except (OSError, EOFError, ValueError) as exc:
        raise SampleUnavailable(f"the Fashion-MNIST files in {folder} cannot be read ({exc})") from None
    if len(pixels) != len(targets):
        raise SampleUnavailable(f"the Fashion-MNIST files in {folder} do not match (images vs labels)")
    return pixels, targets


def _hub_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    from core.models import hub

    check_source()
    try:
        with hub.quiet_hub():
            from datasets import load_dataset

            data = load_dataset(HUB_DATASET, split=_HUB_SPLITS[split])
    except Exception as exc:  # noqa: BLE001 - network, auth or format trouble: one line
        raise SampleUnavailable(f"no clothing photos: install Debian's dataset-fashion-mnist (apt-get install "
                                f"dataset-fashion-mnist) or retry the hub dataset {HUB_DATASET}, which failed to "
                                f"load ({type(exc).__name__})") from None
    pixels = np.stack([np.asarray(im.convert("L"), dtype=np.uint8) for im in data["image"]])
    return pixels, np.asarray(data["label"], dtype=np.uint8)


def fashion_split(split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(images [n, 28, 28] uint8, labels [n], source)`` of ``train`` or ``t10k``; source is
    ``debian`` or ``hub``. Raises :class:`SampleUnavailable` when neither source has it."""
    found = _debian_split(split)
    if found is not None:
        return found[0], found[1], "debian"
    return (*_hub_split(split), "hub")


def check_source() -> None:
    """Raise :class:`SampleUnavailable` at once when neither the Debian files nor the hub can give the photos
    (so a page refuses before it queues a load that could only fail)."""
    from core.models import hub

    if available():
        return
    state = hub.hub_state()
    if state != hub.ONLINE:
        raise SampleUnavailable(
            f"no clothing photos: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist; "
            f"{debian_dir()} has none) or go online for the hub dataset {HUB_DATASET} "
            f"({hub.unreachable_reason(state)})")


def available() -> bool:
    """True when the sample can be loaded without the network (the Debian files are there)."""
    folder = debian_dir()
    return all((folder / f"{s}-{k}.gz").is_file() for s in SPLITS.values()
               for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))


def pick_rows(labels: np.ndarray, wanted: tuple[int, ...], n: int) -> list[int]:
    """The first ``n`` indices of the wanted classes, taken round-robin so combined classes stay balanced
    (never past a class's first :data:`SAMPLE_ROWS_PER_CLASS` rows)."""
    pools = [np.flatnonzero(labels == lab)[:SAMPLE_ROWS_PER_CLASS].tolist() for lab in wanted]
    out: list[int] = []
    depth = 0
    while len(out) < n and any(depth < len(p) for p in pools):
        for pool in pools:
            if depth < len(pool) and len(out) < n:
                out.append(pool[depth])
        depth += 1
    return out


def check_number(name: str, value: int, lo: int, hi: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a whole number, not {value!r}") from None
    if number != value or not lo <= number <= hi:
        raise InvalidInput(f"{name} must be a whole number from {lo} to {hi}, not {value!r}")
    return number


# The sample's one set of defaults (Overview, Generate, the CLI): enough real photos for the experiment's
# largest slice (200 per tag), and 50 test photos per tag.
DEFAULT_PER_TAG = 200
DEFAULT_TEST_PER_TAG = 50
DEFAULT_SIZE = 256


def check_quota(store: Store, per_tag: int, test_per_tag: int, size: int, *, more_shoes: bool = False,
                more_shirts: bool = False) -> None:
    """Refuse a load that would take a demo workspace over its quota (the sample photos it already holds are
    not imported again, so they do not count twice)."""
    spec = sample_tags(more_shoes, more_shirts)
    held = store.conn.execute(
        f"SELECT COUNT(*) FROM images WHERE source IN ('real', 'test') AND tag IN ({','.join('?' * len(spec))})",
        tuple(t.name for t in spec)).fetchone()[0]
    demo_limits.check_sample(store, per_tag, test_per_tag, size, tags=len(spec), held=held)


def stored_rows(store: Store, size: int) -> set[tuple[str, str, str, int]]:
    """``(tag, source, split, index)`` of every sample photo the store holds at ``size`` px (rejected ones too):
    what a load that stopped half way has already imported."""
    rows = store.query("SELECT tag, source, json_extract(extra, '$.split') AS split, json_extract(extra, '$.index') "
                       "AS ix FROM images WHERE width = ? AND source IN ('real', 'test') "
                       "AND json_extract(extra, '$.dataset') = 'fashion-mnist'", (int(size),))
    return {(r["tag"], r["source"], r["split"], int(r["ix"])) for r in rows if r["ix"] is not None}


def load_clothing_sample(store: Store, per_tag: int = DEFAULT_PER_TAG, test_per_tag: int = DEFAULT_TEST_PER_TAG,
                         size: int = DEFAULT_SIZE,
                         progress: Progress = None, *, more_shoes: bool = False,
                         more_shirts: bool = False) -> dict:
    """Create the tags ``jeans``, ``shoes``, ``shirts``, ``other`` (existing ones keep their prompts)
    and import ``per_tag`` real and ``test_per_tag`` test photos of each, upscaled to ``size`` px.

    Returns ``{"tags": [tag dicts with counts], "imported", "duplicates", "source", "per_tag",
    "test_per_tag", "size", "created_tags"}``. Idempotent and resumable: photos already in the store (a load
    that stopped half way) are skipped, and the content hash keeps any photo from being stored twice; a
    second call imports nothing new. ``progress`` hears of every photo. Raises :class:`SampleUnavailable` (a
    :class:`UserError`) when no source has the photos, before anything is written.
    """
    from PIL import Image

    per_tag = check_number("per_tag", per_tag, 1, MAX_PER_TAG["train"])
    test_per_tag = check_number("test_per_tag", test_per_tag, 0, MAX_PER_TAG["t10k"])
    size = check_number("size", size, ORIGINAL_SIZE, 1024)
    spec = sample_tags(more_shoes, more_shirts)
    wanted = {"real": per_tag, "test": test_per_tag}
    check_quota(store, per_tag, test_per_tag, size, more_shoes=more_shoes, more_shirts=more_shirts)
    splits = {source: fashion_split(SPLITS[source]) for source, n in wanted.items() if n > 0}

    created = []
    existing = set(store.tag_names())
    for tag in spec:
        if tag.name not in existing:
            store.add_tag(tag.name, tag.prompt, tag.negative)
            created.append(tag.name)
    plan = [(source, tag, index) for source, (_, labels, _) in splits.items() for tag in spec
            for index in pick_rows(labels, tag.labels, wanted[source])]
    there = stored_rows(store, size)
    imported = duplicates = 0
    for done, (source, tag, index) in enumerate(plan, 1):
        split = SPLITS[source]
        if (tag.name, source, split, int(index)) in there:
            duplicates += 1
        else:
            pixels = splits[source][0][index]
            picture = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
            extra = {"dataset": "fashion-mnist", "index": int(index), "original_size": ORIGINAL_SIZE, "split": split,
                     "class": CLASSES[int(splits[source][1][index])]}
            _, new = store.add_image(picture, tag=tag.name, source=source, extra=extra,
                                     original_name=f"fashion-mnist/{split}/{index}")
            imported += int(new)
            duplicates += int(not new)
        if progress:
            progress(done, len(plan), f"photos · {tag.name} {source}")
    names = {t.name for t in spec}
    sources = sorted({s for _, _, s in splits.values()})
    return {"tags": [t for t in store.list_tags() if t["name"] in names], "imported": imported,
            "duplicates": duplicates, "source": sources[0] if len(sources) == 1 else ",".join(sources),
            "per_tag": per_tag, "test_per_tag": test_per_tag, "size": size, "created_tags": created}
