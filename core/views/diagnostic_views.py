"""Views of a diagnosis for the page and the report: a flat table, plotly figures, an HTML section.

Pure functions of a diagnosis result (:func:`core.analysis.diagnostics.diagnose`); only :func:`report_section`
reads the store (the latest finished diagnosis).
"""

from __future__ import annotations

import html
from typing import Optional


def summary_rows(result: dict) -> list[dict]:
    """One flat row per tag (for a table): counts, diversity, prompts, clusters, Fréchet, AUC per size."""
    rows = []
    for tag, r in result.get("tags", {}).items():
        row = {
            "tag": tag,
            "synthetic": r["counts"]["synthetic"],
            "real": r["counts"]["real"],
            "diversity (synthetic)": r["diversity"]["synthetic"],
            "diversity (real)": r["diversity"]["real"],
            "distinct prompts": r["distinct_prompts"],
            "duplicate clusters": len(r["duplicate_clusters"]),
            "Fréchet synthetic↔real": r["frechet"]["synthetic_vs_real"],
            "Fréchet floor (real↔real)": r["frechet"]["real_vs_real_floor"],
        }
        for size, value in r["auc"].items():
            row[f"AUC @ {size}px"] = value
            row[f"AUC 95% CI @ {size}px"] = _interval_text((r.get("auc_ci") or {}).get(size))
        for size, value in (r.get("pixel_auc") or {}).items():
            row[f"pixel AUC @ {size}px"] = value
            row[f"pixel AUC 95% CI @ {size}px"] = _interval_text((r.get("pixel_auc_ci") or {}).get(size))
            null = (r.get("pixel_null") or {}).get(size)
            if null:
                row[f"pixel null band @ {size}px"] = _interval_text(null["band"])
                row[f"pixel trace @ {size}px"] = f"found (p = {null['p_value']:.3g})" if null["alarm"] else "none"
        rows.append(row)
    return rows


def duplicate_rule_text(result: dict) -> str:
    """The near-duplicate thresholds a diagnosis used, in one sentence."""
    rule = result.get("duplicates") or {"max_hamming": result.get("duplicate_threshold")}
    text = f"Candidates: perceptual hashes within {rule['max_hamming']} of 64 bits (shifts of ±2 px tried)"
    if "min_correlation" in rule:
        text += (f"; confirmed when aligned thumbnails (shift up to {rule['max_shift']} of "
                 f"{rule['thumbnail_px']} px) correlate at least {rule['min_correlation']}")
    return text + "."


def _interval_text(ci) -> Optional[str]:
    return None if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def spectrum_ratio_figure(result: dict, size: str):
    """Plotly heatmap of ``log10(synthetic / real)`` mean 2-D power at one size, zero frequency at the
    centre: a generator's periodic trace shows as a bright spot (a checkerboard: the four corners).
    None when the diagnosis has no ratio at that size (one source missing)."""
    import plotly.graph_objects as go

    entry = (result.get("spectrum") or {}).get(str(size)) or {}
    ratio = entry.get("log_ratio_2d")
    if not ratio:
        return None
    cells = len(ratio)
    axis = [round(-0.5 + (k + 0.5) / cells, 4) for k in range(cells)]
    limit = max(0.5, max(abs(v) for row in ratio for v in row))
    fig = go.Figure(go.Heatmap(z=ratio, x=axis, y=axis, colorscale="RdBu_r", zmid=0, zmin=-limit, zmax=limit,
                               colorbar={"title": "log10 ratio"}))
    fig.update_layout(title=f"Synthetic / real power, 2-D spectrum @ {size}px",
                      xaxis_title="horizontal frequency (cycles / pixel)",
                      yaxis_title="vertical frequency (cycles / pixel)", yaxis_scaleanchor="x",
                      margin={"t": 50, "b": 40, "l": 60, "r": 20})
    return fig


def spectrum_figure(result: dict):
    """Plotly line chart: mean radial power spectrum (log scale) of synthetic vs real, one pair per size."""
    import plotly.graph_objects as go

    fig = go.Figure()
    dash = {"synthetic": "solid", "real": "dot"}
    for size, entry in (result.get("spectrum") or {}).items():
        for source in ("synthetic", "real"):
            values = entry.get(source)
            if not values:
                continue
            fig.add_trace(go.Scatter(x=entry["frequency"][1:], y=values[1:], mode="lines",
                                     name=f"{source} @ {size}px", line={"dash": dash[source]}))
    fig.update_layout(title="Mean radial power spectrum", xaxis_title="frequency (cycles / pixel)",
                      yaxis_title="power", yaxis_type="log", legend_title="source @ size",
                      margin={"t": 50, "b": 40, "l": 60, "r": 20})
    return fig


def report_section(store) -> str:
    """An HTML fragment with the latest diagnosis (table, notes, duplicate counts, spectrum chart).

    Plotly figures are ``<div>``s without plotly.js: the page that includes the fragment loads it once
    (as :mod:`core.views.report` does). Without a diagnosis yet, a short paragraph says how to make one.
    """
    from core.analysis.diagnostics import latest_diagnosis

    result = latest_diagnosis(store)
    if result is None:
        return ("<p class='muted'>No diagnostics yet: run <code>python -m core diagnose</code> or use the "
                "Diagnostics page.</p>")
    import pandas as pd

    e = html.escape
    parts = [f"<p class='muted'>Diagnosis {e(str(result['job']))} of {e(str(result.get('finished') or ''))}, "
             f"encoder {e(str(result['encoder']['name']))}; diversity and Fréchet at "
             f"{e(str(result['embedding_size']))} px. AUC near 0.5: the probe cannot tell synthetic from "
             f"real; near 1: the images give their origin away (embedding AUC: 95 % bootstrap interval; the pixel "
             f"probe uses no encoder, and its interval and null band come from a permutation null over repeated "
             f"cross-validation, so it alarms on at most 2.5 % of cases without a trace).</p>"]
    table = pd.DataFrame(summary_rows(result))
    parts.append(table.to_html(index=False, escape=True, na_rep="n/a", border=0,
                               float_format=lambda v: f"{v:.4g}"))
    parts.append(f"<p class='muted'>Near-duplicates. {e(duplicate_rule_text(result))}</p>")
    notes = [f"<li>{e(tag)} — {e(metric)}: {e(reason)}</li>"
             for tag, r in result["tags"].items() for metric, reason in r.get("notes", {}).items()]
    if notes:
        parts.append("<ul class='muted'>" + "".join(notes) + "</ul>")
    for size in (result.get("spectrum") or {}):
        ratio = spectrum_ratio_figure(result, size)
        if ratio is not None:
            div = ratio.to_html(full_html=False, include_plotlyjs=False, default_height="420px",
                                config={"displaylogo": False, "responsive": True})
            parts.append(f"<div class='chart'>{div}</div>")
    if result.get("spectrum"):
        div = spectrum_figure(result).to_html(full_html=False, include_plotlyjs=False, default_height="420px",
                                              config={"displaylogo": False, "responsive": True})
        parts.append(f"<div class='chart'>{div}</div>")
    return "".join(parts)
