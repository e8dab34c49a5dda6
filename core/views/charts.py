"""Plotly figures of evaluation results; the Results page and the HTML report draw the same ones.

Every chart is a pure function of the result dicts that :mod:`core.analysis.evaluation` returns (one per
run), so it can be drawn for any subset of runs. A line is an **arm** (:mod:`core.analysis.arms`): runs alike
in everything but their slice's repeat; only they are averaged. Error bars (``error="combined"``, the
default) are 95 % intervals combining the repeat spread (a t interval on R − 1 degrees of freedom) with
the test-set uncertainty (accuracy: the Clopper–Pearson interval of the shared test photos, counted once —
:func:`core.analysis.intervals.arm_interval`; other metrics: the runs' own intervals), asymmetric near 0 and 1 and
never outside [0, 1]; when every run is scored on one test set the chart says so. ``std`` and ``ci95`` show
the repeat spread alone. The chart notes, in words, when lines differ in slice size but their models all saw
one input size, and when repeats overlap (> 50 % shared images, or identical). A real-only arm is drawn
dashed as the baseline; a run with ``count_per_tag == 0`` (or no slice) is a zero-shot baseline:
drawn at x = 0 on probability charts and as a horizontal reference line on metric charts.
:func:`with_slice_names` is the one store lookup.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from typing import Any, Iterable, Optional, Sequence

import plotly.graph_objects as go
from plotly.colors import qualitative

from core.analysis import arms, intervals, stats
from core.data import repeats
from core.errors import InvalidInput, NotFound
from core.views import axes, bars, result_labels

METRICS = {"accuracy": "accuracy", "macro_f1": "macro F1", "average_precision": "average precision (macro)"}
ERRORS = {"combined": "95% interval: repeat spread and test-set uncertainty combined",
          "std": "± 1 standard deviation over repeats (test-set uncertainty not included)",
          "ci95": "95% t-interval over repeats (test-set uncertainty not included)"}
DEFAULT_ERROR = "combined"
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_HOVER = (
    "<b>%{fullData.name}</b><br>images per tag: %{x}<br>mean %{y:.3f} [%{customdata[6]:.3f}, %{customdata[7]:.3f}] "
    "(n=%{customdata[3]})<br>runs: %{customdata[0]}<br>slice: %{customdata[1]}<br>backend: %{customdata[2]}"
    "<br>arm: %{customdata[5]}<extra></extra>"
)


# -- store lookup --------------------------------------------------------------------------------

def with_slice_names(store, results: Iterable[dict]) -> list[dict]:
    """Copies of ``results`` with ``slice_name``, ``encoder`` and ``mode`` filled from the store."""
    names = {r["id"]: r["name"] for r in store.query("SELECT id, name FROM slices")}
    params = {r["id"]: json.loads(r["params"] or "{}") for r in store.query("SELECT id, params FROM runs")}
    out = []
    for r in results:
        p = params.get(r["run"], {})
        out.append({
            **r,
            "slice_name": r.get("slice_name") or names.get(r.get("slice")),
            "encoder": r.get("encoder") or p.get("encoder"),
            "mode": r.get("mode") or p.get("mode"),
        })
    return out


# -- small helpers -------------------------------------------------------------------------------


def tags_of(results: Sequence[dict]) -> list[str]:
    """The tags the results score, in the evaluation's label order."""
    seen: dict[str, None] = {}
    for r in results:
        for t in (r.get("confusion") or {}).get("labels") or sorted(r.get("per_tag") or {}):
            seen.setdefault(t, None)
    return list(seen)


def variant_of(result: dict) -> tuple:
    """What separates one line from another: pixel size, real fraction, backend (and encoder, mode if known)."""
    return (result.get("size"), result.get("real_fraction"), result.get("backend"), result.get("encoder"),
            result.get("mode"))


