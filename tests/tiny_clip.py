"""A tiny random-weight CLIP (vision + text towers) saved like a hub checkpoint, for offline tests.

``build_tiny_clip(folder)`` writes a ``CLIPModel`` (model_type ``clip``), a ``CLIPImageProcessor`` and
the byte-level ``CLIPTokenizer`` of :mod:`tests.tiny_models` with ``save_pretrained``, so the real
loading paths run: ``CLIPVisionModelWithProjection.from_pretrained(folder)`` for the frozen encoder,
``CLIPModel`` + tokenizer for zero-shot. Weights are deterministic (``torch.manual_seed``).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.tiny_models import CLIP_MAX_LENGTH, write_byte_level_clip_tokenizer


def build_tiny_clip(folder: str | os.PathLike, *, image_size: int = 32, patch_size: int = 8, hidden: int = 32,
                    layers: int = 2, projection_dim: int = 16, heads: int | None = None, mlp_ratio: int = 2,
                    text_hidden: int | None = None, seed: int = 0) -> str:
    """Save a tiny random CLIP into ``folder`` and return its path.

    Defaults take a few milliseconds per 32 px image on a CPU. The vision tower's shape is
    configurable: the benchmark builds ViT-B/32's (224 px, 32 px patches, 768 wide, 12 layers, 12
    heads, MLP ×4) so a cold sweep costs what it costs with the default encoder, with a tiny text tower.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_byte_level_clip_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    heads = heads or max(hidden // 16, 2)
    text_hidden = text_hidden or hidden
    text_heads = heads if text_hidden == hidden else max(text_hidden // 16, 2)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": text_hidden,
            "intermediate_size": text_hidden * 2,
            "num_hidden_layers": layers if text_hidden == hidden else 2,
            "num_attention_heads": text_heads,
            "max_position_embeddings": CLIP_MAX_LENGTH,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "projection_dim": projection_dim,
        },
        vision_config={
            "hidden_size": hidden,
            "intermediate_size": hidden * mlp_ratio,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "image_size": image_size,
            "patch_size": patch_size,
            "projection_dim": projection_dim,
        },
        projection_dim=projection_dim,
    )
    from core.models.encoder_ref import quiet_transformers

    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
