"""Generation parameters found inside images made by other tools, for ``import --source synthetic``.

Three places are read, in this order (later ones fill only what earlier ones left empty):

* AUTOMATIC1111 / Forge: the PNG text chunk ``parameters`` — the prompt, an optional ``Negative prompt:``
  line, then ``Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model: …``;
* ComfyUI: the PNG text chunk ``prompt``, the JSON graph the image was made from (``KSampler`` inputs,
  ``CLIPTextEncode`` texts wired to its positive/negative inputs, the checkpoint name);
* a JSON sidecar with the image's stem (``a.png`` + ``a.json``) holding an object.

:func:`parameters` returns ``(provenance, extra)``: ``provenance`` maps onto the store's provenance
columns (``prompt``, ``negative``, ``seed``, ``steps``, ``guidance``, ``scheduler``, ``model_id``),
``extra`` keeps what was found as found (size-capped), so nothing the tool wrote is lost.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

TEXT_CHUNKS = ("parameters", "prompt", "workflow")
MAX_RAW = 100_000
_INT64 = 2**63 - 1

_SIDECAR_KEYS = {
    "prompt": ("prompt", "positive_prompt", "positive"),
    "negative": ("negative_prompt", "negative", "negativePrompt"),
    "seed": ("seed",),
    "steps": ("steps", "num_inference_steps"),
    "guidance": ("guidance", "guidance_scale", "cfg_scale", "cfg"),
    "scheduler": ("scheduler", "sampler", "sampler_name"),
    "model_id": ("model", "model_id", "checkpoint", "ckpt_name"),
}


def parameters(text_chunks: dict[str, str], sidecar: Optional[bytes]) -> tuple[dict, dict]:
    """``(provenance, extra)`` from an image's text chunks and its sidecar's bytes (None: no sidecar)."""
    provenance: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    a1111 = text_chunks.get("parameters")
    if isinstance(a1111, str) and a1111.strip():
        extra["parameters"] = a1111[:MAX_RAW]
        _fill(provenance, parse_a1111(a1111))
    comfy = _json_object(text_chunks.get("prompt"))
    if comfy is not None:
        extra["comfyui_prompt"] = comfy
        _fill(provenance, parse_comfyui(comfy))
    if sidecar is not None:
        found = _json_object(sidecar.decode("utf-8", "replace") if len(sidecar) <= MAX_RAW else None)
        if found is not None:
            extra["sidecar"] = found
            _fill(provenance, {field: _first(found, keys) for field, keys in _SIDECAR_KEYS.items()})
    return _typed(provenance), extra


def parse_a1111(text: str) -> dict:
    """The fields of an A1111 ``parameters`` text (unknown keys are ignored)."""
    lines = text.strip().splitlines()
    settings: dict[str, str] = {}
    if lines and re.match(r"^\s*Steps:\s*\d", lines[-1]):
        for key, value in re.findall(r'\s*([\w \-/]+):\s*("(?:\\.|[^"])*"|[^,]*)(?:,|$)', lines.pop()):
            settings[key.strip()] = value.strip().strip('"')
    prompt, negative, into_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            into_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if into_negative else prompt).append(line)
    return {"prompt": "\n".join(prompt).strip() or None, "negative": "\n".join(negative).strip() or None,
            "seed": settings.get("Seed"), "steps": settings.get("Steps"), "guidance": settings.get("CFG scale"),
            "scheduler": settings.get("Sampler"), "model_id": settings.get("Model") or settings.get("Model hash")}


def parse_comfyui(graph: dict) -> dict:
    """Seed, steps, cfg, sampler, prompts and checkpoint from a ComfyUI API-format graph."""
    nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
    sampler = next((n for n in nodes.values() if "KSampler" in str(n.get("class_type", ""))), None)
    out: dict[str, Any] = {}
    if sampler is not None:
        inputs = sampler.get("inputs") or {}
        out.update(seed=inputs.get("seed", inputs.get("noise_seed")), steps=inputs.get("steps"),
                   guidance=inputs.get("cfg"), scheduler=inputs.get("sampler_name"))
        for field, link in (("prompt", inputs.get("positive")), ("negative", inputs.get("negative"))):
            node = nodes.get(str(link[0])) if isinstance(link, list) and link else None
            text = (node or {}).get("inputs", {}).get("text")
            if isinstance(text, str):
                out[field] = text
    checkpoint = next((n for n in nodes.values() if "ckpt_name" in (n.get("inputs") or {})), None)
    if checkpoint is not None:
        out["model_id"] = checkpoint["inputs"]["ckpt_name"]
    return out


def _json_object(text: Optional[str]) -> Optional[dict]:
    if not isinstance(text, str) or len(text) > MAX_RAW:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _first(found: dict, keys: tuple[str, ...]) -> Any:
    return next((found[k] for k in keys if found.get(k) not in (None, "")), None)


def _fill(into: dict, values: dict) -> None:
    for key, value in values.items():
        if value not in (None, "") and into.get(key) in (None, ""):
            into[key] = value


def _typed(values: dict) -> dict:
    """Provenance columns with the types the store keeps; a value that does not fit is dropped."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            if key in ("seed", "steps"):
                number = int(float(value)) if not isinstance(value, bool) else None
                if number is not None and 0 <= number <= _INT64:
                    out[key] = number
            elif key == "guidance":
                out[key] = float(value)
            elif isinstance(value, (str, int, float)):
                out[key] = str(value)[:10_000]
        except (TypeError, ValueError, OverflowError):
            continue
    return out
