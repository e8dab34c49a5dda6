"""One masking filter for every text Synthlab prints, logs or stores.

The known secret values are the configured keys (:data:`core.config.SECRET_SETTINGS`, from the
environment or ``st.secrets``). :func:`redact` replaces each of them — and its HTML-, JSON- and
URL-escaped spellings — by its mask (``••••••••`` and at most the last 4 characters) wherever it
appears: in an endpoint URL, a validation message, a traceback. The sinks that call it: the CLI's
stdout and stderr (:class:`MaskingStream`), the log files, job and run errors and messages written to
the store, reports, and every text a page shows (:func:`plain`).
"""

from __future__ import annotations

import html
import json
import re
from typing import Iterable, Optional, TextIO
from urllib.parse import quote, quote_plus

from core import config

MIN_SECRET = 4


def secret_values(extra: Iterable[Optional[str]] = ()) -> list[str]:
    """The known secret values (longest first, so a key inside another is masked whole)."""
    values = {v.strip() for v in (config.setting(n) for n in sorted(config.SECRET_SETTINGS)) if v}
    values.update(v for v in extra if v)
    return sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True)


def _spellings(value: str) -> set[str]:
    return {value, html.escape(value), json.dumps(value, ensure_ascii=False)[1:-1],
            json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value, safe=""), repr(value)[1:-1]}


def redact(text: object, extra: Iterable[Optional[str]] = ()) -> str:
    """``text`` with every known secret value masked (any spelling); other text unchanged."""
    out = "" if text is None else str(text)
    if not out:
        return out
    for value in secret_values(extra):
        shown = config.mask(value)
        for form in sorted(_spellings(value), key=len, reverse=True):
            if form and form in out:
                out = out.replace(form, shown)
    return out


class MaskingStream:
    """A text stream that writes through :func:`redact` (the CLI wraps stdout and stderr in it).

    Text is masked per ``write`` call; Synthlab writes whole lines or whole messages at a time.
    """

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


_MARKDOWN = re.compile(r"([\\`*_\[\]<>$~|#{}!]|(?<=[Ww]{3})\.|@)|(:)(?=[A-Za-z_/])|^(\s*)([-+=>]|\d+(?=[.)]))",
                       re.MULTILINE)


def plain(text: object) -> str:
    """User text (prompts, tag / slice / file names, error messages) made safe for any Streamlit element
    that renders markdown: every markdown and HTML character is backslash-escaped, so the text shows as
    typed — an ``![x](http://…)`` is never an image, a ``<b>`` never a tag, ``:red[x]`` never colour —
    and every known secret value is masked (:func:`redact`)."""
    def escape(m: re.Match) -> str:
        if m.group(1) or m.group(2):
            return "\\" + (m.group(1) or m.group(2))
        lead, mark = m.group(3), m.group(4)
        return lead + (mark + "\\" if mark[0].isdigit() else "\\" + mark)

    return _MARKDOWN.sub(escape, redact(text))
