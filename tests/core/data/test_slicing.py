"""Slices: nesting, determinism, repeats, real fraction, exclusions, validation, reuse, export."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from core.data import slice_export, slicing
from core.data.slicing import SliceSpec, build_slices
from core.errors import InvalidInput, NotEnoughImages, NotFound, UnknownTag
from core.store.database import Store

TAGS = ("jeans", "shoes")


def tiny(tag: str, source: str, i: int, side: int = 20) -> Image.Image:
    """A distinct tiny image per (tag, source, i)."""
    base = {"jeans": 0, "shoes": 100}[tag] + {"synthetic": 0, "real": 40, "test": 80}[source]
    return Image.new("RGB", (side, side), (base + i, i * 3 % 256, 7))


def fill(store: Store, synthetic: int = 30, real: int = 25, test: int = 4, order=1) -> dict:
    """Tags jeans and shoes with synthetic, real and test images; returns ids by (tag, source)."""
    ids: dict[tuple[str, str], list[str]] = {}
    for tag in TAGS:
        store.add_tag(tag, f"a photo of {tag}")
    jobs = [(t, s, i) for t in TAGS for s, n in (("synthetic", synthetic), ("real", real), ("test", test))
            for i in range(n)]
    for tag, source, i in jobs[::order]:
        extra = {"seed": i, "prompt": f"a photo of {tag}", "model_id": "tiny-sd", "steps": 2} if source == "synthetic" else {}
        image_id, _ = store.add_image(tiny(tag, source, i), tag=tag, source=source, **extra)
        ids.setdefault((tag, source), []).append(image_id)
    return ids


@pytest.fixture
def filled(store):
    return fill(store)


def by_key(slices):
    return {(s["size"], s["repeat"], s["count_per_tag"]): s for s in slices}


def test_slices_nest_within_a_repeat_and_repeats_differ(store, filled):
    slices = build_slices(store, SliceSpec("sweep", (5, 10, 20), repeats=3, seed=7))
    assert len(slices) == 9 and all(s["created"] for s in slices)
    k = by_key(slices)
    for r in range(3):
        small, mid, big = (set(k[(None, r, n)]["images"]) for n in (5, 10, 20))
        assert small < mid < big
        assert len(small) == 10 and len(big) == 40
    assert k[(None, 0, 10)]["images"] != k[(None, 1, 10)]["images"] != k[(None, 2, 10)]["images"]
    assert len({s["hash"] for s in slices}) == 9


def test_every_member_has_the_right_tag_count_and_never_test_or_rejected(store, filled):
    rejected = filled[("jeans", "synthetic")][:10]
    for image_id in rejected:
        store.set_rejected(image_id)
    (s,) = build_slices(store, SliceSpec("all", (20,), real_fraction=0.5))
    members = slicing.slice_members(store, s["id"])
    assert [m["id"] for m in members] == s["images"]
    assert {m["source"] for m in members} == {"real", "synthetic"}
    assert not set(s["images"]) & set(rejected)
    assert not set(s["images"]) & set(filled[("jeans", "test")] + filled[("shoes", "test")])
    assert s["composition"] == {t: {"real": 10, "synthetic": 10} for t in TAGS}
    # only 20 unrejected synthetic jeans remain: all of them are needed for n=30 at f=1/3 → 20 synthetic
    (s30,) = build_slices(store, SliceSpec("all30", (30,), real_fraction=1 / 3))
    assert set(filled[("jeans", "synthetic")][10:]) <= set(s30["images"])


@pytest.mark.parametrize("count, fraction, real", [(10, 0.3, 3), (5, 0.5, 3), (20, 1.0, 20), (20, 0.0, 0),
                                                   (7, 0.25, 2), (10, 0.7, 7)])
def test_real_fraction_is_exact(store, filled, count, fraction, real):
    (s,) = build_slices(store, SliceSpec("mix", (count,), real_fraction=fraction))
    for tag in TAGS:
        assert s["composition"][tag] == {"real": real, "synthetic": count - real}
    members = slicing.slice_members(store, s["id"])
    assert sum(m["source"] == "real" for m in members) == 2 * real


def test_real_and_synthetic_parts_nest_too(store, filled):
    slices = build_slices(store, SliceSpec("mixnest", (4, 9, 15), real_fraction=0.4))
    members = [{m["id"]: m["source"] for m in slicing.slice_members(store, s["id"])} for s in slices]
    for smaller, larger in zip(members, members[1:]):
        assert set(smaller) <= set(larger)


def test_determinism_across_homes_and_insertion_order(tmp_path):
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    fill(a)
    fill(b, order=-1)  # same images, inserted in reverse
    spec = SliceSpec("same", (3, 12), repeats=2, seed=3, real_fraction=0.25, size=64)
    sa, sb = build_slices(a, spec), build_slices(b, spec)
    assert [s["hash"] for s in sa] == [s["hash"] for s in sb]
    assert [s["images"] for s in sa] == [s["images"] for s in sb]
    other_seed = build_slices(a, SliceSpec("same", (3, 12), repeats=2, seed=4, real_fraction=0.25, size=64))
    assert [s["images"] for s in other_seed] != [s["images"] for s in sa]


def test_same_spec_same_hash_reused_not_duplicated(store, filled):
    spec = SliceSpec("again", (5, 10), repeats=2)
    first = build_slices(store, spec)
    again = build_slices(store, spec)
    assert [s["id"] for s in first] == [s["id"] for s in again]
    assert [s["hash"] for s in first] == [s["hash"] for s in again]
    assert not any(s["created"] for s in again)
    # a larger sweep reuses what exists and adds the rest
    more = build_slices(store, SliceSpec("again", (5, 10, 15), repeats=3))
    assert sum(s["created"] for s in more) == 5
    assert store.query_one("SELECT COUNT(*) AS n FROM slices")["n"] == 9
    assert store.query_one("SELECT COUNT(*) AS n FROM slice_images")["n"] == 2 * (3 * (5 + 10 + 15))


def test_sizes_keep_members_and_change_the_hash(store, filled):
    big, small = slicing.build_sweep(store, slicing.sweep("px", (5,), (1024, 256)))
    assert big["images"] == small["images"] and big["hash"] != small["hash"]
    assert (big["size"], small["size"]) == (1024, 256)


def test_not_enough_images_names_tag_source_and_numbers_and_writes_nothing(store, filled):
    with pytest.raises(NotEnoughImages) as err:
        build_slices(store, SliceSpec("big", (5, 10, 40), real_fraction=0.75))
    message = str(err.value)
    assert "tag 'jeans' has 25 real images, a slice of 40 per tag at real fraction 0.75 needs 30" in message
    assert "synthetic" not in message  # 10 synthetic needed: enough
    with pytest.raises(NotEnoughImages) as err:
        build_slices(store, SliceSpec("big", (5, 10, 40), real_fraction=1.0))
    message = str(err.value)
    assert "\n" not in message
    assert "tag 'jeans' has 25 real images, a slice of 40 per tag at real fraction 1 needs 40" in message
    assert "tag 'shoes' has 25 real images" in message
    assert store.query_one("SELECT COUNT(*) AS n FROM slices")["n"] == 0
    # a multi-size sweep is all or nothing too
    with pytest.raises(NotEnoughImages, match="31 per tag"):
        slicing.build_sweep(store, slicing.sweep("big", (5, 31), (256, 128)))
    assert store.query_one("SELECT COUNT(*) AS n FROM slices")["n"] == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"name": " "}, "slice name is empty"),
    ({"name": "x" * 101}, "longer than 100"),
    ({"counts": ()}, "at least one count"),
    ({"counts": (0, 5)}, "from 1 to 100000"),
    ({"counts": (100_001,)}, "from 1 to 100000"),
    ({"counts": (2.5,)}, "from 1 to 100000"),
    ({"size": 15}, "between 16 and 4096"),
    ({"size": 4097}, "between 16 and 4096"),
    ({"fit": "zoom"}, "fit must be one of"),
    ({"resample": "fancy"}, "resample must be one of"),
    ({"real_fraction": 1.5}, "between 0 and 1"),
    ({"real_fraction": -0.1}, "between 0 and 1"),
    ({"real_fraction": float("nan")}, "between 0 and 1"),
    ({"repeats": 0}, "from 1 to 100"),
    ({"repeats": 101}, "from 1 to 100"),
    ({"seed": 1.5}, "seed must be a whole number"),
])
def test_invalid_specs(store, kwargs, message):
    store.add_tag("jeans")
    spec = SliceSpec(**{"name": "ok", "counts": (5,), **kwargs})
    with pytest.raises(InvalidInput, match=message):
        build_slices(store, spec)
    with pytest.raises(InvalidInput, match=message):
        slicing.plan_warnings(store, spec)
    assert store.query_one("SELECT COUNT(*) AS n FROM slices")["n"] == 0


def test_tags_subset_and_unknown_tag(store, filled):
    (s,) = build_slices(store, SliceSpec("jeans only", (5,), tags=("jeans",)))
    assert set(s["composition"]) == {"jeans"} and s["spec"]["tags"] == ["jeans"]
    with pytest.raises(UnknownTag, match="pants"):
        build_slices(store, SliceSpec("x", (5,), tags=("jeans", "pants")))


def test_empty_store(store):
    with pytest.raises(InvalidInput, match="no tags yet"):
        build_slices(store, SliceSpec("x", (5,)))


def test_a_changed_store_never_changes_a_named_slice(store, filled):
    (old,) = build_slices(store, SliceSpec("frozen", (10,)))
    for i in range(30, 60):
        store.add_image(tiny("jeans", "synthetic", i), tag="jeans", source="synthetic", seed=i)
    with pytest.raises(InvalidInput, match="already exists .* with other images"):
        build_slices(store, SliceSpec("frozen", (10,)))
    assert slicing.get_slice(store, old["id"])["images"] == old["images"]
    (new,) = build_slices(store, SliceSpec("frozen-2", (10,)))
    assert new["hash"] != old["hash"]


def test_get_resolve_and_list(store, filled):
    sweep = build_slices(store, SliceSpec("named", (5, 10), repeats=2))
    build_slices(store, SliceSpec("single", (5,)))
    first = sweep[0]
    assert slicing.get_slice(store, first["id"]) == {k: v for k, v in first.items() if k != "created"}
    assert slicing.get_slice(store, str(first["id"]))["hash"] == first["hash"]
    assert slicing.get_slice(store, first["hash"])["id"] == first["id"]
    assert slicing.get_slice(store, first["hash"][:10])["id"] == first["id"]
    assert slicing.get_slice(store, "single")["count_per_tag"] == 5
    with pytest.raises(InvalidInput, match="names 4 slices"):
        slicing.get_slice(store, "named")
    with pytest.raises(NotFound, match="no slice 'nope'"):
        slicing.get_slice(store, "nope")
    with pytest.raises(NotFound):
        slicing.get_slice(store, 999)
    resolved = slicing.resolve_slices(store, ["named", str(first["id"]), "single"])
    assert [(s["repeat"], s["count_per_tag"]) for s in resolved[:4]] == [(0, 5), (0, 10), (1, 5), (1, 10)]
    assert len(resolved) == 5 and resolved[-1]["name"] == "single"
    with pytest.raises(NotFound):
        slicing.resolve_slices(store, ["named", "missing"])
    assert [s["name"] for s in slicing.list_slices(store)] == ["named"] * 4 + ["single"]
    assert len(slicing.list_slices(store, "named")) == 4
    table = slicing.slice_table(store)
    assert table[0]["jeans · synthetic"] == 5 and table[0]["shoes · real"] == 0 and table[0]["size"] == "original"


def test_plan_warnings(store, filled):
    # the only note at 256 px: the fixture's 20 px synthetic images would be upscaled (its planted truth)
    (note,) = slicing.plan_warnings(store, SliceSpec("ok", (5, 10), size=256))
    assert note.startswith("60 synthetic image(s) are at most 20 px and will be upscaled to 256 px")
    assert not any("upscaled" in w for w in slicing.plan_warnings(store, SliceSpec("ok", (5, 10), size=20)))
    assert slicing.upscale_note(store, 256, ["jeans", "shoes"], real_fraction=1.0) is None  # real-only: no note
    warnings = slicing.plan_warnings(store, SliceSpec("w", (3, 40), size=128, real_fraction=1.0))
    text = "\n".join(warnings)
    assert "tag 'jeans' has 25 real images, a slice of 40 per tag at real fraction 1 needs 40" in text
    assert "at least 5 images per tag; count 3" in text
    assert "at least 256 px" in text and "size 128" in text
    original = slicing.plan_warnings(store, SliceSpec("w", (5,)))
    assert any("110 candidate images are under 256 px" in w for w in original)  # 2 tags × (30 + 25), all 20 px
    store.add_tag("hats")
    assert any("no test photos for 'hats'" in w for w in slicing.plan_warnings(store, SliceSpec("w", (5,))))


def test_azure_floors_are_left_out_for_the_local_backend(store, filled):
    spec = SliceSpec("w", (3, 40), size=128, real_fraction=1.0)
    local = slicing.plan_warnings(store, spec, azure=False)
    assert not any("Azure" in w for w in local)
    assert any("has 25 real images" in w for w in local)  # the shortage still shows
    assert len(slicing.plan_warnings(store, spec)) == len(local) + 2


def test_preset_and_parsers(store, filled):
    preset = slicing.EXPERIMENT_PRESET
    assert preset["counts"] == (10, 30, 50, 120, 170, 200) and preset["sizes"] == (1024, 256)
    specs = slicing.sweep(preset["name"], preset["counts"], preset["sizes"])
    assert [s.size for s in specs] == [1024, 256] and specs[0].counts == preset["counts"]
    assert slicing.parse_ints("10, 30 50;120") == (10, 30, 50, 120)
    assert slicing.parse_sizes("") == (None,) and slicing.parse_sizes("1024, original") == (1024, None)
    with pytest.raises(InvalidInput, match="counts must be whole numbers"):
        slicing.parse_ints("10, ten")
    with pytest.raises(InvalidInput, match="sizes must be whole numbers"):
        slicing.parse_sizes("big")


def test_export_reads_back_as_an_imagefolder_dataset(store, filled, tmp_path):
    import datasets

    (s,) = build_slices(store, SliceSpec("export me", (6,), size=32, real_fraction=0.5))
    out = slice_export.export_slice(store, s["id"], tmp_path / "exports")
    assert out == tmp_path / "exports.zip" and zipfile.is_zipfile(out)  # ".zip" added to a bare name
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(out) as z:
        names = sorted(z.namelist())
        z.extractall(folder)
    assert names[-1] == "train/shoes/" + sorted(
        m["id"] for m in slicing.slice_members(store, s["id"]) if m["tag"] == "shoes")[-1] + ".png"
    assert "train/metadata.parquet" in names and len(names) == 13
    tags = {m["id"]: m["tag"] for m in slicing.slice_members(store, s["id"])}
    ds = datasets.load_dataset("imagefolder", data_dir=str(folder), cache_dir=str(tmp_path / "hf"))["train"]
    assert ds.num_rows == 12
    names = ds.features["label"].names
    assert names == ["jeans", "shoes"]  # an image-classification set: label is a ClassLabel of the tags
    assert ds.features["seed"] == datasets.Value("int64") and ds.features["guidance"] == datasets.Value("float64")
    for row in ds:
        assert names[row["label"]] == tags[row["image_id"]]
        assert row["image"].size == (32, 32)
        assert row["slice_hash"] == s["hash"]
        if row["source"] == "synthetic":
            assert row["model_id"] == "tiny-sd" and row["prompt"] == f"a photo of {names[row['label']]}"
            assert isinstance(row["seed"], int)
        else:
            assert row["seed"] is None
    assert [names[i] for i in ds["label"]] == [tags[i] for i in ds["image_id"]]
    # an existing folder gets a named zip inside it; the same slice exports to the same bytes
    (tmp_path / "dir").mkdir()
    again = slice_export.export_slice(store, s["hash"][:8], tmp_path / "dir")
    assert again.parent == tmp_path / "dir" and again.name.startswith("export_me-n6-32px-r0-")
    assert again.read_bytes() == out.read_bytes() == slice_export.export_bytes(store, s["id"])
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_real_only_export_has_typed_generation_columns(store, filled, tmp_path):
    import datasets

    (s,) = build_slices(store, SliceSpec("real only", (3,), size=16, real_fraction=1.0))
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(slice_export.export_slice(store, s["id"], tmp_path / "real.zip")) as z:
        z.extractall(folder)
    ds = datasets.load_dataset("imagefolder", data_dir=str(folder), cache_dir=str(tmp_path / "hf"))["train"]
    assert ds.features["label"].names == ["jeans", "shoes"]
    for column in ("model_id", "prompt", "negative_prompt", "scheduler", "model_revision"):
        assert ds.features[column] == datasets.Value("string"), column  # typed, not null-typed
    for column in ("seed", "steps"):
        assert ds.features[column] == datasets.Value("int64"), column
    assert set(ds["source"]) == {"real"} and set(ds["seed"]) == {None}


def test_export_of_an_unknown_slice_writes_nothing(store, filled, tmp_path):
    with pytest.raises(NotFound):
        slice_export.export_slice(store, "deadbeef00", tmp_path / "x.zip")
    assert list(tmp_path.iterdir()) == [store.root]


def test_member_image_uses_the_slice_size(store, filled):
    (s,) = build_slices(store, SliceSpec("px", (2,), size=16, fit="pad"))
    image = slicing.member_image(store, s, s["images"][0])
    assert image.size == (16, 16)
    meta = json.loads(store.query_one("SELECT spec FROM slices WHERE id = ?", (s["id"],))["spec"])
    assert meta["fit"] == "pad" and meta["size"] == 16 and Path(store.cache_dir / "resized" / "16-pad-lanczos").is_dir()
