"""Browser tests: a real `streamlit run streamlit_app.py` on a free loopback port, driven by Playwright in
Debian's Chromium (never a downloaded browser). Waits on Streamlit's own script-state signal, not sleeps."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: F401 - used by tests importing from here

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SERVER_LOGS: list["AppServer"] = []  # every server a test started, for the log check after the test
_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback \(most recent call last\)|\b\w*(Warning|Exception):")


def log_problems(text: str) -> list[str]:
    """The lines of a Streamlit server log that show a warning or an exception (levels from
    :data:`LOG_FORMAT`, Python tracebacks, ``…Warning:`` lines of the warnings module)."""
    return [line for line in text.splitlines() if _PROBLEM.search(line)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    """One Streamlit server process over a store folder; can be killed (-9) and started again."""

    home: Path
    env: dict = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    script: str = "streamlit_app.py"
    expect_problems: bool = False  # a test that checks the log check itself
    logs: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "AppServer":
        self.port = free_port()
        log = open(self.home.parent / f"streamlit-{self.port}.log", "w")
        self.logs.append(Path(log.name))
        if self not in SERVER_LOGS:
            SERVER_LOGS.append(self)
        env = {**os.environ, "SYNTHLAB_HOME": str(self.home), "HF_HUB_OFFLINE": "1", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", self.script, "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--logger.messageFormat", LOG_FORMAT],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited: {Path(log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("streamlit did not become healthy")

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


@pytest.fixture(autouse=True)
def server_log_is_clean():
    """Fail a browser test whose Streamlit server logged a warning or an exception (checked after the test,
    once its servers are stopped and their logs complete)."""
    SERVER_LOGS.clear()
    yield
    servers, problems = list(SERVER_LOGS), []
    SERVER_LOGS.clear()
    for server in servers:
        if not server.expect_problems:
            server.stop()
            problems += log_problems(server.log_text())
    if problems:
        pytest.fail("the Streamlit server logged warnings or exceptions:\n" + "\n".join(problems[:40]), pytrace=False)


@pytest.fixture
def app_server(tmp_path):
    server = AppServer(home=tmp_path / "home")
    server.home.mkdir()
    yield server
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.failed_call = report.failed
    return report


@pytest.fixture
def page(browser, request, tmp_path):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    if getattr(request.node, "failed_call", False):  # what the browser showed when the test failed
        shot = Path(os.environ.get("SYNTHLAB_E2E_SHOTS", tmp_path)) / f"{request.node.name}.png"
        pg.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failure: {shot}")
    context.close()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until Streamlit says the script is not running (its own ``data-test-script-state``)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)
    page.wait_for_timeout(100)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout)


def open_page(page, server: AppServer, title: str) -> None:
    """Go to a page through the sidebar navigation and wait for its script to finish."""
    page.goto(server.url)
    wait_idle(page)
    if title != "Overview":
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name=title).first.click()
        wait_idle(page)
    page.get_by_role("heading", name=title).first.wait_for()


# -- widget helpers: Streamlit gives every keyed widget's container the class ``st-key-<key>`` ----------

def widget(page, key: str):
    """The container of the widget with this ``key`` (Streamlit's ``st-key-…`` class, non [A-Za-z0-9_-] → '-')."""
    import re

    return page.locator(".st-key-" + re.sub(r"[^A-Za-z0-9_-]", "-", key.strip()))


def set_text(page, key: str, value: str) -> None:
    """Type into a text input, text area or number input and commit it (Enter, or Tab for a text area)."""
    box = widget(page, key).locator("input, textarea").first
    box.fill(str(value))
    box.press("Tab" if box.evaluate("e => e.tagName") == "TEXTAREA" else "Enter")
    wait_idle(page)


def choose(page, key: str, option: str) -> None:
    """Pick an option of a selectbox or multiselect by its label."""
    box = widget(page, key).locator('input[role="combobox"]').first
    box.click()
    if box.get_attribute("aria-expanded") != "true":
        box.press("ArrowDown")  # a click on an already focused box does not always open its list
    page.get_by_role("option", name=option, exact=True).first.click()
    page.keyboard.press("Escape")
    wait_idle(page)


def press(page, key: str) -> None:
    """Click a keyed button and wait for the rerun it starts."""
    widget(page, key).locator("button").first.click()
    wait_idle(page)


def upload(page, files: list, key: str | None = None) -> None:
    """Hand files to a file uploader, as a user's file picker would, and wait until they are listed."""
    from playwright.sync_api import expect

    scope = widget(page, key) if key else page
    scope.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files([str(f) for f in files])
    expect(scope.locator('[data-testid="stFileChip"]')).to_have_count(len(files))
    expect(scope.locator('[data-testid="stFileChipIconSpinner"]')).to_have_count(0)  # all sent to the server
    wait_idle(page)


def wait_text(page, text: str, timeout: float = 60_000):
    """Wait for visible text (exact substring) anywhere in the app; returns its locator."""
    found = page.get_by_text(text, exact=False).first
    found.wait_for(timeout=timeout)
    return found


def no_exception(page) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, shown.first.inner_text()


def wait_cell(page, text: str, table: int = 0, timeout: float = 30_000):
    """Wait for a cell of a ``st.dataframe`` with exactly this text: the grid is drawn on a canvas but keeps
    an accessible (visually hidden) table in the DOM."""
    grid = page.locator('[data-testid="stDataFrame"]').nth(table)
    found = grid.get_by_role("gridcell", name=text, exact=True, include_hidden=True).first
    found.wait_for(state="attached", timeout=timeout)
    return found
