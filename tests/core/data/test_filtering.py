"""Filtering synthetic candidates (zero-shot own-tag probability, near-duplicates), alone and inside slicing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from core.data import filtering
from core.data.filtering import FilterSpec, apply_filter
from core.errors import InvalidInput, ModelNotFound, NotEnoughImages


def blocks(seed: int, px: int = 40, tweak: int = 0) -> Image.Image:
    """A 4×4 grid of colour blocks; ``tweak`` changes one pixel (other bytes, same picture)."""
    grid = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(grid).resize((px, px), Image.Resampling.NEAREST)).copy()
    arr[0, 0, 0] = tweak
    return Image.fromarray(arr)


@pytest.fixture
def lab(store):
    """jeans: a cluster of 3 synthetic look-alikes (+ 1 real look-alike) and 3 distinct synthetic images;
    shoes: 4 distinct synthetic images; both tags: 3 real photos of their own."""
    store.add_tag("jeans")
    store.add_tag("shoes")
    ids = {"cluster": [], "jeans": [], "shoes": [], "real": []}
    for i in range(3):
        ids["cluster"].append(store.add_image(blocks(1, tweak=i), tag="jeans", source="synthetic", seed=i)[0])
    ids["real"].append(store.add_image(blocks(1, tweak=9), tag="jeans", source="real")[0])
    for i in range(3):
        ids["jeans"].append(store.add_image(blocks(10 + i), tag="jeans", source="synthetic", seed=10 + i)[0])
    for i in range(4):
        ids["shoes"].append(store.add_image(blocks(20 + i), tag="shoes", source="synthetic", seed=20 + i)[0])
    for tag, base in (("jeans", 30), ("shoes", 40)):
        for i in range(3 if tag == "shoes" else 2):
            ids["real"].append(store.add_image(blocks(base + i), tag=tag, source="real")[0])
    return store, ids


# -- pure pieces ---------------------------------------------------------------------------------


def test_zero_shot_probabilities_follow_the_closest_text():
    images = np.array([[1.0, 0.1], [0.1, 1.0], [1.0, 1.0]])
    texts = np.array([[1.0, 0.0], [0.0, 2.0]])
    probs = filtering.zero_shot_probabilities(images, texts, logit_scale=100.0)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 0] > 0.99 and probs[1, 1] > 0.99 and probs[2, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("spec, message", [
    (FilterSpec(min_own_tag_probability=0.0), "between 0 and 1"),
    (FilterSpec(min_own_tag_probability=1.5), "between 0 and 1"),
    (FilterSpec(min_own_tag_probability=math.nan), "between 0 and 1"),
    (FilterSpec(min_own_tag_probability=True), "between 0 and 1"),
    (FilterSpec(drop_near_duplicates=True, duplicate_threshold=-1), "duplicate threshold"),
    (FilterSpec(drop_near_duplicates=True, duplicate_min_correlation=0.0), "duplicate minimum correlation"),
    (FilterSpec(drop_near_duplicates=True, duplicate_min_correlation=1.5), "duplicate minimum correlation"),
])
def test_bad_filter_values_are_refused(spec, message):
    with pytest.raises(InvalidInput, match=message):
        filtering.validate_filter(spec)


def test_a_filter_that_filters_nothing_is_no_filter(lab):
    store, ids = lab
    assert filtering.validate_filter(FilterSpec()) is None and filtering.describe(FilterSpec()) is None
    everything = [im["id"] for im in store.list_images()]
    assert apply_filter(store, everything, FilterSpec()) == (everything, [])


def test_a_missing_clip_model_is_a_clear_error(lab):
    store, ids = lab
    with pytest.raises(ModelNotFound, match="does not exist"):
        apply_filter(store, ids["jeans"], FilterSpec(min_own_tag_probability=0.5, clip_model="/no/such/clip"))


# -- on a store ----------------------------------------------------------------------------------


def test_near_duplicates_keep_the_first_and_never_drop_real_photos(lab):
    store, ids = lab
    candidates = ids["cluster"] + ids["real"] + ids["jeans"]
    kept, dropped = apply_filter(store, candidates, FilterSpec(drop_near_duplicates=True))
    first = ids["cluster"][0]
    assert [d["id"] for d in dropped] == ids["cluster"][1:]
    assert all(d["reason"] == f"near-duplicate of {first}" and d["tag"] == "jeans" for d in dropped)
    assert kept == [first] + ids["real"] + ids["jeans"]  # candidate order, real look-alike kept


def test_own_tag_filter_drops_exactly_the_images_under_the_threshold(lab, tiny_clip):
    store, ids = lab
    synthetic = ids["jeans"] + ids["shoes"]
    images = [store.get_image(i) for i in synthetic]
    probs = filtering.own_tag_probabilities(store, images, ["jeans", "shoes"], tiny_clip)
    # the same numbers straight from transformers' CLIPModel (image and text towers, one forward pass)
    import torch
    from transformers import AutoProcessor, CLIPModel

    model, processor = CLIPModel.from_pretrained(tiny_clip).eval(), AutoProcessor.from_pretrained(tiny_clip)
    inputs = processor(text=["a photo of jeans", "a photo of shoes"], images=[store.open_image(i) for i in synthetic],
                       return_tensors="pt", padding=True)
    with torch.inference_mode():
        reference = model(**inputs).logits_per_image.softmax(dim=1).numpy()
    own = [0] * len(ids["jeans"]) + [1] * len(ids["shoes"])
    assert np.allclose(probs, reference[np.arange(len(synthetic)), own], atol=1e-4)

    threshold = float(np.median(probs))
    kept, dropped = apply_filter(store, synthetic + ids["real"], FilterSpec(min_own_tag_probability=threshold,
                                                                          clip_model=tiny_clip))
    expected = {i for i, p in zip(synthetic, probs) if p < threshold}
    assert {d["id"] for d in dropped} == expected and 0 < len(expected) < len(synthetic)
    assert all(d["reason"].startswith("own-tag probability") for d in dropped)
    assert set(kept) == (set(synthetic) - expected) | set(ids["real"])


def test_the_own_tag_filter_needs_two_tags(lab, tiny_clip):
    store, ids = lab
    with pytest.raises(InvalidInput, match="at least two tags"):
        apply_filter(store, ids["jeans"], FilterSpec(min_own_tag_probability=0.5, clip_model=tiny_clip))


# -- as a slicing option -------------------------------------------------------------------------


def test_a_filtered_slice_excludes_the_dropped_images_and_says_why(lab):
    from core.data.slicing import SliceSpec, build_slices, get_slice

    store, ids = lab
    dedupe = FilterSpec(drop_near_duplicates=True)
    plain = build_slices(store, SliceSpec(name="plain", counts=(4,), tags=("jeans",), seed=3))[0]
    filtered = build_slices(store, SliceSpec(name="dedup", counts=(4,), tags=("jeans",), seed=3, filter=dedupe))[0]
    first = min(ids["cluster"])  # slicing offers candidates in id order: the smallest id is kept
    dropped = set(ids["cluster"]) - {first}
    assert not dropped & set(filtered["images"]) and len(filtered["images"]) == 4
    assert set(filtered["images"]) == {first, *ids["jeans"]}
    assert filtered["spec"]["filter"]["drop_near_duplicates"] is True and "filter" not in plain["spec"]
    assert {d["id"] for d in filtered["filtered"]} == dropped
    assert all("near-duplicate" in d["reason"] for d in filtered["filtered"])
    again = get_slice(store, filtered["id"])
    assert again["filtered"] == filtered["filtered"] and again["spec"] == filtered["spec"]
    assert again["hash"] == filtered["hash"] != plain["hash"]


def test_the_filter_is_part_of_the_slice_hash_even_when_members_match(lab):
    from core.data.slicing import SliceSpec, build_slices

    store, ids = lab
    spec = dict(counts=(2,), tags=("shoes",), seed=0)
    plain = build_slices(store, SliceSpec(name="same", **spec))[0]
    deduped = build_slices(store, SliceSpec(name="same", filter=FilterSpec(drop_near_duplicates=True), **spec))[0]
    assert plain["images"] == deduped["images"] and deduped["filtered"] == []
    assert plain["hash"] != deduped["hash"] and plain["id"] != deduped["id"]
    assert build_slices(store, SliceSpec(name="same", filter=FilterSpec(drop_near_duplicates=True), **spec))[0][
        "id"] == deduped["id"]


def test_too_few_images_after_the_filter_is_refused_and_writes_nothing(lab):
    from core.data.slicing import SliceSpec, build_slices

    store, ids = lab
    with pytest.raises(NotEnoughImages, match="jeans"):
        build_slices(store, SliceSpec(name="big", counts=(5,), tags=("jeans",),
                                      filter=FilterSpec(drop_near_duplicates=True)))
    assert store.query("SELECT * FROM slices") == [] and store.query("SELECT * FROM slice_filtered") == []


def test_a_zero_shot_filtered_slice_pins_the_clip_model_in_its_spec(lab, tiny_clip):
    from core.data.slicing import SliceSpec, build_slices

    store, ids = lab
    synthetic = [store.get_image(i) for i in ids["jeans"] + ids["shoes"]]
    probs = filtering.own_tag_probabilities(store, synthetic, ["jeans", "shoes"], tiny_clip)
    threshold = float(np.sort(probs)[1] + 1e-6)  # drops the two least convincing images
    spec = SliceSpec(name="zs", counts=(2,), tags=("jeans", "shoes"), seed=0,
                     filter=FilterSpec(min_own_tag_probability=threshold, clip_model=tiny_clip))
    built = build_slices(store, spec)[0]
    recorded = built["spec"]["filter"]
    assert recorded["clip_model"] == tiny_clip and recorded["min_own_tag_probability"] == threshold
    assert recorded["clip_revision"] and recorded["drop_near_duplicates"] is False
    low = {im["id"] for im, p in zip(synthetic, probs) if p < threshold}
    assert {d["id"] for d in built["filtered"]} == low and not low & set(built["images"])
