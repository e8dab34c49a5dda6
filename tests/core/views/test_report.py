"""The standalone HTML report, on a real store: digit photos imported, sliced, trained (cnn-small and a
tiny-CLIP zero-shot baseline) and evaluated through the core functions."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from core.store.database import Store
from core.views.report import ReportError, check_self_contained, write_report

COUNTS = (4, 8)
REPEATS = 2
N_TAGS = 3
N_TEST = 3
_BUILT: dict[str, Path] = {}


def build_populated(folder: Path, clip: str) -> Path:
    """A store with finished, evaluated runs: 2 counts × 2 repeats of cnn-small, plus a zero-shot run.

    Built once per test session (cached here) and copied into each test's home; ~30 s on 2 CPUs.
    """
    if "home" in _BUILT:
        return _BUILT["home"]
    from core.analysis.evaluation import evaluate
    from core.data.slicing import SliceSpec, build_slices
    from core.train.training import train
    from tests.datasets import import_digits

    home = folder / "home"
    store = Store(home)
    try:
        import_digits(store, folder / "digits", n_train=max(COUNTS), n_test=N_TEST, size=32, n_tags=N_TAGS)
        store.add_tag("zero", "a photo of the digit zero, {ink|pen} on paper", "blurry", update=True)
        build_slices(store, SliceSpec(name="digits", counts=COUNTS, size=32, real_fraction=1.0, repeats=REPEATS))
        train(store, ["digits"], backend="local", params={"encoder": "cnn-small", "epochs": 2})
        train(store, ["digits"], backend="local", params={"encoder": clip, "mode": "zeroshot"})
        evaluate(store)
    finally:
        store.close()
    _BUILT["home"] = home
    return home


def copy_populated(template: Path, home: Path) -> Store:
    shutil.copytree(template, home)
    return Store(home)



class _Checker(HTMLParser):
    """Well-formedness of the report's own markup, and the plotly divs and scripts it holds."""

    VOID = {"meta", "br", "img", "hr", "link", "input", "col", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.plots, self.scripts, self.tables = [], [], [], [], 0
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and "src" in attrs:
            self.errors.append(f"external script {attrs['src']}")
        if tag == "div" and "plotly-graph-div" in (attrs.get("class") or ""):
            self.plots.append(attrs["id"])
        self.tables += tag == "table"
        self._in_script = tag == "script"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        self._in_script = False
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def figures_in(text: str) -> dict[str, dict]:
    """``{div id: {"data": [...], "layout": {...}}}`` of every ``Plotly.newPlot`` call in the report."""
    decoder = json.JSONDecoder()
    out = {}
    for m in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', text):
        data, end = decoder.raw_decode(text, m.end())
        layout, _ = decoder.raw_decode(text, re.compile(r",\s*").match(text, end).end())
        out[m.group(1)] = {"data": data, "layout": layout}
    return out


def title_of(fig: dict) -> str:
    title = fig["layout"].get("title") or {}
    return title.get("text", "") if isinstance(title, dict) else str(title)


def test_report_is_one_self_contained_file_with_the_charts_and_tables(populated, tmp_path):
    from core.analysis.evaluation import results

    folder = tmp_path / "out"
    folder.mkdir()
    out = write_report(populated, folder / "r.html")
    assert out == folder / "r.html" and list(folder.iterdir()) == [out]
    text = out.read_text(encoding="utf-8")
    assert check_self_contained(text) == []
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.IGNORECASE)
    assert text.count(get_plotlyjs()[:500]) == 1  # plotly.js inlined exactly once
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    figures = figures_in(text)
    assert set(figures) == set(checker.plots) and len(figures) >= 8

    stored = results(populated)
    trained = [r for r in stored if r["count_per_tag"]]
    tags = sorted({t for r in stored for t in r["tags"]})
    # metrics chart: x = slice counts, y = mean accuracy over repeats, error bar = the 95 % arm interval
    # (their spread with the shared test set's Clopper-Pearson interval, once; inside [0, 1])
    from core.analysis import intervals

    accuracy = next(f for f in figures.values() if title_of(f).startswith("Accuracy"))
    line = next(t for t in accuracy["data"] if not t["meta"]["baseline"])
    assert line["x"] == list(COUNTS)
    assert "repeat spread and test-set uncertainty" in accuracy["layout"]["title"]["subtitle"]["text"]
    for x, y, up, down in zip(line["x"], line["y"], line["error_y"]["array"], line["error_y"]["arrayminus"]):
        runs = [r for r in trained if r["count_per_tag"] == x]
        values = [r["accuracy"] for r in runs]
        assert len(values) == REPEATS
        expected = intervals.arm_interval(values, runs[0]["test_images"])
        assert y == pytest.approx(statistics.fmean(values))
        assert (up, down) == pytest.approx((expected["upper"] - y, y - expected["lower"]))
    baseline = next(r for r in stored if not r["count_per_tag"])
    assert [s["y0"] for s in accuracy["layout"]["shapes"]] == pytest.approx([baseline["accuracy"]])
    # probability-vs-count charts: one line per tag, over the slice counts
    per_image = [f for f in figures.values() if title_of(f).startswith("Predicted probability per tag")]
    assert per_image
    lines = [t for t in per_image[0]["data"] if not t["meta"]["baseline"]]
    assert sorted(t["meta"]["key"] for t in lines) == tags and all(t["x"] == list(COUNTS) for t in lines)
    # tables: runs, slices, tags and prompts, provenance
    for r in stored:
        assert f"<td>{r['run']}</td>" in text
    assert "a photo of the digit zero, {ink|pen} on paper" in text
    assert "Generation settings" in text and "<td>real</td>" in text and "<td>test</td>" in text
    assert "data:image/png;base64," in text
    assert checker.tables >= 4
    assert "<section id='diagnostics'>" in text and "No diagnostics yet" in text


