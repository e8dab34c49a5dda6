"""The tags table: names (case-insensitive, validated), prompts and per-source image counts."""

from __future__ import annotations

from typing import Optional

from core.errors import InvalidInput, UnknownTag
from core.redact import redact
from core.store.records import SOURCES, now
from core.store.tagnames import validate_prompt, validate_tag_name


class Tags:
    """Methods of :class:`core.store.database.Store` (the tags table)."""

    def add_tag(self, name: str, prompt: str = "", negative: str = "", *, update: bool = False) -> dict:
        """Create a tag (or, with ``update``, change its prompts). A name equal to an existing one under
        NFC and case-folding (:func:`core.store.tagnames.tag_key`) is the same tag: refused unless ``update``."""
        from core.store.tagnames import tag_key

        name = validate_tag_name(name)
        prompt = redact(validate_prompt(prompt))  # a key typed into a prompt is stored masked
        negative = redact(validate_prompt(negative, "negative prompt"))
        with self.tx() as conn:
            same = [r[0] for r in conn.execute("SELECT name FROM tags").fetchall() if tag_key(r[0]) == tag_key(name)]
            existing = name if name in same else (same[0] if len(same) == 1 else None)
            if same and not update:
                shown = existing or same[0]
                hint = "" if shown == name else f" ({name!r} is the same name: tag names ignore case)"
                raise InvalidInput(f"tag {shown!r} already exists{hint}")
            if same and existing is None:
                raise InvalidInput(f"tag {name!r} is ambiguous: the store has {', '.join(map(repr, same))}")
            if existing:
                conn.execute("UPDATE tags SET prompt = ?, negative = ? WHERE name = ?", (prompt, negative, existing))
                name = existing
            else:
                conn.execute(
                    "INSERT INTO tags(name, prompt, negative, created) VALUES (?, ?, ?, ?)",
                    (name, prompt, negative, now()),
                )
        return self.get_tag(name)

    def find_tag(self, name: str) -> Optional[str]:
        """The stored name of tag ``name``: the exact name, else the one tag with the same
        :func:`core.store.tagnames.tag_key` (NFC, case-folded); None when there is none. A name that matches
        two stored tags only by key (a store made before names were unique) is refused as ambiguous."""
        from core.store.tagnames import nfc, tag_key

        if not isinstance(name, str):
            return None
        names = self.tag_names()
        for candidate in (name, nfc(name)):
            if candidate in names:
                return candidate
        same = [n for n in names if tag_key(n) == tag_key(name)]
        if len(same) > 1:
            raise InvalidInput(f"tag {name!r} is ambiguous: the store has {', '.join(map(repr, same))} "
                               "(name one exactly)")
        return same[0] if same else None

    def canonical_tag(self, name: str) -> str:
        """The stored name of the tag ``name`` refers to, or ``name`` (NFC) when there is none yet."""
        from core.store.tagnames import nfc

        return self.find_tag(name) or nfc(name)

    def get_tag(self, name: str) -> dict:
        found = self.find_tag(name)
        row = None if found is None else self.query_one(
            "SELECT name, prompt, negative, created FROM tags WHERE name = ?", (found,))
        if row is None:
            raise UnknownTag(name)
        row["counts"] = self.tag_counts(row["name"])
        return row

    def tag_counts(self, name: str) -> dict[str, int]:
        counts = {s: 0 for s in SOURCES}
        for row in self.query(
            "SELECT source, COUNT(*) AS n FROM images WHERE tag = ? AND rejected = 0 GROUP BY source", (name,)
        ):
            counts[row["source"]] = row["n"]
        return counts

    def list_tags(self) -> list[dict]:
        tags = self.query("SELECT name, prompt, negative, created FROM tags ORDER BY name")
        counts: dict[str, dict[str, int]] = {t["name"]: {s: 0 for s in SOURCES} for t in tags}
        for row in self.query(
            "SELECT tag, source, COUNT(*) AS n FROM images WHERE rejected = 0 GROUP BY tag, source"
        ):
            counts[row["tag"]][row["source"]] = row["n"]
        for tag in tags:
            tag["counts"] = counts[tag["name"]]
        return tags

    def tag_names(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM tags ORDER BY name")]
