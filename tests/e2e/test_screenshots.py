"""Screenshots of every page on a populated store (trained, evaluated runs), written to tests/e2e/screenshots/
(git-ignored) so a reviewer can look at the pages without running the app. Each page is also checked for what
a reviewer would see (issue 25): no literal ``None`` in a table cell or a line of text, and in every plotly
chart no text drawn over other text — annotations, titles, legend and tick labels never overlap an axis title,
and annotations never overlap the chart title or tick labels. (What the figures hold — ranges, annotation
positions, label counts — is tested on the figures themselves in tests/core/views/test_figure_layout.py.)"""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.conftest import SCREENSHOTS, no_exception, open_page

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PAGES = ("Overview", "Data", "Generate", "Slice", "Train", "Results", "Diagnostics")
RESULT_TABS = ("Per test image", "True-tag probability", "Metrics", "Confusion")

# Every text box of each plotly chart on the page, by role, in page pixels (getBoundingClientRect).
CHART_TEXT = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map((plot, n) => {
  const boxes = (selector) => Array.from(plot.querySelectorAll(selector))
    .filter(e => (e.textContent || '').trim() && e.getBoundingClientRect().width > 0)
    .map(e => { const r = e.getBoundingClientRect();
                return {text: e.textContent.trim(), left: r.left, top: r.top, right: r.right, bottom: r.bottom}; });
  return {chart: n, title: boxes('.gtitle, .gtitle-subtitle'), axis_titles: boxes('[class$="title"][class^="x"], [class$="title"][class^="y"]'),
          annotations: boxes('.annotation-text'), legend: boxes('.legendtext, .legendtitletext'),
          ticks: boxes('.xtick text, .ytick text, .x2tick text, .y2tick text')};
})"""
SLACK_PX = 1.0  # boxes that merely touch are not overlapping text


def overlap(a: dict, b: dict) -> bool:
    return (min(a["right"], b["right"]) - max(a["left"], b["left"]) > SLACK_PX
            and min(a["bottom"], b["bottom"]) - max(a["top"], b["top"]) > SLACK_PX)


def overlapping_text(charts: list[dict]) -> list[str]:
    """Pairs of text boxes in one chart that overlap: each annotation against the axis titles, the chart title
    and the tick labels; each axis title against the chart title, the legend and the tick labels."""
    found = []
    for chart in charts:
        pairs = [(a, b) for a in chart["annotations"] for b in chart["axis_titles"] + chart["title"] + chart["ticks"]]
        pairs += [(a, b) for a in chart["axis_titles"] for b in chart["title"] + chart["legend"] + chart["ticks"]]
        pairs += [(a, b) for i, a in enumerate(chart["axis_titles"]) for b in chart["axis_titles"][i + 1:]]
        found += [f"chart {chart['chart']}: {a['text']!r} over {b['text']!r}" for a, b in pairs if overlap(a, b)]
    return found


def none_shown(page) -> list[str]:
    """``None`` shown as a value: a table cell (the grid is drawn on a canvas but keeps an accessible table)
    or a line of the page's text that is just ``None``."""
    cells = page.get_by_role("gridcell", name="None", exact=True, include_hidden=True).count()
    lines = [line for line in page.locator('[data-testid="stMain"]').inner_text().splitlines()
             if line.strip() == "None"]
    return [f"{cells} table cell(s)"] * bool(cells) + lines


def test_every_page_on_a_populated_store_has_a_screenshot(app_server, page, populated_template):
    shutil.rmtree(app_server.home)
    shutil.copytree(populated_template, app_server.home)
    app_server.start()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 2400})
    problems: dict[str, list[str]] = {}
    charts_seen = 0
    for n, title in enumerate(PAGES, 1):
        open_page(page, app_server, title)
        no_exception(page)
        page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
        page.wait_for_timeout(500)  # plotly lays text out after the script ends
        shot = SCREENSHOTS / f"{n:02d}-{title.lower()}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000  # a drawn page, not a blank one
        for tab in RESULT_TABS if title == "Results" else ("",):
            if tab:  # every chart of the Results page, tab by tab (a hidden tab's chart has no layout)
                page.get_by_role("tab", name=tab).click()
                page.locator('[role="tabpanel"]:visible .js-plotly-plot').first.wait_for(timeout=60_000)
                page.wait_for_timeout(500)
            charts = [c for c in page.evaluate(CHART_TEXT) if c["axis_titles"]]
            charts_seen += len(charts)
            found = none_shown(page) + overlapping_text(charts)
            if found:
                problems[f"{title} {tab}".strip()] = found
    assert charts_seen >= 7  # two on Train (run card, quick test), five over the Results tabs: all drawn, all checked
    assert not problems, problems


def box(left, top, right, bottom, text="t"):
    return {"text": text, "left": left, "top": top, "right": right, "bottom": bottom}


def test_the_overlap_check_finds_a_planted_overlap_and_nothing_else():
    """Known answer for the check above: a note drawn over the x-axis title is found, touching boxes are not."""
    title = box(100, 400, 200, 420, "images per tag")
    chart = {"chart": 0, "title": [box(0, 0, 300, 20, "Accuracy")], "axis_titles": [title], "legend": [],
             "annotations": [box(150, 410, 400, 425, "repeats overlap 80%")], "ticks": [box(100, 380, 110, 399, "10")]}
    assert overlapping_text([chart]) == ["chart 0: 'repeats overlap 80%' over 'images per tag'"]
    chart["annotations"] = [box(150, 420, 400, 440, "below, touching")]
    assert overlapping_text([chart]) == []
