"""bench/realistic.py's configs: the published architectures load, are consistent, and build (shrunken)."""

from __future__ import annotations

import json

import pytest

from bench import realistic


@pytest.mark.parametrize("arch", ["sd-turbo", "sd15", "sdxl"])
def test_published_configs_load_and_describe_the_real_architecture(arch):
    config = realistic.load_config(arch)
    unet = config["unet"]
    expected = {"sd-turbo": (1024, 512, [320, 640, 1280, 1280]), "sd15": (768, 512, [320, 640, 1280, 1280]),
                "sdxl": (2048, 1024, [320, 640, 1280])}[arch]
    assert (unet["cross_attention_dim"], config["native_px"], unet["block_out_channels"]) == expected
    assert unet["sample_size"] * 8 == config["native_px"]
    if arch == "sdxl":
        assert unet["transformer_layers_per_block"] == [1, 2, 10]
        assert unet["projection_class_embeddings_input_dim"] == 6 * unet["addition_time_embed_dim"] + \
            config["text_encoder_2"]["projection_dim"]
    if arch == "sd-turbo":
        assert config["published"]["seconds_per_image"] == 7.8 and config["steps"] == 1


def test_an_inconsistent_config_is_refused(tmp_path):
    config = realistic.load_config("sd15")
    config["unet"]["cross_attention_dim"] = 1024
    (tmp_path / "bad.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="cross_attention_dim 1024 is not the text encoders' width 768"):
        realistic.load_config("bad", tmp_path)


def test_a_shrunken_sd_turbo_builds_and_loads_as_a_synthlab_model(tmp_path):
    from core.models.generators import resolve_model

    small = realistic.shrink(realistic.load_config("sd-turbo"))
    assert small["unet"]["down_block_types"] == realistic.load_config("sd-turbo")["unet"]["down_block_types"]
    folder = realistic.build_pipeline(small, tmp_path / "model")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and index["unet"][1] == "UNet2DConditionModel"
    saved = json.loads((folder / "unet" / "config.json").read_text())
    assert saved["cross_attention_dim"] == small["text_encoder"]["hidden_size"]
    assert set(realistic.parameters(folder)) == {"unet", "vae", "text_encoder"}
    assert resolve_model(str(folder)).local


def test_shrinking_sdxl_keeps_its_conditioning_consistent():
    small = realistic.shrink(realistic.load_config("sdxl"))
    unet = small["unet"]
    assert unet["cross_attention_dim"] == small["text_encoder"]["hidden_size"] + small["text_encoder_2"]["hidden_size"]
    assert unet["projection_class_embeddings_input_dim"] == 6 * unet["addition_time_embed_dim"] + \
        small["text_encoder_2"]["projection_dim"]
    assert len(unet["transformer_layers_per_block"]) == 3
