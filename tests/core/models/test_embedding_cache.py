"""The embedding cache's in-memory scope (``held_in_memory``), on the tiny random CLIP: a sweep reads each
vector from the store once, gets exactly the stored values, and nothing outlives the scope."""

from __future__ import annotations

import numpy as np

from core.models import embedding_cache, encoder_resolution
from core.models.embedding_cache import CacheStats, View


def _reads(store) -> list[str]:
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    return statements


def test_a_held_scope_reads_each_vector_from_the_store_once(digits, tiny_clip):
    ref = encoder_resolution.resolve_encoder(tiny_clip)
    images = digits.list_images(tag="zero", source="real")[:10]
    stored = embedding_cache.embed_images(digits, ref, images, View(32))
    statements = _reads(digits)
    with embedding_cache.held_in_memory():
        first = embedding_cache.embed_images(digits, ref, images[:6], View(32))
        stats = CacheStats()
        second = embedding_cache.embed_images(digits, ref, images, View(32), stats=stats)
        with embedding_cache.held_in_memory():  # nested: the same memory
            third = embedding_cache.embed_images(digits, ref, images[:6], View(32))
    digits.conn.set_trace_callback(None)
    reads = [s for s in statements if "FROM embeddings" in s]
    assert len(reads) == 2  # the first six, then only the four not held yet
    assert reads[1].count("'") == 2 * 4 + 2  # four image ids (and the encoder key) in the second read
    assert (stats.hits, stats.misses) == (10, 0)
    np.testing.assert_array_equal(first, stored[:6])
    np.testing.assert_array_equal(second, stored)
    np.testing.assert_array_equal(third, stored[:6])


def test_nothing_outlives_the_scope_and_clearing_the_cache_drops_what_is_held(digits, tiny_clip):
    ref = encoder_resolution.resolve_encoder(tiny_clip)
    images = digits.list_images(tag="one", source="real")[:4]
    with embedding_cache.held_in_memory():
        embedding_cache.embed_images(digits, ref, images, View(32))
        assert embedding_cache.clear_cache(digits, ref) == 4
        again = CacheStats()
        embedding_cache.embed_images(digits, ref, images, View(32), stats=again)
        assert again.misses == 4  # computed again: not served from memory after the clear
    with digits.tx() as conn:
        conn.execute("DELETE FROM embeddings")
    after = CacheStats()
    embedding_cache.embed_images(digits, ref, images, View(32), stats=after)
    assert after.misses == 4  # the scope ended: the store is the truth again


def test_views_are_held_apart(digits, tiny_clip):
    ref = encoder_resolution.resolve_encoder(tiny_clip)
    images = digits.list_images(tag="two", source="real")[:3]
    with embedding_cache.held_in_memory():
        small = embedding_cache.embed_images(digits, ref, images, View(32))
        large = embedding_cache.embed_images(digits, ref, images, View(48))
    assert embedding_cache.cached_vectors(digits, ref, [images[0]["id"]], View(48))[images[0]["id"]].tolist() \
        == large[0].tolist()
    assert not np.array_equal(small, large)