def variant_label(variant: tuple) -> str:
    size, real, backend, encoder, mode = variant
    parts = [f"{size}px" if size else "original size", f"real {real:.0%}" if real is not None else "real n/a",
             backend or "?"]
    if encoder:
        parts.append(result_labels.short_encoder(encoder))
    if mode and mode not in ("probe", "scratch"):
        parts.append(str(mode))
    return " · ".join(parts)


def arm_key(result: dict) -> str:
    """The arm id a result belongs to (what separates one line from another)."""
    return arms.of_result(result)[0]


def _check_error(error: str) -> None:
    if error not in ERRORS:
        raise InvalidInput(f"error must be one of {', '.join(ERRORS)}, not {error!r}")


def spread(values: Sequence[float], error: str = "std", standard_errors: Sequence[float] = ()) -> float:
    """Error bar half-width: ``combined`` (95 %, repeats and test set, :func:`core.analysis.stats.combined_interval`),
    ``std`` (sample standard deviation over repeats) or ``ci95`` (95 % t-interval over repeats)."""
    _check_error(error)
    if error == "combined":
        return stats.combined_interval(values, standard_errors)["half_width"]
    n = len(values)
    if n < 2:
        return 0.0
    sd = statistics.stdev(values)
    if error == "std":
        return sd
    return stats.t_factor(n) * stats.Z95 * sd / math.sqrt(n)


def predicted_tag(probabilities: dict[str, float], labels: Sequence[str] | None = None) -> str:
    """The tag with the highest probability; ties go to the first in ``labels`` order."""
    order = list(labels) if labels else sorted(probabilities)
    order += [t for t in probabilities if t not in order]
    return max(order, key=lambda t: (probabilities.get(t, float("-inf")), -order.index(t)))


def _per_image(result: dict, image_id: str) -> Optional[dict]:
    return next((p for p in result.get("per_image") or () if p["image"] == image_id), None)


def metric_value(result: dict, metric: str) -> Optional[float]:
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    return result_labels.mean_average_precision(result) if metric == "average_precision" else result.get(metric)


def _colours(keys: Iterable) -> dict:
    palette = qualitative.Plotly + qualitative.D3
    return {k: palette[i % len(palette)] for i, k in enumerate(keys)}


def _join(values: Iterable) -> str:
    return ", ".join(dict.fromkeys(str(v) for v in values))


# -- line charts over count per tag ---------------------------------------------------------------

