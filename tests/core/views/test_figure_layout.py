"""Every chart reads at a glance (issue 25), checked on the figures themselves for every chart the pages and the
report draw: no text on the plot but the labels of reference lines (warnings are the caption, layout.meta
notes), value axes that hold every mean and both ends of every interval, and at most twenty x tick labels
however many runs or counts there are. The browser side (no text drawn over text) is tests/e2e/test_screenshots.py."""

from __future__ import annotations

import pytest

from core.views import axes, charts, diagnostic_views, quicktest
from tests.core.views.test_charts import A, result


def drawn_y(fig) -> list[float]:
    """Every y value a figure draws: markers and both ends of each error bar."""
    out = []
    for trace in fig.data:
        if trace.type not in ("scatter", "bar") or trace.y is None:
            continue
        bar = trace.error_y
        plus = list(bar.array) if bar is not None and bar.array is not None else [0] * len(trace.y)
        minus = list(bar.arrayminus) if bar is not None and bar.arrayminus is not None else plus
        out += [v for y, up, down in zip(trace.y, plus, minus) if y is not None for v in (y, y + up, y - down)]
    return out


def x_labels(fig) -> int:
    """How many x tick labels the figure draws: its tick array, else one per distinct category."""
    axis = fig.layout.xaxis
    if axis.tickmode == "array" and axis.tickvals is not None:
        return len(axis.ticktext if axis.ticktext is not None else axis.tickvals)
    if axis.type == "category":
        return len({x for t in fig.data for x in (t.x or ())})
    return 0  # plotly's automatic ticks: it spaces them itself


def check_readable(fig) -> None:
    """The three rules, on any plotly figure."""
    lines = {round(s.y0, 9) for s in fig.layout.shapes if s.y0 is not None and s.y0 == s.y1}
    for note in fig.layout.annotations:
        on_line = note.yref == "y" and round(note.y, 9) in lines  # a reference line's own label, beside it
        outside = note.yref == "paper" and not 0 <= note.y <= 1  # above or below the plot area
        assert on_line or outside, f"text on the plot: {note.text!r} at {note.xref},{note.yref} ({note.x}, {note.y})"
        assert note.text not in axes.figure_notes(fig), f"a warning drawn on the chart: {note.text!r}"
    y_range = fig.layout.yaxis.range
    if y_range is not None and fig.layout.yaxis.type != "log":
        values = drawn_y(fig) + sorted(lines)
        assert y_range[0] <= min(values) and max(values) <= y_range[1], (y_range, min(values), max(values))
    assert x_labels(fig) <= axes.MAX_LABELS


@pytest.fixture
def many():
    """Two sweeps (64 px and 256 px) at 25 counts × 3 repeats, a real-only arm, a zero-shot baseline; accuracies
    near 1 with intervals, and repeats overlapping (so the charts carry notes)."""
    rs, run = [], 0
    for size, real in ((64, 0.0), (256, 0.0), (64, 1.0)):
        for c, count in enumerate(range(10, 260, 10)):
            for repeat in range(3):
                run += 1
                acc = min(0.9 + 0.004 * c + 0.01 * repeat, 1.0)
                r = result(run, count, repeat, 0.2 + 0.03 * c, size=size, real=real, accuracy=acc,
                           slice_id=1000 + run)
                r.update(accuracy_ci=[acc - 0.03, min(acc + 0.03, 1.0)], input_px=224, repeat_overlap=0.9,
                         test_images=200, test_set="one")
                if real:
                    r["slice_name"] = "clothes-real"
                rs.append(r)
    rs.append(result(run + 1, 0, 0, 0.5, accuracy=0.97))
    return rs


@pytest.mark.parametrize("error", list(charts.ERRORS))
def test_every_count_chart_keeps_text_off_the_plot_fits_its_intervals_and_draws_at_most_20_labels(many, error):
    figures = [charts.probability_vs_count(many, A, error=error), charts.true_tag_probability_vs_count(many, error=error)]
    figures += [charts.metrics_vs_count(many, metric, error=error) for metric in charts.METRICS]
    for fig in figures:
        check_readable(fig)
        assert fig.layout.meta["notes"]  # the warnings exist — as the caption
    metric = figures[2]
    assert any(s.y0 == s.y1 for s in metric.layout.shapes) and metric.layout.annotations  # the zero-shot line is labelled
    if error == "std":  # repeat spread only (the test-set part of these hand-made results, 2 photos, is wide)
        assert metric.layout.yaxis.range[0] > 0.5  # accuracies near 1 are not flattened on a 0–1 axis


def test_the_across_runs_chart_the_confusion_matrix_and_the_quick_test_bars_read(many):
    check_readable(charts.image_history(many, A))  # 226 runs
    check_readable(charts.confusion_matrix(many[0]))
    rows = [{"run": r["run"], "label": f"run {r['run']}", "probabilities": r["per_image"][0]["probabilities"]}
            for r in many[:3]]
    check_readable(quicktest.bars_figure(rows))


def test_the_diagnostics_spectra_read():
    freq = [i / 20 for i in range(15)]
    result = {"spectrum": {"64": {"frequency": freq, "synthetic": [1 / (1 + f) for f in freq],
                                  "real": [0.5 / (1 + f) for f in freq], "log_ratio_2d": [[0.1, -0.2], [0.3, 0.0]]}}}
    check_readable(diagnostic_views.spectrum_figure(result))
    check_readable(diagnostic_views.spectrum_ratio_figure(result, "64"))


def test_the_check_itself_finds_planted_text_on_the_plot_a_clipped_interval_and_too_many_labels(many):
    import plotly.graph_objects as go

    fig = charts.metrics_vs_count(many, "accuracy")
    fig.add_annotation(text="repeats overlap 90%", xref="paper", yref="paper", x=0.5, y=0.5)
    with pytest.raises(AssertionError, match="text on the plot"):
        check_readable(fig)
    fig = charts.metrics_vs_count(many, "accuracy")
    fig.update_layout(yaxis_range=[0.95, 1.0])
    with pytest.raises(AssertionError):
        check_readable(fig)
    crowded = go.Figure(go.Scatter(x=[f"run {i}" for i in range(36)], y=[0.5] * 36))
    crowded.update_layout(xaxis={"type": "category"})
    with pytest.raises(AssertionError):
        check_readable(crowded)
