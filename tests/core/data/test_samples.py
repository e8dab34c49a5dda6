"""The clothing sample: real Fashion-MNIST photos as four tags, idempotent, and a clear refusal without a source."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from core.data.samples import load_clothing_sample
from core.errors import SampleUnavailable, UserError
from core.models import hub
from tests.datasets import fashion_arrays, fashion_available
from tests.reliability.conftest import assert_consistent, cli, snapshot

pytestmark = pytest.mark.skipif(not fashion_available(), reason="dataset-fashion-mnist is not installed (.ci/run)")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_source(tmp_path, monkeypatch):
    """No Debian files and a hub endpoint that refuses (a closed loopback port)."""
    empty = tmp_path / "no-fashion"
    empty.mkdir()
    monkeypatch.setenv("SYNTHLAB_FASHION_DIR", str(empty))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    hub.forget()
    yield empty
    hub.forget()


def test_sample_gives_four_tags_with_real_and_test_photos_and_provenance(store):
    result = load_clothing_sample(store, per_tag=6, test_per_tag=3, size=64)
    assert result["source"] == "debian"
    assert sorted(t["name"] for t in result["tags"]) == ["jeans", "other", "shirts", "shoes"]
    for tag in result["tags"]:
        assert tag["counts"] == {"synthetic": 0, "real": 6, "test": 3}
        assert tag["prompt"]
    assert result["imported"] == 4 * 9
    images = store.list_images(tag="jeans", source="test")
    prov = images[0]["provenance"]
    assert prov["dataset"] == "fashion-mnist" and prov["original_size"] == 28 and prov["class"] == "Trouser"
    assert images[0]["width"] == images[0]["height"] == 64
    # the stored photo is the Fashion-MNIST photo it names, upscaled
    pixels, labels = fashion_arrays(prov["split"])
    assert labels[prov["index"]] == 1
    small = np.asarray(store.open_image(images[0]["id"]).convert("L").resize((28, 28)), dtype=np.float64)
    assert np.corrcoef(small.ravel(), pixels[prov["index"]].astype(np.float64).ravel())[0, 1] > 0.95
    # real and test photos come from different splits, so they never overlap
    assert {im["provenance"]["split"] for im in store.list_images(source="real")} == {"train"}


def test_sample_twice_imports_nothing_new_and_keeps_edited_prompts(store):
    load_clothing_sample(store, per_tag=4, test_per_tag=2, size=32)
    store.add_tag("jeans", "my own jeans prompt", update=True)
    again = load_clothing_sample(store, per_tag=4, test_per_tag=2, size=32)
    assert again["imported"] == 0 and again["duplicates"] == 24 and again["created_tags"] == []
    assert store.get_tag("jeans")["prompt"] == "my own jeans prompt"
    assert store.count_images() == 24


def test_more_shoes_balances_sneakers_sandals_and_boots(store):
    load_clothing_sample(store, per_tag=6, test_per_tag=0, size=32, more_shoes=True)
    classes = [im["provenance"]["class"] for im in store.list_images(tag="shoes")]
    assert sorted(classes) == sorted(["Sneaker", "Sandal", "Ankle boot"] * 2)


def test_cli_sample_clothing_json(home):
    r = cli(home, "sample", "clothing", "--per-tag", "3", "--test-per-tag", "2", "--size", "48", "--json")
    assert r.code == 0, r.err
    out = r.json
    assert {t["name"]: t["counts"]["test"] for t in out["tags"]} == {"jeans": 2, "other": 2, "shirts": 2, "shoes": 2}
    assert out["imported"] == 20


def test_no_source_exits_2_naming_both_ways_and_writes_nothing(home, no_source):
    cli(home, "tags", "list")  # the store exists
    before = snapshot(home)
    r = cli(home, "sample", "clothing", "--json")
    assert r.code == 2
    line = r.error_line
    assert "dataset-fashion-mnist" in line and "zalando-datasets/fashion_mnist" in line
    assert "cannot be reached" in line and "HF_HUB_OFFLINE" not in line
    assert snapshot(home) == before
    assert_consistent(home)


def test_no_source_offline_says_hf_hub_offline(store, no_source, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SampleUnavailable, match="HF_HUB_OFFLINE is set") as info:
        load_clothing_sample(store, per_tag=2, test_per_tag=1)
    assert isinstance(info.value, UserError)
    assert store.tag_names() == [] and store.count_images() == 0


@pytest.mark.parametrize("kwargs", [{"per_tag": 0}, {"test_per_tag": -1}, {"size": 8}, {"per_tag": 2.5}])
def test_bad_sample_arguments_are_refused_before_writing(store, kwargs):
    with pytest.raises(UserError):
        load_clothing_sample(store, **kwargs)
    assert store.tag_names() == [] and store.count_images() == 0
