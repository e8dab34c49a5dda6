"""Tag-name identity: two names are the same tag when they are equal after Unicode NFC and case-folding.

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