def test_report_of_chosen_runs_only(populated, tmp_path):
    from core.analysis.evaluation import results

    first = [r["run"] for r in results(populated) if r["count_per_tag"]][:2]
    text = write_report(populated, tmp_path / "two.html", run_ids=first).read_text(encoding="utf-8")
    assert "2 runs on 2 slices" in text


def test_no_secret_reaches_the_report(populated, tmp_path, monkeypatch):
    key = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
    prediction_key = "ffee0011ffee0011ffee0011ffee0011"
    monkeypatch.setenv("VISION_TRAINING_KEY", key)
    monkeypatch.setenv("VISION_PREDICTION_KEY", prediction_key)
    # even where a key crept into stored text, the report leaves it out
    populated.add_tag("one", "digit one", f"not {key}", update=True)
    text = write_report(populated, tmp_path / "r.html").read_text(encoding="utf-8")
    assert key not in text and prediction_key not in text
    assert "not [redacted]" in text or "not ••••••••" in text  # the prompt is stored masked since round 3


def test_report_before_any_evaluation_says_what_to_do(store, tmp_path):
    with pytest.raises(ReportError, match="train and evaluate first"):
        write_report(store, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_report_of_unknown_runs_is_refused(populated, tmp_path):
    with pytest.raises(ReportError, match="no evaluation results for runs 999"):
        write_report(populated, tmp_path / "r.html", run_ids=[999])


@pytest.mark.parametrize("where, message", [
    ("missing/r.html", "does not exist"),
    (".", "is a folder"),
    ("afile/r.html", "is a file, not a folder"),
])
def test_bad_output_paths_are_clear_errors_and_write_nothing(populated, tmp_path, where, message):
    (tmp_path / "afile").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ReportError, match=message):
        write_report(populated, tmp_path / where)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unwritable_folder_is_a_clear_error(populated, tmp_path):
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: use a folder no one can create in
        target = Path("/proc/synthlab-report.html")
    else:
        folder = tmp_path / "ro"
        folder.mkdir(mode=0o500)
        target = folder / "r.html"
    with pytest.raises(ReportError, match="cannot write the report to"):
        write_report(populated, target)
    assert not target.exists()


def cli(home, *args):
    return subprocess.run([sys.executable, "-m", "core", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=180, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_cli_report_prints_json_last(populated, tmp_path):
    proc = cli(populated.root, "report", "--out", str(tmp_path / "r.html"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"report": str(tmp_path / "r.html")}
    assert check_self_contained(Path(out["report"]).read_text(encoding="utf-8")) == []


def test_cli_report_user_errors_exit_2_with_one_line(populated, store, tmp_path):
    proc = cli(populated.root, "report", "--out", str(tmp_path / "nope" / "r.html"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    empty = cli(tmp_path / "empty-home", "report", "--out", str(tmp_path / "r.html"))
    assert empty.returncode == 2 and "train and evaluate first" in empty.stderr
    assert not (tmp_path / "r.html").exists()


def test_report_renders_its_charts_with_the_network_off(populated, tmp_path, browser):
    out = write_report(populated, tmp_path / "r.html")
    expected = len(figures_in(out.read_text(encoding="utf-8")))
    requested = []
    context = browser.new_context(offline=True)
    try:
        page = context.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (requested.append(route.request.url), route.abort()))
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(out.as_uri(), wait_until="load")
        page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {expected}",
                               timeout=60_000)
        drawn = page.evaluate("document.querySelectorAll('.plotly-graph-div .main-svg').length")
        lines = page.evaluate("document.querySelectorAll('.plotly-graph-div .scatterlayer .trace').length")
    finally:
        context.close()
    assert errors == [] and requested == []
    assert drawn >= expected and lines > 0
