"""Known answer: crops of 6–10 % per side (symmetric, from one corner, uneven), resized back to the photo's
size, are clustered with their source — which the same-scale search misses — and 200 distinct photos of one
class (T-shirts, which the crop registration fits closest) make no cluster."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.data import crop_match, similarity
from core.data.filtering import FilterSpec, apply_filter
from tests.datasets import fashion_arrays, fashion_available

pytestmark = pytest.mark.skipif(not fashion_available(), reason="needs Debian's dataset-fashion-mnist")

SIZE = 256  # the clothing sample's default size

CROPS = {  # fraction cut from (left, top, right, bottom)
    "6 % per side": (0.06, 0.06, 0.06, 0.06),
    "8 % per side": (0.08, 0.08, 0.08, 0.08),
    "10 % per side": (0.10, 0.10, 0.10, 0.10),
    "10 % from the top-left corner": (0.10, 0.10, 0.0, 0.0),
    "8 % from the bottom-right corner": (0.0, 0.0, 0.08, 0.08),
    "uneven 10/5/2/8 %": (0.10, 0.05, 0.02, 0.08),
}


def photo(pixels: np.ndarray, size: int = SIZE) -> Image.Image:
    return Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")


def cropped(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    """The photo with those fractions cut from each side, resized back to its own size."""
    w, h = image.size
    box = (round(left * w), round(top * h), round(w - right * w), round(h - bottom * h))
    return image.crop(box).resize((w, h), Image.Resampling.BICUBIC)


def distinct_rows(label: int, n: int, min_difference: float = 8.0) -> list[np.ndarray]:
    """``n`` Fashion-MNIST test rows of one class, each differing from every row picked before by a mean
    of at least ``min_difference`` grey levels at 28 px (the set holds a few near-identical rows)."""
    images, labels = fashion_arrays("t10k")
    picked: list[np.ndarray] = []
    for row in images[labels == label]:
        a = row.astype(np.float32)
        if all(np.abs(a - b).mean() >= min_difference for b in picked):
            picked.append(a)
        if len(picked) == n:
            return [p.astype(np.uint8) for p in picked]
    raise ValueError(f"class {label} has fewer than {n} distinct rows")


def test_crops_of_6_to_10_percent_per_side_are_clustered_with_their_source(store):
    sources = [photo(rows) for label in (0, 1, 3, 6, 7, 9) for rows in distinct_rows(label, 12)[:2]]
    others = [photo(rows) for label in (0, 1, 3, 6, 7, 9) for rows in distinct_rows(label, 12)[2:8]]
    store.add_tag("clothes")
    source_ids = [store.add_image(im, tag="clothes", source="synthetic", seed=i)[0] for i, im in enumerate(sources)]
    other_ids = [store.add_image(im, tag="clothes", source="synthetic", seed=100 + i)[0] for i, im in enumerate(others)]
    planted: dict[str, list[str]] = {s: [] for s in source_ids}
    for k, (image, source_id) in enumerate(zip(sources, source_ids)):
        for name, cut in CROPS.items():
            crop_id = store.add_image(cropped(image, *cut), tag="clothes", source="synthetic", seed=200 + k,
                                      prompt=name)[0]
            planted[source_id].append(crop_id)
    everything = source_ids + other_ids + [c for crops in planted.values() for c in crops]
    assert len(set(everything)) == len(sources) * (1 + len(CROPS)) + len(others)

    same_scale = similarity.find_duplicate_clusters(store, everything, similarity.DuplicateRule(crops=False))
    assert not any(set(c) & set(source_ids) for c in same_scale)  # the search before: no crop with its source

    stats = similarity.SearchStats()
    found = similarity.find_duplicate_clusters(store, everything, stats=stats)
    expected = sorted(sorted([s, *crops]) for s, crops in planted.items())
    assert sorted(sorted(c) for c in found) == expected
    assert stats.crop_confirmed >= len(sources) * len(CROPS) - len(sources)  # each crop, or via another crop
    # the slice filter uses the same search: each source is kept, its crops dropped, every other photo kept
    kept, dropped = apply_filter(store, everything, FilterSpec(drop_near_duplicates=True))
    assert kept == source_ids + other_ids
    assert sorted(d["id"] for d in dropped) == sorted(c for crops in planted.values() for c in crops)


def test_200_distinct_photos_of_one_class_make_no_cluster(store):
    rows = distinct_rows(0, 200)  # T-shirt/top: low-detail silhouettes, the closest fits for a registration
    store.add_tag("tshirts")
    ids = [store.add_image(photo(r), tag="tshirts", source="synthetic", seed=i)[0] for i, r in enumerate(rows)]
    assert len(set(ids)) == 200
    stats = similarity.SearchStats()
    assert similarity.find_duplicate_clusters(store, ids, stats=stats) == []
    assert stats.crop_candidates >= 200 and stats.crop_confirmed == 0  # looked at, none confirmed


def test_registration_recovers_a_known_zoom_and_shift_and_the_threshold_is_stricter():
    rng = np.random.default_rng(3)
    base = np.kron(rng.random((16, 16)), np.ones((4, 4))).astype(np.float32) * 255  # 64 px, blocky detail
    view = crop_match.magnified(base[None], 1.18, 1.18, 2.5, -1.5)
    score = crop_match.registered_correlation(base[None], view, np.array([crop_match.ZOOMS[4]]))
    plain = crop_match.registered_correlation(base[None], view, np.array([1.0]), floor=2.0)  # coarse only
    assert score[0] > 0.999 > plain[0]
    assert crop_match.crop_threshold(0.985) == pytest.approx(0.997)
    assert crop_match.magnified(base[None], 1.0, 1.0, 0.0, 0.0)[0] == pytest.approx(base)
