"""Issue 13 item 15: user text is shown as text, never rendered as markdown or HTML. Prompts, file names and an
error message carrying markdown images and HTML that point at a beacon server on 127.0.0.1 are shown in a
real browser; the beacon must receive no request, and the text must be visible as typed."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from core.store.database import Store
from tests.e2e.conftest import open_page, set_text, wait_idle

pytestmark = pytest.mark.e2e


class Beacon:
    """An HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self):
        self.hits: list[str] = []
        beacon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                beacon.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def beacon():
    b = Beacon()
    yield b
    b.close()


def test_markdown_and_html_in_user_text_are_shown_as_text(app_server, page, beacon):
    prompt = f"![x]({beacon.url}/prompt.png) cat <img src='{beacon.url}/html.png'> **bold**"
    file_name = f"<img src={beacon.url}/file.png>![y]({beacon.url}/file2.png).png"
    store = Store(app_server.home)
    store.add_tag("cats", prompt)
    rng = np.random.default_rng(0)
    for n in range(2):
        image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        store.add_image(image, tag="cats", source="synthetic", prompt=prompt, seed=n, model_id="tiny")
    store.add_image(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), tag="cats", source="real",
                    original_name=file_name)
    store.close()
    app_server.start()

    open_page(page, app_server, "Generate")
    page.get_by_text("Add or edit a tag").first.click()
    set_text(page, "gen_name_(new tag)", f"![z]({beacon.url}/error.png)")
    page.get_by_role("button", name="Save tag").click()
    wait_idle(page)
    error = page.locator('[data-testid="stAlert"]').filter(has_text="tag name").first
    error.wait_for()
    page.wait_for_timeout(1500)

    body = page.locator('[data-testid="stMain"]').inner_text()
    assert f"![x]({beacon.url}/prompt.png) cat <img src='{beacon.url}/html.png'> **bold** · seed 0" in body
    assert f"real: {file_name}" in body
    assert f"![z]({beacon.url}/error.png)" in error.inner_text()
    assert page.locator(f'[data-testid="stMain"] img[src^="{beacon.url}"]').count() == 0
    assert page.locator('[data-testid="stMain"] strong', has_text="bold").count() == 0
    assert page.locator(f'[data-testid="stMain"] a[href^="{beacon.url}"]').count() == 0
    assert beacon.hits == []
