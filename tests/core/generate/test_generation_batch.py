"""The default batch size is chosen by device when the job runs (4 on CPU, measured by bench/generation.py)."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.generate.generation import generate
from core.generate.pipelines import default_batch_size
from core.generate.planning import GenerationSpec


def test_default_batch_size_by_device_and_setting(monkeypatch):
    monkeypatch.delenv("SYNTHLAB_BATCH_SIZE", raising=False)
    assert default_batch_size("cpu") == 4 and default_batch_size("mps") == 2
    monkeypatch.setenv("SYNTHLAB_BATCH_SIZE", "3")
    assert default_batch_size("cpu") == 3
    monkeypatch.setenv("SYNTHLAB_BATCH_SIZE", "many")
    with pytest.raises(InvalidInput, match="SYNTHLAB_BATCH_SIZE must be a whole number"):
        default_batch_size("cpu")


def test_a_spec_without_batch_size_runs_with_the_device_default(store, tiny_sd, monkeypatch):
    monkeypatch.delenv("SYNTHLAB_BATCH_SIZE", raising=False)
    monkeypatch.setenv("SYNTHLAB_DEVICE", "cpu")
    store.add_tag("jeans", "blue jeans")
    result = generate(store, GenerationSpec(tag="jeans", count=5, model=tiny_sd, steps=1, width=64, height=64))
    assert result["generated"] == 5
    sizes = [store.get_image(i)["provenance"]["batch_size"] for i in result["images"]]
    assert sizes == [4] * 5
