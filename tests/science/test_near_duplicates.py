"""Known answer: planted near-duplicates (JPEG re-saves, 1–2 px shifts) of real photos are found, and
distinct low-detail photos (handwritten digit scans) are not clustered — where a pHash alone clusters them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.data import similarity
from core.data.filtering import FilterSpec, apply_filter
from tests.datasets import digit_images, fashion_available, fashion_images


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def shifted(image: Image.Image, dx: int, dy: int) -> Image.Image:
    """The photo moved by (dx, dy) px, the uncovered border filled by repeating the edge."""
    a = np.asarray(image)
    p = 4
    padded = np.pad(a, ((p, p), (p, p), (0, 0)), mode="edge")
    return Image.fromarray(padded[p - dy:p - dy + a.shape[0], p - dx:p - dx + a.shape[1]])


COPIES = {
    "jpeg q75": lambda im: jpeg(im, 75),
    "jpeg q50": lambda im: jpeg(im, 50),
    "shift 1 px": lambda im: shifted(im, 1, 0),
    "shift 2 px": lambda im: shifted(im, -2, 2),
    "shift + jpeg": lambda im: jpeg(shifted(im, 1, -1), 70),
}


def digits(per_tag: int, size: int) -> list[Image.Image]:
    return [im for ims in digit_images(n_train=per_tag, n_test=0, size=size, n_tags=4)["real"].values() for im in ims]


def test_distinct_digit_scans_are_not_clustered_though_phash_alone_clusters_them(store):
    photos = digits(46, 64)
    store.add_tag("digits")
    ids = [store.add_image(im, tag="digits", source="synthetic", seed=i)[0] for i, im in enumerate(photos)]
    assert len(set(ids)) == len(photos)
    stats = similarity.SearchStats()
    assert similarity.find_duplicate_clusters(store, ids, stats=stats) == []
    assert stats.candidates > 20 and stats.confirmed == 0  # many pHash candidates, none confirmed
    hashes, thumbs = similarity.signatures(store, ids)
    hash_only = similarity.clusters_of(ids, hashes, None)
    assert len(hash_only) >= 5  # what the old search reported: innocent images in clusters
    kept, dropped = apply_filter(store, ids, FilterSpec(drop_near_duplicates=True))
    assert kept == ids and dropped == []


@pytest.mark.parametrize("size", [64, 128])
def test_planted_copies_of_digit_scans_are_found_and_nothing_else(store, size):
    photos = digits(25, size)
    originals = photos[::10]
    store.add_tag("digits")
    ids = {id(im): store.add_image(im, tag="digits", source="real")[0] for im in photos}
    expected = []
    for k, original in enumerate(originals):
        copies = COPIES if size >= 128 else {n: f for n, f in COPIES.items() if n != "shift 2 px"}
        group = [ids[id(original)]]
        for name, make in copies.items():
            group.append(store.add_image(make(original), tag="digits", source="synthetic", seed=k, prompt=name)[0])
        expected.append(sorted(group))
    everything = [im["id"] for im in store.list_images("digits")]
    found = similarity.find_duplicate_clusters(store, everything)
    assert sorted(sorted(c) for c in found) == sorted(expected)


@pytest.mark.skipif(not fashion_available(), reason="needs Debian's dataset-fashion-mnist")
def test_planted_copies_of_clothing_photos_are_found_and_the_filter_drops_only_them(store):
    photos = fashion_images(n_train=30, n_test=0, size=128)["real"]
    store.add_tag("shoes")
    real = [store.add_image(im, tag="shoes", source="real")[0] for im in photos["shoes"]]
    distinct = [store.add_image(im, tag="shoes", source="synthetic", seed=i)[0]
                for i, im in enumerate(photos["shirts"] + photos["jeans"])]
    planted = {}
    for k, original in enumerate(photos["shoes"][:6]):
        for name, make in COPIES.items():
            planted[store.add_image(make(original), tag="shoes", source="synthetic", seed=100 + k, prompt=name)[0]] = real[k]
    stats = similarity.SearchStats()
    clusters = similarity.find_duplicate_clusters(store, real + distinct + list(planted), stats=stats)
    assert sorted(sorted(c) for c in clusters) == sorted(
        sorted([real[k], *[p for p, r in planted.items() if r == real[k]]]) for k in range(6))
    # the slice filter uses the same search: among the synthetic images each planted group keeps one
    kept, dropped = apply_filter(store, distinct + list(planted), FilterSpec(drop_near_duplicates=True))
    assert set(kept) >= set(distinct) and len(dropped) == 6 * (len(COPIES) - 1)
    assert all(d["reason"].startswith("near-duplicate of ") for d in dropped)


def test_the_hash_scan_matches_a_brute_force_count_and_stays_chunked():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2 ** 63, size=600, dtype=np.uint64)
    hashes[300:310] = hashes[0] ^ np.uint64(0b111)  # 3 bits from the first
    found = {(int(i), int(j)) for a, b in similarity.hamming_candidates(hashes, 4) for i, j in zip(a, b)}
    bits = np.unpackbits(hashes.view(np.uint8).reshape(-1, 8), axis=1).astype(int)
    distance = bits @ (1 - bits).T + (1 - bits) @ bits.T
    truth = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(distance <= 4, 1)))}
    assert found == truth and len(truth) >= 55