def _line_figure(points: list[dict], *, keys: list[str], title: str, yaxis: str, error: str,
                 colour_by_variant: bool = False, baseline_lines: bool = False) -> go.Figure:
    """Lines of an arm's mean ± error bar at each count. ``points``: {key, result, value, se} (one per
    run and key; ``se`` the run's test-set standard error, 0 when there is none)."""
    _check_error(error)
    fig = go.Figure()
    lines: dict[tuple, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    baselines: dict[tuple, list] = defaultdict(list)
    labels: dict[str, str] = {}
    for p in points:
        r = p["result"]
        if result_labels.is_baseline(r):
            baselines[(p["key"], result_labels.baseline_label(r))].append(p)
        else:
            aid, label = arms.of_result(r)
            labels[aid] = label
            lines[(p["key"], aid)][int(r["count_per_tag"])].append(p)
    repeated = {label for label in labels.values() if list(labels.values()).count(label) > 1}
    labels = {a: f"{label} [{a}]" if label in repeated else label for a, label in labels.items()}
    order = sorted(labels, key=lambda a: (_real_only(lines, a), labels[a], a))
    colour = _colours(order if colour_by_variant else keys)
    dash = {a: _DASHES[i % len(_DASHES)] for i, a in enumerate(order)}
    counts = sorted({c for by_count in lines.values() for c in by_count} | ({0} if baselines else set()))
    for key in keys:
        for aid in order:
            by_count = lines.get((key, aid))
            if not by_count:
                continue
            xs = sorted(by_count)
            point_stats = [_stats(by_count[x], error) for x in xs]
            first = by_count[xs[0]][0]["result"]
            real_only = _real_only(lines, aid)
            name = labels[aid] if colour_by_variant else f"{key} · {labels[aid]}"
            if real_only and colour_by_variant:
                name = f"real-only baseline · {name}"
            line_dash = ("dash" if real_only else "solid") if colour_by_variant else dash[aid]
            fig.add_trace(go.Scatter(
                x=xs, y=[s["mean"] for s in point_stats], mode="lines+markers", name=name,
                legendgroup=str(key),
                line={"color": colour[aid if colour_by_variant else key], "dash": line_dash},
                error_y=bars.error_bars(point_stats),
                customdata=[[s["runs"], s["slices"], s["backend"], s["n"], s["err"], aid, s["lower"], s["upper"]]
                            for s in point_stats],
                hovertemplate=_HOVER,
                meta={"key": key, "arm": aid, "arm_label": labels[aid], "size": first.get("size"),
                      "real_fraction": first.get("real_fraction"), "backend": first.get("backend"),
                      "encoder": first.get("encoder"), "mode": first.get("mode"), "real_only": real_only,
                      "n": [s["n"] for s in point_stats], "overlap": [s["overlap"] for s in point_stats],
                      "baseline": False},
            ))
    for (key, base), group in baselines.items():
        s = _stats(group, error)
        backend = group[0]["result"].get("backend")
        label = base if baseline_lines else f"{key} · {base}"
        if baseline_lines:
            fig.add_hline(y=s["mean"], line_dash="dot", line_color="grey",
                          annotation_text=f"{label}: {s['mean']:.3f}", annotation_position="bottom right")
        fig.add_trace(go.Scatter(
            x=[0], y=[s["mean"]], mode="markers", name=label, legendgroup=str(key),
            marker={"symbol": "diamond", "size": 11, "color": "grey" if baseline_lines else colour[key]},
            error_y=bars.error_bars([s]),
            customdata=[[s["runs"], s["slices"], s["backend"], s["n"], s["err"], "zero-shot", s["lower"], s["upper"]]],
            hovertemplate=_HOVER, meta={"key": key, "backend": backend, "n": [s["n"]], "baseline": True},
        ))
    results_here = [p["result"] for p in points if not result_labels.is_baseline(p["result"])]
    notes = chart_notes(results_here, lines)
    shared = bars.shared_test_set_note(results_here, error)
    notes += [shared] if shared else []
    fig.update_layout(
        title={"text": title, "subtitle": {"text": f"error bars: {ERRORS[error]}"}},
        template="plotly_white", hovermode="closest",
        legend_title_text="line = arm (runs alike but for the repeat)" if colour_by_variant
        else "line = tag · arm (runs alike but for the repeat)",
        margin={"t": 90, "b": 80}, meta={"notes": notes, "error": error},
        xaxis={"title": {"text": "images per tag"}, **axes.thinned_ticks(counts)},  # at most 20 count labels
        yaxis={"title": {"text": yaxis}, "range": axes.fitted_range(_drawn_values(fig))},
    )
    return fig  # the notes are the chart's caption (axes.figure_notes), never text over the axis title


def _drawn_values(fig: go.Figure) -> list:
    """Every y a chart draws: the means and both ends of each error bar."""
    out: list = []
    for trace in fig.data:
        ys = list(trace.y or [])
        bar = trace.error_y
        plus = list(bar.array or []) if bar is not None and bar.array is not None else [0] * len(ys)
        minus = list(bar.arrayminus or plus) if bar is not None and bar.arrayminus is not None else plus
        for y, up, down in zip(ys, plus, minus):
            if y is not None:
                out += [y, y + (up or 0), y - (down or 0)]
    return out


def _real_only(lines: dict, aid: str) -> bool:
    for (_, a), by_count in lines.items():
        if a == aid:
            return any(p["result"].get("real_fraction") == 1.0 for ps in by_count.values() for p in ps)
    return False


def input_px_note(results: Sequence[dict]) -> Optional[str]:
    """When the lines differ in slice size but every model saw one input size, say so."""
    sizes = {r.get("size") for r in results}
    seen = {r.get("input_px") for r in results}
    if len(sizes) > 1 and len(seen) == 1 and None not in seen:
        shown = ", ".join(f"{s} px" if s else "original" for s in sorted(sizes, key=lambda s: s or 0))
        return (f"Every model here saw {seen.pop()} px inputs: the slice sizes ({shown}) did not reach "
                f"the models, so differences between them are not about resolution.")
    return None


def chart_notes(results: Sequence[dict], lines: Optional[dict] = None) -> list[str]:
    """Plain-words notes for a chart: one input size behind several slice sizes; repeats that overlap."""
    notes = [n for n in (input_px_note(results),) if n]
    flagged: dict[str, list[str]] = defaultdict(list)
    for r in results:
        note = repeats.overlap_note(r.get("repeat_overlap"))
        if note:
            text = "identical repeats" if note.startswith("identical") else f"repeats overlap {r['repeat_overlap']:.0%}"
            flagged[text].append(f"n={r['count_per_tag']}")
    for text, where in flagged.items():
        where = sorted(set(where), key=lambda w: int(w[2:]))
        tail = (" (the count reaches the pool: every repeat holds the same images, so the bar shows no "
                "repeat spread)" if text == "identical repeats"
                else " (over 50 % shared images: the bars understate the spread of another draw)")
        notes.append(f"Warning: {text} at {', '.join(where)}{tail}.")
    return notes


def _stats(points: list[dict], error: str) -> dict:
    values = [float(p["value"]) for p in points]
    results = [p["result"] for p in points]
    overlaps = [r.get("repeat_overlap") for r in results if r.get("repeat_overlap") is not None]
    mean = statistics.fmean(values)
    lower, upper = bars.point_interval(points, values, mean, error, spread)
    return {
        "mean": mean,
        "err": max(mean - lower, upper - mean),
        "lower": lower,
        "upper": upper,
        "n": len(values),
        "runs": _join(r["run"] for r in results),
        "slices": _join(result_labels.slice_label(r) for r in results),
        "backend": _join(r.get("backend") for r in results),
        "overlap": statistics.fmean(overlaps) if overlaps else None,
    }


def _metric_interval(result: dict, metric: str) -> Optional[list]:
    """A run's 95 % test-set interval for ``metric``: its stored one, else computed from its per-image
    probabilities by the method evaluation stores (:func:`core.analysis.intervals.run_intervals`)."""
    interval = result.get(f"{metric}_ci")
    if interval is None and result.get("per_image"):
        per_image = result["per_image"]
        tags = tags_of([result])
        truth = [p["tag"] for p in per_image]
        predicted = [predicted_tag_of(p, tags) for p in per_image]
        scores = [[p["probabilities"].get(t, 0.0) for t in tags] for p in per_image]
        interval = intervals.run_intervals(truth, predicted, scores, tags,
                                           seed=int(result.get("run") or 0)).get(f"{metric}_ci")
    return interval


def probability_vs_count(results: Sequence[dict], image_id: str, error: str = DEFAULT_ERROR) -> go.Figure:
    """One test image: predicted probability of each tag against images per tag (one line per tag)."""
    keys = tags_of(results)
    points, true_tag = [], None
    for r in results:
        pi = _per_image(r, image_id)
        if pi is None:
            continue
        true_tag = pi["tag"]
        points += [{"key": t, "result": r, "value": pi["probabilities"][t]} for t in keys if t in pi["probabilities"]]
    if not points:
        raise NotFound(f"test image {image_id[:12]} has no predictions in the chosen runs")
    return _line_figure(points, keys=keys, error=error, yaxis="predicted probability",
                        title=f"Predicted probability per tag · test image {image_id[:12]} (true tag: {true_tag})")


def true_tag_probability_vs_count(results: Sequence[dict], error: str = DEFAULT_ERROR) -> go.Figure:
    """Mean probability given to the right tag over all test images of that tag, per tag."""
    keys = tags_of(results)
    points = []
    for r in results:
        for t in keys:
            values = [p["probabilities"].get(t, 0.0) for p in r.get("per_image") or () if p["tag"] == t]
            if values:
                se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
                points.append({"key": t, "result": r, "value": statistics.fmean(values), "se": se})
    if not points:
        raise NotFound("the chosen runs have no test-image predictions")
    return _line_figure(points, keys=keys, error=error, yaxis="mean probability of the true tag",
                        title="Probability of the true tag, averaged over the test images of each tag")


def metrics_vs_count(results: Sequence[dict], metric: str = "accuracy", error: str = DEFAULT_ERROR) -> go.Figure:
    """A metric on the labelled test set against images per tag; one line per arm, real-only arms dashed
    as the baseline, zero-shot runs as reference lines."""
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    _check_error(error)
    label = METRICS[metric]
    points = [{"key": label, "result": r, "value": v, **(bars.test_part(r, metric, _metric_interval) if error == "combined" else {})}
              for r in results if (v := metric_value(r, metric)) is not None and not math.isnan(v)]
    if not points:
        raise NotFound(f"the chosen runs have no {label}")
    return _line_figure(points, keys=[label], error=error, yaxis=label, colour_by_variant=True,
                        baseline_lines=True, title=f"{label[0].upper() + label[1:]} on the test set vs images per tag")


# -- one run, one image ----------------------------------------------------------------------------

def confusion_matrix(result: dict) -> go.Figure:
    """Heatmap of true × predicted tag counts. The cell markers on top make cells selectable in Streamlit."""
    labels = list(result["confusion"]["labels"])
    matrix = result["confusion"]["matrix"]
    cells = [(t, p, matrix[i][j]) for i, t in enumerate(labels) for j, p in enumerate(labels)]
    fig = go.Figure(go.Heatmap(
        z=matrix, x=labels, y=labels, colorscale="Blues", showscale=False, hoverinfo="skip",
        texttemplate="%{z}", textfont={"size": 16},
    ))
    fig.add_trace(go.Scatter(
        x=[c[1] for c in cells], y=[c[0] for c in cells], mode="markers", name="cells",
        marker={"symbol": "square", "size": 40, "color": "rgba(0,0,0,0)"},
        customdata=[[c[0], c[1], c[2]] for c in cells], showlegend=False,
        hovertemplate="true %{customdata[0]} → predicted %{customdata[1]}: %{customdata[2]} images<extra></extra>",
    ))
    fig.update_layout(
        title=f"Confusion matrix · run {result['run']} ({result_labels.slice_label(result)}, n={result.get('count_per_tag')})",
        template="plotly_white",
        xaxis={"title": {"text": "predicted tag"}, "type": "category", "side": "bottom"},
        yaxis={"title": {"text": "true tag"}, "type": "category", "autorange": "reversed"},
    )
    return fig


def cell_from_selection(selection: Any) -> Optional[tuple[str, str]]:
    """``(true tag, predicted tag)`` of the first cell in a ``st.plotly_chart`` selection, or None."""
    points = (selection or {}).get("selection", selection or {}).get("points") or []
    for point in points:
        data = point.get("customdata")
        if isinstance(data, (list, tuple)) and len(data) >= 2:
            return str(data[0]), str(data[1])
        if point.get("x") is not None and point.get("y") is not None:
            return str(point["y"]), str(point["x"])
    return None


def confusion_cell_images(result: dict, true_tag: str, predicted_tag: str) -> list[str]:
    """The test images of ``true_tag`` that the run predicted as ``predicted_tag``."""
    labels = (result.get("confusion") or {}).get("labels")
    return [p["image"] for p in result.get("per_image") or ()
            if p["tag"] == true_tag and predicted_tag_of(p, labels) == predicted_tag]


def predicted_tag_of(per_image: dict, labels: Sequence[str] | None = None) -> str:
    return per_image.get("predicted") or predicted_tag(per_image["probabilities"], labels)


def history_order(results: Sequence[dict]) -> list[dict]:
    """Runs in reading order: baselines, then by variant, images per tag, repeat and run id."""
    return sorted(results, key=lambda r: (not result_labels.is_baseline(r), tuple(str(x) for x in variant_of(r)),
                                          r.get("count_per_tag") or 0, r.get("repeat") or 0, r["run"]))


def run_label(r: dict) -> str:
    if result_labels.is_baseline(r):
        return f"run {r['run']} · zero-shot"
    return f"run {r['run']} · n={r['count_per_tag']} · {r.get('size') or 'orig'}px · real {r.get('real_fraction', 0):.0%} · r{r.get('repeat')}"


def image_history(results: Sequence[dict], image_id: str) -> go.Figure:
    """One test image's probabilities across every run; ✕ marks the predicted tag, so flips stand out."""
    keys = tags_of(results)
    rows = [(r, pi) for r in history_order(results) if (pi := _per_image(r, image_id)) is not None]
    if not rows:
        raise NotFound(f"test image {image_id[:12]} has no predictions in the chosen runs")
    x = [run_label(r) for r, _ in rows]
    colour = _colours(keys)
    fig = go.Figure()
    for t in keys:
        fig.add_trace(go.Scatter(
            x=x, y=[pi["probabilities"].get(t) for _, pi in rows], mode="lines+markers", name=t,
            line={"color": colour[t]}, customdata=[[r.get("backend"), result_labels.slice_label(r)] for r, _ in rows],
            hovertemplate=f"{t}: %{{y:.3f}}<br>%{{x}}<br>slice %{{customdata[1]}} · %{{customdata[0]}}<extra></extra>",
        ))
    predicted = [predicted_tag_of(pi, keys) for _, pi in rows]
    fig.add_trace(go.Scatter(
        x=x, y=[pi["probabilities"].get(p) for (_, pi), p in zip(rows, predicted)], mode="markers",
        name="predicted", marker={"symbol": "x", "size": 12, "color": "black"}, text=predicted,
        hovertemplate="predicted %{text}<extra></extra>",
    ))
    true_tag = rows[0][1]["tag"]
    flips = sum(a != b for a, b in zip(predicted, predicted[1:]))
    fig.update_layout(
        title=f"Test image {image_id[:12]} across runs (true tag: {true_tag}, prediction changes {flips}×)",
        template="plotly_white",
        xaxis={"title": {"text": "run"}, "type": "category", "tickangle": -35, **axes.thinned_ticks(x)},
        yaxis={"title": {"text": "predicted probability"}, "range": [-0.02, 1.02]},
    )
    return fig


def flip_counts(results: Sequence[dict]) -> dict[str, int]:
    """How often each test image's predicted tag changes from run to run (in :func:`history_order`)."""
    labels = tags_of(results)
    predicted: dict[str, list[str]] = defaultdict(list)
    for r in history_order(results):
        for pi in r.get("per_image") or ():
            predicted[pi["image"]].append(predicted_tag_of(pi, labels))
    return {image: sum(a != b for a, b in zip(p, p[1:])) for image, p in predicted.items()}


def scored_images(results: Sequence[dict]) -> list[dict]:
    """``[{"image", "tag"}]`` of every test image the results score, by tag then id."""
    seen = {pi["image"]: pi["tag"] for r in results for pi in r.get("per_image") or ()}
    return [{"image": i, "tag": t} for i, t in sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))]
