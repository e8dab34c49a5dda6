"""Screenshots of every page on a populated store (trained, evaluated runs), written to tests/e2e/screenshots/
(git-ignored) so a reviewer can look at the pages without running the app."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.conftest import SCREENSHOTS, no_exception, open_page

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PAGES = ("Overview", "Data", "Generate", "Slice", "Train", "Results", "Diagnostics")


def test_every_page_on_a_populated_store_has_a_screenshot(app_server, page, populated_template):
    shutil.rmtree(app_server.home)
    shutil.copytree(populated_template, app_server.home)
    app_server.start()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 2400})
    for n, title in enumerate(PAGES, 1):
        open_page(page, app_server, title)
        no_exception(page)
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
        shot = SCREENSHOTS / f"{n:02d}-{title.lower()}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000  # a drawn page, not a blank one
