"""The built-in generator ``fashion-mini``: where its folder is, its revision, and the prompts it knows.

A small latent diffusion model in diffusers' ``StableDiffusionPipeline`` format, trained by this project
on Fashion-MNIST training rows the clothing sample never uses (``scripts/train_fashion_mini.py``; the
folder's ``README.md`` is its model card). It loads through the same ``from_pretrained`` path as any
other model; only its name is resolved here, to the folder shipped beside this module.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

NAME = "fashion-mini"
LABEL = "fashion-mini (built-in, offline)"
FOLDER = Path(__file__).resolve().parent / "fashion_mini"
NATIVE_SIZE = 32
STEPS = 8
GUIDANCE = 3.0  # measured (bench/generator_quality.py): 6.0 drew each class too alike (diversity 0.66 of real's)
BATCH_SIZE = 64  # a 32 px image is cheap: one pipeline call makes 64 (batch 4 was 0.3 images/s under load)
CLASS_PROMPTS = (
    ("t-shirts", "a product photo of a {white|black|striped|gray} t-shirt"),
    ("jeans", "a product photo of {blue|black|light blue|ripped|faded} jeans, {folded|flat lay|on a hanger}, "
              "plain white background"),
    ("pullovers", "a product photo of a {knit|wool|gray|black} {pullover|sweater|jumper}"),
    ("dresses", "a product photo of a {summer|black|white|striped} dress"),
    ("coats", "a product photo of a {winter|black|gray|wool} {coat|jacket}"),
    ("sandals", "a product photo of {a pair of|one} {black|brown|strappy|summer} sandals"),
    ("shirts", "a product photo of a {plaid|white|denim|striped|linen} {button-up|flannel|casual} shirt, "
               "{folded|flat lay|on a hanger}, plain white background"),
    ("shoes", "a product photo of {a pair of|one} {white|black|running|canvas|leather} sneakers, "
              "{side view|top view}, plain white background"),
    ("bags", "a product photo of a {leather|canvas|tote|shoulder} bag, plain white background"),
    ("boots", "a product photo of {a pair of|one} {black|brown|leather|suede} ankle boots"),
)
"""One tag name and prompt per Fashion-MNIST class, in class order (0 T-shirt/top … 9 Ankle boot)."""


def is_builtin(model: str | None) -> bool:
    return (model or "").strip().lower() == NAME


def available() -> bool:
    """True when the shipped folder is whole (its model_index.json and the three weight files)."""
    return all((FOLDER / part).is_file() for part in (
        "model_index.json", "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"))


@lru_cache(maxsize=4)
def _digest(key: tuple) -> str:
    h = hashlib.sha256()
    for rel, _size, _mtime in key:
        h.update(rel.encode() + b"\0")
        with open(FOLDER / rel, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return "builtin-" + h.hexdigest()[:16]


def revision() -> str:
    """A hash of every file of the folder (content, not dates): what provenance records."""
    files = sorted(p for p in FOLDER.rglob("*") if p.is_file() and p.name != "README.md")
    return _digest(tuple((p.relative_to(FOLDER).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
