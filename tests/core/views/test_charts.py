"""Chart functions on hand-built result dicts (they are pure functions of the results list)."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
from scipy import stats

from core.errors import InvalidInput, NotFound
from core.views import axes, charts, tables

TAGS = ["jeans", "shoes"]


def result(run, count, repeat, p_jeans_on_a, *, size=64, real=0.0, backend="local", slice_id=None,
           accuracy=0.5, f1=0.4, ap=(0.6, 0.8), p_shoes_on_b=0.7):
    """A result as core.analysis.evaluation returns it: image 'a' is jeans, image 'b' is shoes."""
    a = {"jeans": p_jeans_on_a, "shoes": 1 - p_jeans_on_a}
    b = {"jeans": 1 - p_shoes_on_b, "shoes": p_shoes_on_b}
    pred_a = "jeans" if a["jeans"] >= a["shoes"] else "shoes"
    pred_b = "jeans" if b["jeans"] >= b["shoes"] else "shoes"
    matrix = [[int(pred_a == "jeans"), int(pred_a == "shoes")], [int(pred_b == "jeans"), int(pred_b == "shoes")]]
    baseline = count == 0
    return {
        "run": run, "slice": None if baseline else (slice_id or 100 + run), "count_per_tag": count,
        "size": None if baseline else size, "real_fraction": None if baseline else real, "repeat": repeat,
        "backend": backend, "accuracy": accuracy, "macro_f1": f1, "log_loss": 0.9,
        "slice_name": None if baseline else f"clothes-{size}",
        "per_tag": {"jeans": {"precision": 1, "recall": 1, "f1": 1, "average_precision": ap[0], "support": 1},
                    "shoes": {"precision": 1, "recall": 1, "f1": 1, "average_precision": ap[1], "support": 1}},
        "confusion": {"labels": TAGS, "matrix": matrix},
        "per_image": [{"image": "a" * 64, "tag": "jeans", "probabilities": a},
                      {"image": "b" * 64, "tag": "shoes", "probabilities": b}],
    }


A, B = "a" * 64, "b" * 64
P10 = [0.2, 0.4, 0.9]   # p(jeans | image a) over three repeats at 10 per tag, 64 px
P30 = [0.7, 0.8, 0.75]
ACC10 = [0.5, 0.6, 0.7]


@pytest.fixture
def results():
    rs = [result(1 + i, 10, i, p, accuracy=acc) for i, (p, acc) in enumerate(zip(P10, ACC10))]
    rs += [result(4 + i, 30, i, p, accuracy=0.9) for i, p in enumerate(P30)]
    rs += [result(7, 10, 0, 0.3, size=32, accuracy=0.4)]
    rs += [result(8, 0, 0, 0.55, accuracy=0.25, backend="local", p_shoes_on_b=0.45)]
    return rs


def line(fig, key, size):
    found = [t for t in fig.data if t.meta and t.meta["key"] == key and not t.meta["baseline"]
             and t.meta["size"] == size]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def test_probability_vs_count_has_one_line_per_tag_and_variant_with_repeat_error_bars(results):
    fig = charts.probability_vs_count(results, A, error="std")
    lines = [t for t in fig.data if not t.meta["baseline"]]
    assert sorted((t.meta["key"], t.meta["size"]) for t in lines) == [
        ("jeans", 32), ("jeans", 64), ("shoes", 32), ("shoes", 64)]
    jeans = line(fig, "jeans", 64)
    assert list(jeans.x) == [10, 30]
    assert jeans.y[0] == pytest.approx(statistics.fmean(P10))
    assert jeans.y[1] == pytest.approx(statistics.fmean(P30))
    assert list(jeans.error_y.array) == pytest.approx([statistics.stdev(P10), statistics.stdev(P30)])
    assert jeans.meta["n"] == [3, 3]
    shoes = line(fig, "shoes", 64)
    assert list(shoes.y) == pytest.approx([1 - statistics.fmean(P10), 1 - statistics.fmean(P30)])
    single = line(fig, "jeans", 32)
    assert list(single.x) == [10] and list(single.error_y.array) == [0.0]
    assert jeans.line.dash != single.line.dash and jeans.line.color != shoes.line.color
    # hover names the runs, slice and backend behind each point
    runs, slice_name, backend, n, err, arm, lower, upper = jeans.customdata[0]
    assert runs == "1, 2, 3" and slice_name == "clothes-64" and backend == "local" and n == 3
    assert 0.0 <= lower <= jeans.y[0] <= upper <= 1.0
    assert "%{customdata[0]}" in jeans.hovertemplate and "backend" in jeans.hovertemplate
    # the zero-shot baseline sits at x = 0, one marker per tag
    base = [t for t in fig.data if t.meta["baseline"]]
    assert sorted(t.meta["key"] for t in base) == TAGS
    assert all(list(t.x) == [0] for t in base)
    assert [t for t in base if t.meta["key"] == "jeans"][0].y[0] == pytest.approx(0.55)
    assert list(fig.layout.xaxis.tickvals) == [0, 10, 30]


def test_ci95_error_bars_use_the_t_interval(results):
    fig = charts.probability_vs_count(results, A, error="ci95")
    expected = stats.t.ppf(0.975, 2) * statistics.stdev(P10) / math.sqrt(3)
    mean = statistics.fmean(P10)
    bars = line(fig, "jeans", 64).error_y  # the t interval, cut where it would leave [0, 1]
    assert bars.array[0] == pytest.approx(min(expected, 1 - mean)) and bars.arrayminus[0] == pytest.approx(min(expected, mean))
    assert bars.symmetric is False
    with pytest.raises(InvalidInput, match="error must be one of"):
        charts.probability_vs_count(results, A, error="iqr")


def test_unknown_image_is_a_clear_error(results):
    with pytest.raises(NotFound, match="has no predictions"):
        charts.probability_vs_count(results, "f" * 64)
    with pytest.raises(NotFound, match="has no predictions"):
        charts.image_history(results, "f" * 64)


def test_true_tag_probability_averages_over_the_images_of_each_tag(results):
    fig = charts.true_tag_probability_vs_count(results)
    jeans = line(fig, "jeans", 64)
    assert list(jeans.y) == pytest.approx([statistics.fmean(P10), statistics.fmean(P30)])
    shoes = line(fig, "shoes", 64)
    assert list(shoes.y) == pytest.approx([0.7, 0.7]) and list(shoes.error_y.array) == pytest.approx([0, 0])
    base = {t.meta["key"]: t.y[0] for t in fig.data if t.meta["baseline"]}
    assert base == pytest.approx({"jeans": 0.55, "shoes": 0.45})


def test_metrics_vs_count_lines_per_variant_and_baseline_reference_line(results):
    fig = charts.metrics_vs_count(results, "accuracy", error="std")
    lines = [t for t in fig.data if not t.meta["baseline"]]
    assert sorted(t.meta["size"] for t in lines) == [32, 64]
    acc = [t for t in lines if t.meta["size"] == 64][0]
    assert list(acc.x) == [10, 30]
    assert list(acc.y) == pytest.approx([0.6, 0.9])
    assert list(acc.error_y.array) == pytest.approx([statistics.stdev(ACC10), 0.0])
    assert [s.y0 for s in fig.layout.shapes] == pytest.approx([0.25])
    ap = charts.metrics_vs_count(results, "average_precision")
    assert [t for t in ap.data if not t.meta["baseline"] and t.meta["size"] == 64][0].y[0] == pytest.approx(0.7)
    with pytest.raises(InvalidInput, match="metric must be one of"):
        charts.metrics_vs_count(results, "auc")


def test_confusion_matrix_cells_and_the_images_behind_them(results):
    r = results[0]  # image a: p(jeans)=0.2 → predicted shoes; image b → shoes
    fig = charts.confusion_matrix(r)
    heat = fig.data[0]
    assert heat.type == "heatmap" and [list(row) for row in heat.z] == [[0, 1], [0, 1]]
    assert list(heat.x) == TAGS and list(heat.y) == TAGS
    cells = fig.data[1]
    assert [list(c) for c in cells.customdata] == [["jeans", "jeans", 0], ["jeans", "shoes", 1],
                                                   ["shoes", "jeans", 0], ["shoes", "shoes", 1]]
    assert charts.confusion_cell_images(r, "jeans", "shoes") == [A]
    assert charts.confusion_cell_images(r, "shoes", "shoes") == [B]
    assert charts.confusion_cell_images(r, "jeans", "jeans") == []
    for i, t in enumerate(TAGS):
        for j, p in enumerate(TAGS):
            assert len(charts.confusion_cell_images(r, t, p)) == r["confusion"]["matrix"][i][j]
    # what st.plotly_chart(on_select=...) hands back after a click on a cell
    event = {"selection": {"points": [{"curve_number": 1, "x": "shoes", "y": "jeans",
                                       "customdata": ["jeans", "shoes", 1]}], "point_indices": [1],
                           "box": [], "lasso": []}}
    assert charts.cell_from_selection(event) == ("jeans", "shoes")
    assert charts.cell_from_selection({"selection": {"points": [{"x": "jeans", "y": "shoes"}]}}) == ("shoes", "jeans")
    assert charts.cell_from_selection({"selection": {"points": []}}) is None
    assert charts.cell_from_selection(None) is None


def test_image_history_follows_every_run_and_counts_flips(results):
    fig = charts.image_history(results, A)
    per_tag = [t for t in fig.data if t.name in TAGS]
    assert len(per_tag) == 2 and all(len(t.x) == len(results) for t in per_tag)
    assert per_tag[0].x[0].endswith("zero-shot")
    predicted = [t for t in fig.data if t.name == "predicted"][0]
    # order: baseline (jeans), 32px n10 (shoes), 64px n10 r0..r2 (shoes, shoes, jeans), n30 (jeans ×3)
    assert list(predicted.text) == ["jeans", "shoes", "shoes", "shoes", "jeans", "jeans", "jeans", "jeans"]
    flips = charts.flip_counts(results)
    assert flips[A] == 2 and flips[B] == 1
    assert "changes 2×" in fig.layout.title.text


def test_results_frame_and_csv_round_trip(results):
    df = tables.results_frame(results)
    assert list(df.columns) == list(tables.FRAME_COLUMNS) and len(df) == len(results)
    assert list(df["run"]) == [r["run"] for r in results]
    base = df[df["run"] == 8].iloc[0]
    assert pd.isna(base["slice"]) and base["count_per_tag"] == 0 and base["slice_name"] == "zero-shot · local"
    assert df.loc[df["run"] == 1, "average_precision"].iloc[0] == pytest.approx(0.7)
    text = tables.results_csv(results)
    assert text.splitlines()[0] == ",".join(tables.FRAME_COLUMNS)
    back = tables.read_results_csv(text)
    pd.testing.assert_frame_equal(back, df)


def test_read_results_csv_refuses_other_files():
    with pytest.raises(InvalidInput, match="missing columns"):
        tables.read_results_csv("a,b\n1,2\n")
    with pytest.raises(InvalidInput, match="not a results CSV"):
        tables.read_results_csv("")


def test_scored_images_lists_each_test_image_once(results):
    assert charts.scored_images(results) == [{"image": A, "tag": "jeans"}, {"image": B, "tag": "shoes"}]


def test_combined_error_bars_add_test_set_uncertainty_to_the_repeat_t_interval(results):
    for r, lo_hi in zip(results[:3], ([0.40, 0.60], [0.50, 0.70], [0.60, 0.80])):
        r["accuracy_ci"] = lo_hi
    fig = charts.metrics_vs_count(results, "accuracy")
    acc = [t for t in fig.data if not t.meta["baseline"] and t.meta["size"] == 64][0]
    repeat = stats.t.ppf(0.975, 2) * statistics.stdev(ACC10) / math.sqrt(3)
    test = 1.959963984540054 * (0.2 / (2 * 1.959963984540054))
    assert acc.error_y.array[0] == pytest.approx(math.hypot(repeat, test))
    assert "repeat spread and test-set uncertainty" in fig.layout.title.subtitle.text
    assert fig.layout.legend.title.text.startswith("line = arm")


def test_lines_are_arms_never_mixing_sweeps_or_training_params(results):
    other = [dict(r, run=r["run"] + 100, arm="other-arm", arm_label="other sweep · 64 px")
             for r in results if r["count_per_tag"] == 10 and r["size"] == 64]
    fig = charts.metrics_vs_count(results + other, "accuracy", error="std")
    lines = [t for t in fig.data if not t.meta["baseline"]]
    assert len({t.meta["arm"] for t in lines}) == 3
    mine = [t for t in lines if t.meta["arm"] == "other-arm"][0]
    assert mine.meta["n"] == [3] and mine.name == "other sweep · 64 px"
    twin = [dict(r, run=r["run"] + 300, arm="twin-arm", arm_label="other sweep · 64 px") for r in other]
    names = [t.name for t in charts.metrics_vs_count(results + other + twin, "accuracy").data if not t.meta["baseline"]]
    assert "other sweep · 64 px [other-arm]" in names and "other sweep · 64 px [twin-arm]" in names


def test_chart_says_when_slice_sizes_never_reached_the_model_and_warns_on_overlap(results):
    for r in results:
        r["input_px"] = 32
    results[0]["repeat_overlap"] = results[1]["repeat_overlap"] = 0.8
    results[3]["repeat_overlap"] = 1.0
    fig = charts.metrics_vs_count(results, "accuracy")
    notes = fig.layout.meta["notes"]
    assert any("saw 32 px inputs" in n and "32 px, 64 px" in n for n in notes)
    assert any("repeats overlap 80% at n=10" in n for n in notes)
    assert any("identical repeats at n=30" in n for n in notes)
    texts = [a.text for a in fig.layout.annotations]
    assert not any(n in texts for n in notes) and axes.figure_notes(fig) == notes  # a caption, not over the axis
    for r in results:
        r["input_px"] = r["size"]
        r.pop("repeat_overlap", None)
    assert charts.metrics_vs_count(results, "accuracy").layout.meta["notes"] == []


def test_real_only_arm_is_drawn_as_the_dashed_baseline(results):
    real = [dict(r, run=r["run"] + 200, real_fraction=1.0, slice_name="clothes-real")
            for r in results if r["count_per_tag"] and r["size"] == 64]
    fig = charts.metrics_vs_count(results + real, "accuracy")
    base = [t for t in fig.data if not t.meta["baseline"] and t.meta["real_only"]]
    assert len(base) == 1 and base[0].line.dash == "dash" and base[0].name.startswith("real-only baseline")


def test_accuracy_bars_near_1_stay_inside_0_1_and_the_chart_says_the_test_set_is_shared(results):
    """The audit's case: repeats at 0.995 ± 0.008 on 200 shared test photos drew an upper bar of 1.011. The
    bar now stops at 1, still reaches below the mean by the test-set uncertainty, and the chart says all
    runs were scored on the same photos."""
    for r in results:
        r.update(test_images=200, test_set="one-set")
    for r, acc in zip(results[3:6], (0.9875, 1.0, 0.9975)):
        r["accuracy"] = acc
    fig = charts.metrics_vs_count(results, "accuracy")
    acc = [t for t in fig.data if not t.meta["baseline"] and t.meta["size"] == 64][0]
    assert acc.y[1] + acc.error_y.array[1] <= 1.0 + 1e-12 and acc.error_y.arrayminus[1] > 0.01
    assert all(0.0 <= y - lo and y + hi <= 1.0 + 1e-12
               for y, lo, hi in zip(acc.y, acc.error_y.arrayminus, acc.error_y.array))
    notes = fig.layout.meta["notes"]
    assert any("scored on the same 200 test photos" in n for n in notes)
    results[0]["test_set"] = "another-set"
    assert not any("same 200 test photos" in n for n in charts.metrics_vs_count(results, "accuracy").layout.meta["notes"])
    assert not any("same" in n for n in charts.metrics_vs_count(results, "accuracy", error="std").layout.meta["notes"])


def test_metric_axis_fits_the_data_and_its_intervals_not_zero_to_one(results):
    for r in results:
        r["accuracy"] = 0.95 + 0.01 * (r["run"] % 3)
        r["accuracy_ci"] = [r["accuracy"] - 0.02, min(r["accuracy"] + 0.02, 1.0)]
    fig = charts.metrics_vs_count(results, "accuracy", error="std")
    low, high = fig.layout.yaxis.range
    drawn = [v for t in fig.data for v in t.y]
    ends = [y + up for t in fig.data for y, up in zip(t.y, t.error_y.array)]
    ends += [y - down for t in fig.data for y, down in zip(t.y, t.error_y.arrayminus or t.error_y.array)]
    assert low > 0.5 and high <= 1.03  # near 1.0: not a flat line on a 0–1 axis
    assert low <= min(drawn + ends) and max(drawn + ends) <= high  # every mean and interval end is visible
    assert high - low >= axes.MIN_SPAN


def test_axis_helpers_on_planted_values():
    assert axes.fitted_range([0.97, 0.99, 1.0])[1] <= 1.03 and axes.fitted_range([0.97, 1.0])[0] >= 0.85
    assert axes.fitted_range([0.0, 1.0]) == [-0.02, 1.02]
    assert axes.fitted_range([]) == [-0.02, 1.02]
    low, high = axes.fitted_range([0.5])
    assert low < 0.5 < high and high - low >= axes.MIN_SPAN
    labels = [f"run {i}" for i in range(36)]
    ticks = axes.thinned_ticks(labels)
    assert len(ticks["ticktext"]) <= axes.MAX_LABELS and ticks["tickvals"][0] == "run 0"
    assert ticks["tickvals"][-1] == "run 35"
    assert axes.thinned_ticks(labels[:5])["ticktext"] == labels[:5]


def test_image_history_of_many_runs_draws_at_most_twenty_labels(results):
    many = [dict(results[0], run=100 + i, repeat=i) for i in range(36)]
    fig = charts.image_history(many, A)
    assert len(fig.data[0].x) == 36 and len(fig.layout.xaxis.ticktext) <= axes.MAX_LABELS


def test_combined_bars_of_runs_without_stored_intervals_use_the_runs_own_interval_method():
    """A run without a stored interval gets it from its per-image predictions by the method evaluation uses
    (:func:`core.analysis.intervals.run_intervals`: never zero-width, inside [0, 1]) — every test photo right
    does not draw a bar of zero width."""
    from core.analysis import intervals

    perfect = [result(1 + i, 10, i, 0.9, accuracy=1.0, f1=1.0, p_shoes_on_b=0.9) for i in range(3)]
    fig = charts.metrics_vs_count(perfect, "macro_f1", error="combined")
    point = [t for t in fig.data if not t.meta["baseline"]][0]
    truth, predicted = ["jeans", "shoes"], ["jeans", "shoes"]
    scores = [[0.9, 0.1], [0.1, 0.9]]
    cis = [intervals.run_intervals(truth, predicted, scores, TAGS, seed=r["run"])["macro_f1_ci"] for r in perfect]
    down = statistics.fmean(1.0 - ci[0] for ci in cis)
    lower, upper, _ = intervals.combine_sides([1.0, 1.0, 1.0], down, 0.0)
    assert point.y[0] == 1.0 and upper == 1.0 and lower < 1.0
    assert point.error_y.arrayminus[0] == pytest.approx(1.0 - lower) and point.error_y.array[0] == 0.0
