"""The Results page under Streamlit's AppTest, on an empty store and on a real populated one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from streamlit.testing.v1 import AppTest

from core.analysis import stats
from tests.core.views.test_report import COUNTS
from tests.pages.apptest import page_path

PAGE = page_path("results")


def run(at: AppTest) -> AppTest:
    at.run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart(at: AppTest, key: str) -> dict:
    found = [json.loads(el.proto.spec) for el in at.get("plotly_chart") if el.key == key]
    assert len(found) == 1, [el.key for el in at.get("plotly_chart")]
    return found[0]


def test_empty_store_says_what_to_do_first(store):
    at = run(AppTest.from_file(PAGE))
    assert "No results yet" in at.info[0].value and "train" in at.info[0].value
    assert not at.get("plotly_chart")
    at.button(key="evaluate").click()
    run(at)
    assert "no test images" in at.error[0].value
    assert store.query_one("SELECT COUNT(*) AS n FROM runs")["n"] == 0


def test_populated_store_draws_probability_vs_count_with_one_line_per_tag(populated):
    from core.analysis.evaluation import results

    stored = results(populated)
    tags = sorted(stored[0]["tags"])
    at = run(AppTest.from_file(PAGE))
    keys = {el.key for el in at.get("plotly_chart")}
    assert {"probability-vs-count", "image-history", "true-tag-probability", "metric-accuracy"} <= keys
    image = at.session_state["results-image"]
    spec = chart(at, "probability-vs-count")
    assert image[:12] in spec["layout"]["title"]["text"]
    lines = [t for t in spec["data"] if not t["meta"]["baseline"]]
    assert sorted(t["meta"]["key"] for t in lines) == tags
    for t in lines:
        assert t["x"] == list(COUNTS) and t["meta"]["n"] == [2, 2]
        for x, y, err in zip(t["x"], t["y"], t["error_y"]["array"]):
            values = [next(p for p in r["per_image"] if p["image"] == image)["probabilities"][t["meta"]["key"]]
                      for r in stored if r["count_per_tag"] == x]
            assert y == pytest.approx(sum(values) / 2)
            # default bars: 95 % combined; one image has no test-set part, so a t interval over 2 repeats
            assert err == pytest.approx(stats.t_factor(2) * stats.Z95 * abs(values[0] - values[1]) / 2)
    assert sorted(t["meta"]["key"] for t in spec["data"] if t["meta"]["baseline"]) == tags
    assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == len(stored)
    labels = {b.label for b in at.get("download_button")}
    assert {"Download chart (HTML)", "Download all results (CSV)"} <= labels


def test_picking_another_test_image_redraws_its_chart(populated):
    at = run(AppTest.from_file(PAGE))
    first = at.session_state["results-image"]
    other = next(b for b in at.button if b.key and b.key.startswith("pick-") and b.key != f"pick-{first}")
    chosen = other.key.removeprefix("pick-")
    other.click()
    run(at)
    assert at.session_state["results-image"] == chosen
    assert chosen[:12] in chart(at, "probability-vs-count")["layout"]["title"]["text"]
    assert chosen[:12] in chart(at, "image-history")["layout"]["title"]["text"]


def test_clicking_a_confusion_cell_lists_its_images(populated):
    from core.analysis.evaluation import results

    at = run(AppTest.from_file(PAGE))
    run_id = at.selectbox(key="confusion-run").value
    result = next(r for r in results(populated) if r["run"] == run_id)
    labels, matrix = result["confusion"]["labels"], result["confusion"]["matrix"]
    i, j = max(((i, j) for i in range(len(labels)) for j in range(len(labels))), key=lambda ij: matrix[ij[0]][ij[1]])
    key = f"confusion-{run_id}"
    assert chart(at, key)["data"][0]["type"] == "heatmap"
    at.session_state[key] = {"selection": {"points": [{"curve_number": 1, "x": labels[j], "y": labels[i],
                                                       "customdata": [labels[i], labels[j], matrix[i][j]]}],
                                           "point_indices": [0], "box": [], "lasso": []}}
    run(at)
    text = " ".join(m.value for m in at.markdown)
    assert f"**{matrix[i][j]}** test images of **{labels[i]}** predicted as **{labels[j]}**" in text
    from core.views.charts import confusion_cell_images

    expected = [img[:12] for img in confusion_cell_images(result, labels[i], labels[j])]
    assert len(expected) == matrix[i][j]
    assert any(list(im.captions) == expected for im in at.image)


def test_filters_that_match_nothing_say_so(populated):
    at = run(AppTest.from_file(PAGE))
    at.multiselect[1].set_value([])
    run(at)
    assert any("No run matches" in w.value for w in at.warning)  # after the answer box's open questions
    assert not at.get("plotly_chart")


def test_build_report_button_writes_a_standalone_report(populated):
    at = run(AppTest.from_file(PAGE))
    at.button(key="build-report").click()
    run(at)
    path = at.session_state["results-report"]
    assert path.startswith(str(populated.root / "reports"))
    assert "Report written to" in at.success[0].value
    assert any(b.label == "Download report (HTML)" for b in at.get("download_button"))
    from core.views.report import check_self_contained

    with open(path, encoding="utf-8") as fh:
        assert check_self_contained(fh.read()) == []


def test_compare_tab_gives_verdicts_and_puts_the_comparison_in_the_report(populated):
    from core.analysis.evaluation import evaluate, results
    from core.train.training import train

    train(populated, ["digits"], backend="local", params={"encoder": "cnn-small", "epochs": 3})
    evaluate(populated)
    trained = {r["arm_spec"]["training"]["epochs"]: r["arm"] for r in results(populated) if r["count_per_tag"]}
    at = run(AppTest.from_file(PAGE))
    at.selectbox(key="compare-a").set_value(trained[2])
    at.selectbox(key="compare-b").set_value(trained[3])
    run(at)
    [shown] = [d for d in at.dataframe if "verdict" in d.value.columns]
    table = shown.value
    assert list(table["images per tag"]) == list(COUNTS)
    assert set(table["verdict"]) <= set(stats.VERDICTS) and "note" in table.columns
    assert shown.proto.placeholder == "—"  # a missing p-value (identical repeats) reads —, never None
    assert not any("→" in t.value or "difference" in t.value for t in at.text)  # each result once: the table
    at.button(key="compare-include").click()
    run(at)
    assert at.session_state["report-comparisons"] == [(trained[2], trained[3])]
    at.button(key="build-report").click()
    run(at)
    with open(at.session_state["results-report"], encoding="utf-8") as fh:
        text = fh.read()
    assert "id='comparisons'" in text and trained[2] in text and trained[3] in text


def test_a_mixed_arm_without_real_only_baseline_gets_a_one_click_sweep(populated):
    from PIL import ImageOps

    from core.analysis.evaluation import evaluate
    from core.data.slicing import SliceSpec, build_slices
    from core.train.training import train

    for im in populated.list_images(source="real"):
        populated.add_image(ImageOps.mirror(populated.open_image(im["id"])), tag=im["tag"], source="synthetic")
    build_slices(populated, SliceSpec(name="mixed", counts=COUNTS, size=32, real_fraction=0.5))
    train(populated, ["mixed"], backend="local", params={"encoder": "cnn-small", "epochs": 1})
    evaluate(populated)
    at = run(AppTest.from_file(PAGE))
    buttons = [b for b in at.button if b.key and b.key.startswith("baseline-")]
    assert len(buttons) == 1 and buttons[0].label == "Make the matching real-only sweep"
    runs_before = populated.query_one("SELECT COUNT(*) AS n FROM runs")["n"]
    buttons[0].click()
    run(at)
    assert "mixed-real-only" in at.success[0].value
    made = populated.query("SELECT id, real_fraction, count_per_tag FROM slices WHERE name = 'mixed-real-only'")
    assert sorted(m["count_per_tag"] for m in made) == list(COUNTS) and {m["real_fraction"] for m in made} == {1.0}
    queued = populated.query("SELECT status, params FROM runs WHERE id > ?", (runs_before,))
    assert len(queued) == len(COUNTS) and all('"epochs": 1' in q["params"] for q in queued)


@pytest.fixture
def served(populated):
    """The page under a real ``streamlit run`` on a free local port, on the populated store."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", PAGE, "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true"],
        env={**os.environ, "SYNTHLAB_HOME": str(populated.root)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("streamlit did not start")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.mark.e2e
def test_in_a_browser_the_chart_draws_and_a_confusion_cell_click_lists_images(served, populated, browser):
    from core.analysis.evaluation import results
    from core.views import charts

    first = charts.history_order(results(populated))[0]
    labels, matrix = first["confusion"]["labels"], first["confusion"]["matrix"]
    i, j = max(((i, j) for i in range(len(labels)) for j in range(len(labels))), key=lambda ij: matrix[ij[0]][ij[1]])
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    try:
        page = context.new_page()
        page.goto(served)
        page.wait_for_selector(".stPlotlyChart .scatterlayer .trace", timeout=60_000)
        assert page.locator(".stPlotlyChart").first.locator(".scatterlayer .trace").count() >= len(labels)
        page.get_by_role("tab", name="Confusion").click()
        grid = page.locator(".stPlotlyChart:visible .nsewdrag").first
        grid.wait_for(timeout=30_000)
        box = grid.bounding_box()
        n = len(labels)
        for attempt in range(3):  # under load a click can land before plotly's selection handler is wired
            page.mouse.click(box["x"] + box["width"] * (j + 0.5) / n, box["y"] + box["height"] * (i + 0.5) / n)
            try:
                page.get_by_text("predicted as").wait_for(timeout=30_000)
                break
            except Exception:  # noqa: BLE001 - playwright's TimeoutError; the last attempt re-raises below
                if attempt == 2:
                    raise
        text = page.get_by_text("predicted as").inner_text()
    finally:
        context.close()
    assert text.split()[0] == str(matrix[i][j]) and f"of {labels[i]} predicted as {labels[j]}" in text
