"""How an image is captioned in a gallery: prompt and seed for a generated one, the file name for an import."""

from __future__ import annotations


def image_caption(image: dict) -> str:
    """Prompt and seed for a generated image; the original file name for an imported one."""
    p = image.get("provenance") or {}
    if image["source"] == "synthetic":
        return f"{p.get('prompt') or '(no prompt)'} · seed {p.get('seed')}"
    return f"{image['source']}: {p.get('original_name') or image['id'][:12]}"


def short_caption(image: dict, width: int = 40) -> str:
    """The Data page's thumbnail caption: ``rejected · `` when rejected, the caption's last path part, cut."""
    label = ("rejected · " if image["rejected"] else "") + image_caption(image).rsplit("/", 1)[-1]
    return label[:width]
