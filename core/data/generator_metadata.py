"""Generation parameters found inside images made by other tools, for ``import --source synthetic``: bounded, total parsers
of foreign metadata (A1111 text, ComfyUI graphs, JSON sidecars).

Whatever a file carries, reading its metadata must neither hang nor abort an import. So every parser here:

* caps its input (:data:`MAX_RAW` characters; more is cut, or the JSON is dropped, with a note);
* runs in time linear in that input: the A1111 settings line is split by one regular expression whose
  alternatives can always match at a token's first character (no backtracking over the line), and keys are
  checked from their end by hand; JSON is depth-checked by one forward scan before ``json.loads`` sees it;
* never recurses without a bound: JSON nested deeper than :data:`MAX_DEPTH` is refused before parsing;
* accepts any shape: a ComfyUI node whose ``inputs`` is a list, a string or null yields nothing, not an error.

:func:`parameters` is total: a source that fails anyway is dropped and named in ``extra["metadata_notes"]``,
and the image is imported with what the other sources gave. (EXIF/XMP orientation: :func:`core.store.imaging.upright`.)
"""

from __future__ import annotations

import json
import re
from typing import Any

TEXT_CHUNKS = ("parameters", "prompt", "workflow")
MAX_RAW = 100_000
MAX_DEPTH = 64
MAX_KEY = 100
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

# Every alternative matches at its first character: a quote always opens a (possibly unterminated) string
# that runs to its closing quote or the end, so no position is scanned twice.
_SETTING_TOKEN = re.compile(r'"(?:\\.?|[^"\\])*"?|[,:]|[^,:"]+')
_JSON_TOKEN = re.compile(r'"(?:\\.?|[^"\\])*"?|[\[\]{}]')
_STEPS_LINE = re.compile(r"[ \t]*Steps:[ \t]*\d")
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ -/")


class MetadataRefused(ValueError):
    """Metadata this module will not parse (too large, too deep, not an object); the message says why."""


def parameters(text_chunks: dict, sidecar: bytes | None) -> tuple[dict, dict]:
    """``(provenance, extra)`` from an image's text chunks and its sidecar's bytes (None: no sidecar).

    Never raises: a source that cannot be read is left out and ``extra["metadata_notes"]`` says which and why.
    """
    provenance: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    notes: list[str] = []
    chunks = text_chunks if isinstance(text_chunks, dict) else {}

    def read(label: str, work) -> None:
        try:
            work()
        except Exception as exc:  # noqa: BLE001 - foreign metadata must never abort an import
            notes.append(f"{label} dropped: {_reason(exc)}")

    def a1111() -> None:
        text = chunks.get("parameters")
        if isinstance(text, str) and text.strip():
            if len(text) > MAX_RAW:
                notes.append(f"A1111 parameters cut to {MAX_RAW:,} of {len(text):,} characters")
                text = text[:MAX_RAW]
            extra["parameters"] = text
            _fill(provenance, parse_a1111(text))

    def comfyui() -> None:
        text = chunks.get("prompt")
        if isinstance(text, str) and text.strip():
            graph = load_json_object(text)
            extra["comfyui_prompt"] = graph
            _fill(provenance, parse_comfyui(graph))

    def json_sidecar() -> None:
        if sidecar is None:
            return
        if len(sidecar) > MAX_RAW:
            raise MetadataRefused(f"larger than {MAX_RAW:,} bytes")
        found = load_json_object(sidecar.decode("utf-8", "replace"))
        extra["sidecar"] = found
        _fill(provenance, {field: _first(found, keys) for field, keys in _SIDECAR_KEYS.items()})

    read("A1111 parameters", a1111)
    read("ComfyUI prompt", comfyui)
    read("JSON sidecar", json_sidecar)
    try:
        typed = _typed(provenance)
    except Exception as exc:  # noqa: BLE001
        notes.append(f"generation parameters dropped: {_reason(exc)}")
        typed = {}
    if notes:
        extra["metadata_notes"] = notes
    return typed, extra


