"""Tag names: what a valid name and prompt are, and identity — two names are the same tag when they are equal after Unicode NFC and case-folding.

Azure Custom Vision compares tag names ignoring case, and exports become folders on file systems that
may too (macOS, Windows); ``Café`` typed as NFC or NFD is one word. So the store keeps at most one tag
per :func:`tag_key`, and every command that takes a tag name resolves it through
:meth:`core.store.database.Store.find_tag` (exact name first, then the key), so ``images list --tag CAFÉ`` finds
``café``. A store made before this rule may already hold two names with one key: it still opens, both
tags keep their images, an exact name still picks each one, a name matching only their common key is
refused as ambiguous, and a sweep that would send both to one Azure project is refused
(:func:`colliding`).
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

from core.errors import InvalidInput


def nfc(name: str) -> str:
    return unicodedata.normalize("NFC", str(name).strip())


def tag_key(name: str) -> str:
    """The identity of a tag name: NFC, case-folded, NFC again (folding can decompose)."""
    return unicodedata.normalize("NFC", nfc(name).casefold())


def colliding(names: Iterable[str]) -> list[list[str]]:
    """Groups of two or more distinct names that share a :func:`tag_key` (sorted), e.g. ``[["Jeans", "jeans"]]``."""
    groups: dict[str, set[str]] = {}
    for name in names:
        groups.setdefault(tag_key(name), set()).add(name)
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)


TAG_NAME_MAX = 64
PROMPT_MAX = 10_000


def validate_tag_name(name: str) -> str:
    """A tag name is shown, stored and used as a folder name in exports: keep it plain.

    Letters (any script), digits, spaces, ``-``, ``_`` and ``.``; 1–64 characters; not only dots.
    """
    if not isinstance(name, str):
        raise InvalidInput("tag name must be text")
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise InvalidInput("tag name is empty")
    if len(name) > TAG_NAME_MAX:
        raise InvalidInput(f"tag name is longer than {TAG_NAME_MAX} characters")
    for ch in name:
        if ch in "/\\":
            raise InvalidInput(f"tag name {name!r} contains a path separator")
        if unicodedata.category(ch)[0] == "C":
            raise InvalidInput(f"tag name {name!r} contains a control character")
        if not (ch.isalnum() or ch in " -_."):
            raise InvalidInput(
                f"tag name {name!r} contains {ch!r}: use letters, digits, spaces, '-', '_' or '.'"
            )
    if set(name) <= {"."}:
        raise InvalidInput(f"tag name {name!r} is not allowed")
    _refuse_secrets(name)
    return name


def _refuse_secrets(name: str) -> None:
    """A tag name is stored, shown and exported as typed, so a secret typed as one is refused (masking it would
    make another name)."""
    from core import config
    from core.redact import redact

    for setting in sorted(config.SECRET_SETTINGS):
        value = (config.setting(setting) or "").strip()
        if len(value) >= 4 and value in name:
            raise InvalidInput(f"tag name {redact(name)!r} contains the value of {setting}, a secret: "
                               "choose another name")


def validate_prompt(text: str, what: str = "prompt") -> str:
    if text is None:
        return ""
    if len(text) > PROMPT_MAX:
        raise InvalidInput(f"{what} is longer than {PROMPT_MAX} characters ({len(text)})")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in text):
        raise InvalidInput(f"{what} contains control characters")
    return text.strip()
