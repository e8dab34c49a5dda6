"""Plotly figures of evaluation results; the Results page and the HTML report draw the same ones.

Every chart is a pure function of the result dicts that :mod:`core.evaluation` returns (one per
run), so it can be drawn for any subset of runs. Runs that differ only in their slice's ``repeat``
are the same experiment point: they are averaged and their spread becomes the error bar. A run with
``count_per_tag == 0`` (or no slice) is a zero-shot baseline: drawn at x = 0 on probability charts
and as a horizontal reference line on metric charts. :func:`with_slice_names` is the one store
lookup: it adds each run's slice name, encoder and mode for the hover texts, legends and tables.
"""

from __future__ import annotations

import io
import json
import math
import statistics
from collections import defaultdict
from typing import Any, Iterable, Optional, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from .errors import InvalidInput, NotFound

METRICS = {"accuracy": "accuracy", "macro_f1": "macro F1", "average_precision": "average precision (macro)"}
ERRORS = {"std": "± 1 standard deviation over repeats", "ci95": "95% confidence interval over repeats"}
FRAME_COLUMNS = (
    "run", "slice", "slice_name", "backend", "encoder", "count_per_tag", "size", "real_fraction", "repeat",
    "accuracy", "macro_f1", "average_precision", "log_loss",
)
_INT_COLUMNS = ("run", "slice", "count_per_tag", "size", "repeat")
_FLOAT_COLUMNS = ("real_fraction", "accuracy", "macro_f1", "average_precision", "log_loss")
_TEXT_COLUMNS = ("slice_name", "backend", "encoder")
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
_HOVER = (
    "<b>%{fullData.name}</b><br>images per tag: %{x}<br>mean %{y:.3f} ± %{customdata[4]:.3f} "
    "(n=%{customdata[3]})<br>runs: %{customdata[0]}<br>slice: %{customdata[1]}<br>backend: %{customdata[2]}"
    "<extra></extra>"
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

def is_baseline(result: dict) -> bool:
    """A zero-shot baseline: trained on nothing (no slice, 0 images per tag)."""
    return not result.get("count_per_tag") or result.get("slice") is None


def tags_of(results: Sequence[dict]) -> list[str]:
    """The tags the results score, in the evaluation's label order."""
    seen: dict[str, None] = {}
    for r in results:
        for t in (r.get("confusion") or {}).get("labels") or sorted(r.get("per_tag") or {}):
            seen.setdefault(t, None)
    return list(seen)


def slice_label(result: dict) -> str:
    if is_baseline(result):
        return _baseline_label(result)
    return result.get("slice_name") or f"slice {result['slice']}"


def variant_of(result: dict) -> tuple:
    """What separates one line from another: pixel size, real fraction, backend (and encoder, mode if known)."""
    return (result.get("size"), result.get("real_fraction"), result.get("backend"), result.get("encoder"),
            result.get("mode"))


def _short(encoder) -> str:
    return str(encoder).rstrip("/").rsplit("/", 1)[-1]


def _baseline_label(result: dict) -> str:
    parts = ["zero-shot", result.get("backend") or "?"]
    if result.get("encoder"):
        parts.append(_short(result["encoder"]))
    if result.get("size"):
        parts.append(f"{result['size']}px")
    return " · ".join(parts)


def variant_label(variant: tuple) -> str:
    size, real, backend, encoder, mode = variant
    parts = [f"{size}px" if size else "original size", f"real {real:.0%}" if real is not None else "real n/a",
             backend or "?"]
    if encoder:
        parts.append(_short(encoder))
    if mode and mode not in ("probe", "scratch"):
        parts.append(str(mode))
    return " · ".join(parts)


def spread(values: Sequence[float], error: str = "std") -> float:
    """Error bar half-width over repeats: sample standard deviation, or the 95% t-interval."""
    if error not in ERRORS:
        raise InvalidInput(f"error must be one of {', '.join(ERRORS)}, not {error!r}")
    n = len(values)
    if n < 2:
        return 0.0
    sd = statistics.stdev(values)
    if error == "std":
        return sd
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def predicted_tag(probabilities: dict[str, float], labels: Sequence[str] | None = None) -> str:
    """The tag with the highest probability; ties go to the first in ``labels`` order."""
    order = list(labels) if labels else sorted(probabilities)
    order += [t for t in probabilities if t not in order]
    return max(order, key=lambda t: (probabilities.get(t, float("-inf")), -order.index(t)))


def _per_image(result: dict, image_id: str) -> Optional[dict]:
    return next((p for p in result.get("per_image") or () if p["image"] == image_id), None)


def _average_precision(result: dict) -> Optional[float]:
    values = [v.get("average_precision") for v in (result.get("per_tag") or {}).values()]
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.fmean(values) if values else None


def metric_value(result: dict, metric: str) -> Optional[float]:
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    return _average_precision(result) if metric == "average_precision" else result.get(metric)


def _colours(keys: Iterable) -> dict:
    palette = qualitative.Plotly + qualitative.D3
    return {k: palette[i % len(palette)] for i, k in enumerate(keys)}


def _join(values: Iterable) -> str:
    return ", ".join(dict.fromkeys(str(v) for v in values))


# -- line charts over count per tag ---------------------------------------------------------------

def _line_figure(points: list[dict], *, keys: list[str], title: str, yaxis: str, error: str,
                 colour_by_variant: bool = False, baseline_lines: bool = False) -> go.Figure:
    """Lines of mean ± spread over repeats. ``points``: {key, result, value} (one per run and key)."""
    fig = go.Figure()
    lines: dict[tuple, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    baselines: dict[tuple, list] = defaultdict(list)
    for p in points:
        r = p["result"]
        if is_baseline(r):
            baselines[(p["key"], _baseline_label(r))].append(p)
        else:
            lines[(p["key"], variant_of(r))][int(r["count_per_tag"])].append(p)
    variants = list(dict.fromkeys(sorted((v for _, v in lines), key=lambda v: tuple(str(x) for x in v))))
    colour = _colours(variants if colour_by_variant else keys)
    dash = {v: _DASHES[i % len(_DASHES)] for i, v in enumerate(variants)}
    counts = sorted({c for by_count in lines.values() for c in by_count} | ({0} if baselines else set()))
    for key in keys:
        for variant in variants:
            by_count = lines.get((key, variant))
            if not by_count:
                continue
            xs = sorted(by_count)
            stats = [_stats(by_count[x], error) for x in xs]
            name = variant_label(variant) if colour_by_variant else f"{key} · {variant_label(variant)}"
            fig.add_trace(go.Scatter(
                x=xs, y=[s["mean"] for s in stats], mode="lines+markers", name=name,
                legendgroup=str(key),
                line={"color": colour[variant if colour_by_variant else key],
                      "dash": "solid" if colour_by_variant else dash[variant]},
                error_y={"type": "data", "array": [s["err"] for s in stats], "visible": True},
                customdata=[[s["runs"], s["slices"], s["backend"], s["n"], s["err"]] for s in stats],
                hovertemplate=_HOVER,
                meta={"key": key, "size": variant[0], "real_fraction": variant[1], "backend": variant[2],
                      "encoder": variant[3], "mode": variant[4], "n": [s["n"] for s in stats], "baseline": False},
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
            error_y={"type": "data", "array": [s["err"]], "visible": True},
            customdata=[[s["runs"], s["slices"], s["backend"], s["n"], s["err"]]], hovertemplate=_HOVER,
            meta={"key": key, "backend": backend, "n": [s["n"]], "baseline": True},
        ))
    fig.update_layout(
        title={"text": title, "subtitle": {"text": f"error bars: {ERRORS[error]}"}},
        template="plotly_white", hovermode="closest",
        legend_title_text=("line: pixel size · real share · backend" if colour_by_variant
                           else "line: tag · pixel size · real share · backend"),
        margin={"t": 90},
        xaxis={"title": {"text": "images per tag"}, "tickmode": "array", "tickvals": counts},
        yaxis={"title": {"text": yaxis}, "range": [-0.02, 1.02]},
    )
    return fig


def _stats(points: list[dict], error: str) -> dict:
    values = [float(p["value"]) for p in points]
    results = [p["result"] for p in points]
    return {
        "mean": statistics.fmean(values),
        "err": spread(values, error),
        "n": len(values),
        "runs": _join(r["run"] for r in results),
        "slices": _join(slice_label(r) for r in results),
        "backend": _join(r.get("backend") for r in results),
    }


def probability_vs_count(results: Sequence[dict], image_id: str, error: str = "std") -> go.Figure:
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


def true_tag_probability_vs_count(results: Sequence[dict], error: str = "std") -> go.Figure:
    """Mean probability given to the right tag over all test images of that tag, per tag."""
    keys = tags_of(results)
    points = []
    for r in results:
        for t in keys:
            values = [p["probabilities"].get(t, 0.0) for p in r.get("per_image") or () if p["tag"] == t]
            if values:
                points.append({"key": t, "result": r, "value": statistics.fmean(values)})
    if not points:
        raise NotFound("the chosen runs have no test-image predictions")
    return _line_figure(points, keys=keys, error=error, yaxis="mean probability of the true tag",
                        title="Probability of the true tag, averaged over the test images of each tag")


def metrics_vs_count(results: Sequence[dict], metric: str = "accuracy", error: str = "std") -> go.Figure:
    """A metric on the labelled test set against images per tag; one line per (size, real fraction, backend)."""
    if metric not in METRICS:
        raise InvalidInput(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    label = METRICS[metric]
    points = [{"key": label, "result": r, "value": v} for r in results
              if (v := metric_value(r, metric)) is not None and not math.isnan(v)]
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
        title=f"Confusion matrix · run {result['run']} ({slice_label(result)}, n={result.get('count_per_tag')})",
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
    return sorted(results, key=lambda r: (not is_baseline(r), tuple(str(x) for x in variant_of(r)),
                                          r.get("count_per_tag") or 0, r.get("repeat") or 0, r["run"]))


def run_label(r: dict) -> str:
    if is_baseline(r):
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
            line={"color": colour[t]}, customdata=[[r.get("backend"), slice_label(r)] for r, _ in rows],
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
        template="plotly_white", xaxis={"title": {"text": "run"}, "type": "category", "tickangle": -35},
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


# -- tables ------------------------------------------------------------------------------------------

def results_frame(results: Sequence[dict]) -> pd.DataFrame:
    """One row per run with its slice, backend, slice parameters and headline metrics."""
    rows = [{
        **{c: r.get(c) for c in FRAME_COLUMNS},
        "slice_name": slice_label(r),
        "average_precision": _average_precision(r),
    } for r in sorted(results, key=lambda r: r["run"])]
    return _typed(pd.DataFrame(rows, columns=list(FRAME_COLUMNS)))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for c in _INT_COLUMNS:
        df[c] = pd.to_numeric(df[c]).astype("Int64")
    for c in _FLOAT_COLUMNS:
        df[c] = pd.to_numeric(df[c]).astype("float64")
    for c in _TEXT_COLUMNS:
        df[c] = df[c].astype("string")
    return df


def results_csv(results: Sequence[dict]) -> str:
    """All results as CSV (one row per run), readable back with :func:`read_results_csv`."""
    return results_frame(results).to_csv(index=False, float_format="%.17g")


def read_results_csv(text: str) -> pd.DataFrame:
    """Parse :func:`results_csv` output back into the frame :func:`results_frame` gives."""
    try:
        df = pd.read_csv(io.StringIO(text), keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InvalidInput(f"not a results CSV: {exc}") from exc
    missing = [c for c in FRAME_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInput(f"not a results CSV: missing columns {', '.join(missing)}")
    return _typed(df[list(FRAME_COLUMNS)].copy())
