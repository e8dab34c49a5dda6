"""No table shows the literal ``None`` (issue 25 item 5): every table of the pages gives Streamlit the one
placeholder for missing cells (:data:`core.views.tables.MISSING`), the table data keeps a missing number missing
(never the text "None"), and Compare shows each result once, in its table."""

from __future__ import annotations

import ast
from pathlib import Path

from core.views import result_tabs, run_views, tables

ROOT = Path(__file__).resolve().parents[3]


def test_every_table_on_every_page_shows_missing_cells_as_a_dash():
    calls = []
    for source in sorted((ROOT / "pages").glob("*.py")) + [ROOT / "core" / "ui.py"]:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "dataframe":
                given = {k.arg: k.value for k in node.keywords}
                calls.append((source.name, node.lineno, ast.unparse(given.get("placeholder", ast.Constant(None)))))
    assert len(calls) >= 10
    assert all(p in ("MISSING", "tables.MISSING") for _, _, p in calls), [c for c in calls if "MISSING" not in c[2]]
    assert tables.MISSING == "—"


def test_a_queued_runs_missing_numbers_stay_missing_never_the_text_none():
    queued = {"id": 7, "slice_name": "real", "count_per_tag": 10, "size": 256, "input_px": None, "real_fraction": 1.0,
              "repeat": 0, "backend": "local", "mode": "probe", "status": "queued", "accuracy": None,
              "accuracy_ci": None, "time": None, "error": None}
    [row] = run_views.run_rows([queued])
    assert row["accuracy"] is None and row["input px"] is None and row["time (s)"] is None  # the placeholder's cells
    assert row["95% interval"] == "" and row["error"] == ""
    assert "None" not in {str(v) for k, v in row.items() if v is not None}


def test_compare_shows_each_result_once_and_identical_repeats_in_words():
    compared = {"comparisons": [
        {"count_per_tag": 10, "a": 0.9, "b": 0.85, "difference": 0.05, "ci": [0.01, 0.09], "p_value": 0.012,
         "verdict": "a better", "repeats": [3, 3], "advice": "the design detects differences of 0.04"},
        {"count_per_tag": 30, "a": 0.95, "b": 0.95, "difference": 0.0, "ci": [0.0, 0.0], "p_value": 1.0,
         "verdict": "within noise", "repeats": [3, 3], "note": "identical repeats"}]}
    first, same = result_tabs.comparison_rows(compared)
    assert first["95% interval"] == "[+0.010, +0.090]" and first["p-value"] == 0.012
    assert first["note"] == "the design detects differences of 0.04"
    assert same["95% interval"] == "identical repeats — no spread to measure" and same["p-value"] is None
    assert not any("→" in str(v) for row in (first, same) for v in row.values())  # no sentence form
    page = (ROOT / "pages" / "results.py").read_text()
    assert "compare.sentence" not in page  # the table is not repeated as text
