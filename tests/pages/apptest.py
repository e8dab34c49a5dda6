"""Shared AppTest helpers for the page tests: open a page by name, run it, and read its texts."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGES = Path(__file__).resolve().parents[2] / "pages"


def page_path(name: str) -> str:
    """The file of page `name` (e.g. "generate") under pages/."""
    return str(PAGES / f"{name}.py")


def open_page(name: str, timeout: float = 60) -> AppTest:
    """Run page `name` once and fail on any exception it raised."""
    at = AppTest.from_file(page_path(name), default_timeout=timeout)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    """The values of a list of AppTest elements, one per line, as a reader sees them: the backslash escapes
    that keep user text from rendering as markdown (:func:`core.redact.plain`) are undone."""
    return "\n".join(shown(str(e.value)) for e in elements)


def shown(markdown: str) -> str:
    """Markdown source with CommonMark's backslash escapes of ASCII punctuation removed."""
    import re

    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def finish_jobs(at: AppTest, home, kind: str, timeout: float = 120) -> list[dict]:
    """Wait until every job of ``kind`` in the store at ``home`` has ended (the app's worker thread runs them:
    a page queues an import, an export or the sample and returns), then run the page again; returns the jobs."""
    from core.run import jobs
    from core.store.database import Store

    store = Store(home)
    ended = [jobs.wait(store, job["id"], timeout=timeout) for job in jobs.list_jobs(store, kind=kind)]
    at.run()
    assert not at.exception, at.exception
    return ended
