"""Diagnostics that scale (scaled down from bench/diagnostics.py's 20 000 images): a whole ``diagnose``
process stays well under 1.5 GB, and a second run on the unchanged store computes nothing again."""

from __future__ import annotations

import pytest

from bench.diagnostics import RSS_TARGET, TAG, build_store, run_diagnose
from core.run import jobs
from core.store.database import Store

IMAGES = 600


@pytest.mark.slow
def test_a_second_diagnosis_of_an_unchanged_store_only_reads_caches(tmp_path, tiny_clip):
    home = build_store(tmp_path / "home", IMAGES, px=32)
    cold = run_diagnose(home, tiny_clip, "32", timeout=600)
    warm = run_diagnose(home, tiny_clip, "32", timeout=600)
    assert cold["peak_rss"] < RSS_TARGET and warm["peak_rss"] < RSS_TARGET
    first, second = cold["result"], warm["result"]
    assert first["cache"]["embeddings"]["misses"] == first["cache"]["pixel_features"]["misses"] == IMAGES
    assert first["cache"]["signatures"]["misses"] == IMAGES and first["cache"]["duplicate_searches_cached"] == 0
    cache = second["cache"]
    assert cache["embeddings"] == {"hits": IMAGES, "misses": 0}
    assert cache["pixel_features"] == {"hits": IMAGES, "misses": 0}
    assert cache["signatures"]["misses"] == 0 and cache["duplicate_searches_cached"] == 1
    for key in ("auc", "auc_ci", "pixel_auc", "pixel_auc_ci", "duplicate_clusters", "diversity", "frechet"):
        assert second["tags"][TAG][key] == first["tags"][TAG][key]
    assert first["tags"][TAG]["counts"] == {"synthetic": IMAGES // 2, "real": IMAGES // 2}
    store = Store(home)
    done = [j for j in jobs.list_jobs(store, kind="diagnose")]
    assert len(done) == 2 and all(j["status"] == "done" and j["total"] > 0 and j["done"] == j["total"] for j in done)
    store.close()