def parse_a1111(text: str) -> dict:
    """The fields of an A1111 ``parameters`` text (unknown keys are ignored), in time linear in its length."""
    lines = text[:MAX_RAW].strip().splitlines()
    settings: dict[str, str] = {}
    if lines and _STEPS_LINE.match(lines[-1]):
        settings = parse_settings_line(lines.pop())
    prompt: list[str] = []
    negative: list[str] = []
    into_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            into_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if into_negative else prompt).append(line)
    return {"prompt": "\n".join(prompt).strip() or None, "negative": "\n".join(negative).strip() or None,
            "seed": settings.get("Seed"), "steps": settings.get("Steps"), "guidance": settings.get("CFG scale"),
            "scheduler": settings.get("Sampler"), "model_id": settings.get("Model") or settings.get("Model hash")}


def parse_settings_line(line: str) -> dict[str, str]:
    """``Key: value, Key: "quoted, value", …`` as a dict, one pass over the line's tokens.

    A key is the run of letters, digits, ``_``, `` ``, ``-`` and ``/`` just before its colon (at most
    :data:`MAX_KEY` characters); a value runs to the next comma outside quotes.
    """
    settings: dict[str, str] = {}
    pending: list[str] = []
    key: str | None = None
    for match in _SETTING_TOKEN.finditer(line):
        token = match.group()
        if key is None:
            if token == ":":
                key = _key_of("".join(pending))
                pending = []
                if key is None:
                    key = ""  # not a key: skip its value
            elif token == ",":
                pending = []
            else:
                pending.append(token)
        elif token == ",":
            if key:
                settings[key] = "".join(pending).strip().strip('"')
            key, pending = None, []
        else:
            pending.append(token)
    if key:
        settings[key] = "".join(pending).strip().strip('"')
    return settings


def _key_of(text: str) -> str | None:
    """The key at the end of ``text`` (scanned backwards, at most MAX_KEY characters), or None."""
    end = len(text)
    start = end
    while start > 0 and end - start <= MAX_KEY and text[start - 1] in _KEY_CHARS:
        start -= 1
    if end - start > MAX_KEY:
        return None
    key = text[start:end].strip()
    return key or None


def json_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in a JSON text, brackets inside strings ignored (one pass)."""
    depth = deepest = 0
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def load_json_object(text: str) -> dict:
    """A JSON object from untrusted text: size- and depth-checked before ``json.loads`` (which recurses)."""
    if len(text) > MAX_RAW:
        raise MetadataRefused(f"longer than {MAX_RAW:,} characters ({len(text):,})")
    if json_depth(text) > MAX_DEPTH:
        raise MetadataRefused(f"nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise MetadataRefused(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MetadataRefused(f"not a JSON object (a {type(value).__name__})")
    return value


def parse_comfyui(graph: dict) -> dict:
    """Seed, steps, cfg, sampler, prompts and checkpoint from a ComfyUI API-format graph of any shape."""
    nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
    sampler = next((n for n in nodes.values() if "KSampler" in str(n.get("class_type", ""))[:200]), None)
    out: dict[str, Any] = {}
    if sampler is not None:
        inputs = _inputs(sampler)
        out.update(seed=inputs.get("seed", inputs.get("noise_seed")), steps=inputs.get("steps"),
                   guidance=inputs.get("cfg"), scheduler=inputs.get("sampler_name"))
        for field, link in (("prompt", inputs.get("positive")), ("negative", inputs.get("negative"))):
            target = link[0] if isinstance(link, list) and link else None
            node = nodes.get(str(target)) if isinstance(target, (str, int)) and not isinstance(target, bool) else None
            text = _inputs(node).get("text") if node is not None else None
            if isinstance(text, str):
                out[field] = text
    for node in nodes.values():
        name = _inputs(node).get("ckpt_name")
        if isinstance(name, str):
            out["model_id"] = name
            break
    return out


def _inputs(node: Any) -> dict:
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def _reason(exc: BaseException) -> str:
    text = str(exc)[:200]
    return text if isinstance(exc, MetadataRefused) else f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    continue
                number = int(float(str(value)[:400])) if not isinstance(value, int) else value
                if 0 <= number <= _INT64:
                    out[key] = number
            elif key == "guidance":
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    out[key] = float(str(value)[:400]) if isinstance(value, str) else float(value)
            elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
                out[key] = (value if isinstance(value, str) else repr(value))[:10_000]
        except (TypeError, ValueError, OverflowError):
            continue
    return out
