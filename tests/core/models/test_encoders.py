"""Encoder resolution and the embedding cache, on the tiny random CLIP (no hub access)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.errors import ModelNotFound
from core.models import embedding_cache, encoder_ref, encoder_resolution, encoders
from core.models.embedding_cache import CacheStats, View


def test_resolve_pins_folder_revision_and_preprocessing(tiny_clip):
    ref = encoder_resolution.resolve_encoder(tiny_clip)
    assert ref.name == tiny_clip and ref.is_clip and ref.has_text
    assert ref.preprocessing["crop_size"] == {"height": 32, "width": 32}
    again = encoder_resolution.resolve_encoder(tiny_clip + "/")
    assert again.key == ref.key and len(ref.key) == 24


def test_unknown_encoders_are_model_not_found(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist"):
        encoder_resolution.resolve_encoder(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="no config.json"):
        encoder_resolution.resolve_encoder(str(tmp_path / "empty"))
    with pytest.raises(ModelNotFound, match="is not a local folder and is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"):
        encoder_resolution.resolve_encoder("synthlab-tests/no-such-model")  # HF_HUB_OFFLINE=1 in conftest


def test_vision_tower_from_a_full_clip_checkpoint_matches_clip_image_features(tiny_clip):
    import torch
    from transformers import CLIPModel

    ref = encoder_resolution.resolve_encoder(tiny_clip)
    pictures = [Image.new("RGB", (48, 40), c) for c in ("red", "navy", "white")]
    ours = encoders.embed(ref, pictures, device="cpu")
    full = CLIPModel.from_pretrained(tiny_clip).eval()
    with torch.inference_mode():
        pv = encoders.pixel_values(ref, pictures, "cpu")
        theirs = full.get_image_features(pixel_values=pv).pooler_output.numpy()
    assert ours.shape == (3, 16)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_embedding_cache_embeds_each_image_once_per_view(digits, tiny_clip):
    ref = encoder_resolution.resolve_encoder(tiny_clip)
    images = digits.list_images(tag="zero", source="real")[:10]
    first, second, other = CacheStats(), CacheStats(), CacheStats()
    a = embedding_cache.embed_images(digits, ref, images, View(32), stats=first)
    b = embedding_cache.embed_images(digits, ref, images + images[:3], View(32), stats=second)
    assert (first.misses, first.hits) == (10, 0)
    assert (second.misses, second.hits) == (0, 10)
    np.testing.assert_array_equal(a, b[:10])
    np.testing.assert_array_equal(b[10:], a[:3])
    embedding_cache.embed_images(digits, ref, images, View(48), stats=other)
    assert other.misses == 10
    rows = digits.query("SELECT size, COUNT(*) AS n FROM embeddings GROUP BY size ORDER BY size")
    assert rows == [{"size": 32, "n": 10}, {"size": 48, "n": 10}]
    assert embedding_cache.clear_cache(digits, ref) == 20


def test_cached_vectors_equal_fresh_embeddings_of_the_resized_pixels(digits, tiny_clip):
    ref = encoder_resolution.resolve_encoder(tiny_clip)
    image = digits.list_images(tag="two", source="test")[0]
    cached = embedding_cache.embed_images(digits, ref, [image], View(32))[0]
    fresh = encoders.embed(ref, [encoders.load_image(digits, image, 32)])[0]
    np.testing.assert_allclose(cached, fresh, rtol=1e-6)


def test_an_image_outside_the_store_is_read_from_its_path(digits, tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (80, 60), "green").save(path)
    picture = encoders.load_image(digits, {"id": "f" * 64, "path": str(path)}, 32)
    assert picture.size == (32, 32) and picture.getpixel((5, 5)) == (0, 128, 0)


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> str:
    """A tiny random ViT (not CLIP): loads through AutoModel, pooled by its pooler."""
    import torch
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    model = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=48))
    with encoder_ref.quiet_transformers():
        model.save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def test_any_hf_image_encoder_loads_through_automodel(digits, tiny_vit):
    from core.errors import InvalidInput
    from core.train.backends.registry import get_trainer
    from core.train.training import train

    ref = encoder_resolution.resolve_encoder(tiny_vit)
    assert (ref.model_type, ref.is_clip, ref.has_text) == ("vit", False, False)
    assert type(encoders.load_vision_model(ref)).__name__ == "ViTModel"
    assert encoders.embed(ref, [Image.new("RGB", (40, 30), "red")]).shape == (1, 24)
    runs = train(digits, ["2"], params={"encoder": tiny_vit})
    assert runs[0]["status"] == "done"
    with pytest.raises(InvalidInput, match="zero-shot needs a full CLIP model"):
        get_trainer("local").validate(digits, {"encoder": tiny_vit, "mode": "zeroshot"})
