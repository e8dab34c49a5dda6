"""The original experiment as a preset (its arms cut where the store has the images) and the overview's
checklist of the four steps with its next action, on the real clothing sample."""

from __future__ import annotations

import pytest
from PIL import Image

from core.data import slicing
from core.data.samples import load_clothing_sample
from core.errors import NotEnoughImages, UserError
from core.flows import experiment
from core.train import training

SMALL = experiment.PRESET.narrowed(counts=(4, 8), sizes=(32,), repeats=2)


def _counts(store) -> tuple:
    return tuple(store.query_one(f"SELECT COUNT(*) AS n FROM {t}")["n"] for t in ("tags", "images", "slices", "runs"))


def test_the_preset_is_the_original_experiment():
    p = experiment.PRESET
    assert p.tags == ("jeans", "shoes", "shirts", "other")
    assert p.counts == (10, 30, 50, 120, 170, 200) and p.sizes == (1024, 256) and p.repeats == 3
    assert [(a.name, a.real_fraction) for a in p.arms] == [("experiment", 0.0), ("experiment-real", 1.0)]
    specs = experiment.arm_specs(p, p.arms[1])
    assert [(s.size, s.real_fraction, s.repeats, s.counts) for s in specs] == [
        (1024, 1.0, 3, p.counts), (256, 1.0, 3, p.counts)]


def test_the_checklist_walks_from_an_empty_store_to_results(store):
    state = experiment.status(store)
    assert [s.key for s in state["steps"]] == ["data", "slice", "train", "results"]
    assert not any(s.done for s in state["steps"]) and state["next"].action == "sample"

    load_clothing_sample(store, per_tag=10, test_per_tag=4, size=64)
    state = experiment.status(store)
    assert state["steps"][0].done and "jeans: 10 real, 4 test" in state["steps"][0].detail
    assert state["next"].action == "cut"

    out = experiment.cut_preset(store, SMALL)
    assert out["arms"] == {"experiment-real": {"slices": 4, "created": 4}}
    assert "synthetic" in out["skipped"]["experiment"]  # no synthetic images yet: only the baseline is cut
    assert all(s["real_fraction"] == 1.0 for s in out["built"])
    state = experiment.status(store)
    assert state["steps"][1].done and state["next"].action == "train"
    assert state["untrained"] == ["experiment-real"]

    training.train(store, ["experiment-real"], params={"encoder": "cnn-small", "epochs": 1})
    state = experiment.status(store)
    assert state["steps"][2].done and not state["steps"][3].done and state["pending"] == 4
    assert state["next"].page == experiment.PAGES["train"]  # runs wait to be scored


def test_with_synthetic_images_both_arms_are_cut(store):
    load_clothing_sample(store, per_tag=8, test_per_tag=2, size=64)
    for n, image in enumerate(store.list_images(source="real")):  # planted: a synthetic twin of each photo
        picture = store.open_image(image["id"]).rotate(90)
        store.add_image(picture, tag=image["tag"], source="synthetic", extra={"planted": n})
    out = experiment.cut_preset(store, SMALL)
    assert out["skipped"] == {} and set(out["arms"]) == {"experiment", "experiment-real"}
    by_arm = {name: [s for s in out["built"] if s["name"] == name] for name in out["arms"]}
    assert {s["real_fraction"] for s in by_arm["experiment"]} == {0.0}
    for s in by_arm["experiment"]:
        assert {m["source"] for m in slicing.slice_members(store, s["id"])} == {"synthetic"}


def test_a_preset_the_store_cannot_hold_changes_nothing(store):
    with pytest.raises(UserError, match="the preset's tags jeans, shoes, shirts, other are missing"):
        experiment.cut_preset(store, SMALL)
    load_clothing_sample(store, per_tag=5, test_per_tag=1, size=64)
    before = _counts(store)
    with pytest.raises(NotEnoughImages, match="no arm of the preset could be cut"):
        experiment.cut_preset(store, experiment.PRESET.narrowed(counts=(50,), sizes=(32,), repeats=1))
    assert _counts(store) == before and store.integrity_check() == "ok"


def test_preset_tags_get_their_prompts(store):
    store.add_tag("jeans")  # exists without a prompt
    changed = experiment.add_preset_tags(store)
    assert changed == ["jeans", "shoes", "shirts", "other"]
    assert all("product photo" in t["prompt"] for t in store.list_tags())
    assert experiment.add_preset_tags(store) == []  # nothing left to do


def test_image_counts_split_kept_and_rejected(store):
    store.add_tag("a")
    ids = [store.add_image(Image.new("RGB", (8, 8), (i, 0, 0)), tag="a", source="real")[0] for i in range(3)]
    store.set_rejected(ids[0])
    assert experiment.image_counts(store)["a"]["real"] == {"kept": 2, "rejected": 1}
    assert experiment.image_counts(store)["a"]["test"] == {"kept": 0, "rejected": 0}
