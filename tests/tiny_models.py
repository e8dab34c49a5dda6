"""Tiny random-weight models built by the tests themselves, so no hub download ever happens.

They are saved with ``save_pretrained`` and loaded back with ``from_pretrained``: the real loading
path runs. Weights are deterministic (``torch.manual_seed``), so two builds give the same model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CLIP_MAX_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map (what byte-level BPE vocabularies use)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def byte_level_clip_vocab() -> dict[str, int]:
    """Every byte as a token, alone and as a word end (``</w>``), then the two special tokens."""
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab


def write_byte_level_clip_tokenizer(folder: str | os.PathLike) -> None:
    """Write a byte-level ``CLIPTokenizer`` (vocab.json, merges.txt, configs) into ``folder``.

    No merges: every word splits into bytes, so any text encodes without unknown tokens.
    Vocabulary size 514 (``<|startoftext|>`` = 512, ``<|endoftext|>`` = 513), ``model_max_length`` 77.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(byte_level_clip_vocab(), ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": CLIP_MAX_LENGTH,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
        "do_lower_case": True,
    }), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS,
    }), encoding="utf-8")


def _tiny_sd_components(unet_channels: tuple[int, ...], vae_channels: tuple[int, ...], text_hidden: int,
                        sample_size: int, tokenizer_dir: Path):
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    groups = min(min(unet_channels), 8)
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=unet_channels,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(unet_channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(unet_channels) - 1) + ("UpBlock2D",),
        cross_attention_dim=text_hidden,
        attention_head_dim=max(unet_channels[-1] // 8, 2),
        norm_num_groups=groups,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        block_out_channels=vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=min(min(vae_channels), 8),
        sample_size=sample_size * 2 ** (len(vae_channels) - 1),
    )
    write_byte_level_clip_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_hidden,
        intermediate_size=text_hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=text_hidden,
    ))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        timestep_spacing="trailing", steps_offset=1,
    )
    return unet, vae, text_encoder, tokenizer, scheduler


def build_tiny_sd(folder: str | os.PathLike, *, unet_channels: tuple[int, ...] = (8, 16),
                  vae_channels: tuple[int, ...] = (8, 8, 8, 8), text_hidden: int = 16,
                  sample_size: int = 8) -> str:
    """Save a tiny random ``StableDiffusionPipeline`` into ``folder`` and return its path.

    The VAE downsamples by 8 like real Stable Diffusion (64×64 px ↔ 8×8 latents); a 64 px image takes
    a few milliseconds per step on a CPU. Bigger channel tuples make a slower, still random model
    (the benchmark uses one so that generation dominates process start-up).
    """
    import tempfile

    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    with tempfile.TemporaryDirectory() as tok_dir:
        unet, vae, text_encoder, tokenizer, scheduler = _tiny_sd_components(
            tuple(unet_channels), tuple(vae_channels), text_hidden, sample_size, Path(tok_dir))
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
        )
        pipe.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def build_tiny_taesd(folder: str | os.PathLike) -> str:
    """Save a tiny random ``AutoencoderTiny`` (the TAESD architecture, 8× scale) into ``folder``."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    vae = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4,
    )
    vae.save_pretrained(folder, safe_serialization=True)
    return str(folder)
