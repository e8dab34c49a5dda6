import pytest

from tests.e2e.conftest import open_page

pytestmark = pytest.mark.e2e


def test_every_page_opens_from_the_sidebar_without_an_exception(app_server, page):
    app_server.start()
    for title in ("Generate", "Slice", "Train", "Results"):
        open_page(page, app_server, title)
        assert page.locator('[data-testid="stException"]').count() == 0
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert str(app_server.home) in sidebar.inner_text()
