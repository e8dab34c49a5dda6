"""The standalone HTML report: what a team shares after a walkthrough.

One file that opens offline: plotly.js is inlined once in ``<head>`` (never a CDN ``<script src>``),
each figure is a ``<div>`` drawn by it, test-image thumbnails are ``data:`` URIs. It holds the
charts of :mod:`core.views.charts`, the run table, the slice specs, the tag prompts and a provenance
summary of the images behind the runs. Secret settings (Azure keys) are redacted from the whole
text before it is written, wherever they might have crept in.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from core import config
from core.errors import UserError
from core.store.database import Store
from core.views import charts, diagnostic_views, result_labels, tables

if TYPE_CHECKING:  # pandas is imported where it is used (slow to import)
    import pandas as pd

MAX_IMAGES = 6
MAX_CONFUSIONS = 8
THUMBNAIL_PX = 112
REDACTED = "[redacted]"
_SECRET_PARAM = re.compile(r"key|secret|token|password", re.IGNORECASE)

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;
padding:0 1rem;color:#1f2937}
h1{margin-bottom:.2rem} h2{margin-top:2.5rem;border-bottom:1px solid #e5e7eb;padding-bottom:.3rem}
.muted{color:#6b7280} .chart{margin:1rem 0 2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0 1.5rem} th,td{border:1px solid #e5e7eb;
padding:.25rem .5rem;text-align:left;vertical-align:top} th{background:#f9fafb}
.image{display:flex;gap:1rem;align-items:flex-start;margin-top:1.5rem} .image img{border:1px solid #e5e7eb}
nav a{margin-right:1rem} .table{overflow-x:auto}
"""


class ReportError(UserError):
    """The report cannot be written (no results, bad output path)."""


def write_report(store: Store, out: str | os.PathLike, run_ids: Optional[Sequence[int]] = None,
                 comparisons: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the report for ``run_ids`` (default: every evaluated run) to ``out``; returns its path.

    ``comparisons``: ``(arm a, arm b)`` pairs the user asked for; each gets a table of paired
    differences (:mod:`core.analysis.compare`). Raises :class:`ReportError` when nothing has been evaluated yet or
    ``out`` cannot be written, and the compare errors for unknown arms — all before anything is written;
    a failed write leaves no partial file behind.
    """
    target = _check_target(store, out)
    from core.analysis.evaluation import results as stored_results

    results = stored_results(store, run_ids)
    if not results:
        which = f"runs {', '.join(map(str, run_ids))}" if run_ids else "this store"
        raise ReportError(
            f"no evaluation results for {which}: train and evaluate first "
            "(python -m core train --slices NAME, then python -m core evaluate)"
        )
    from core.analysis.compare import compare_results

    compared = [compare_results(results, a, b) for a, b in comparisons]
    text = _redact(render_report(store, charts.with_slice_names(store, results), compared))
    _write_atomically(target, text)
    return target


def _check_target(store: Store, out: str | os.PathLike) -> Path:
    from core.store.outputs import check_output

    return check_output(out, store.root, what="report", error=ReportError)


def _write_atomically(target: Path, text: str) -> None:
    from core.store.outputs import write_output

    write_output(target, lambda fh: fh.write(text.encode("utf-8")), what="report", error=ReportError)


def _secret_values() -> list[str]:
    values = (config.setting(name) for name in sorted(config.SECRET_SETTINGS))
    return sorted({v for v in values if v and len(v) >= 6}, key=len, reverse=True)


def _redact(text: str) -> str:
    for secret in _secret_values():
        for form in {secret, html.escape(secret), json.dumps(secret)[1:-1]}:
            text = text.replace(form, REDACTED)
    return text


# -- rendering -----------------------------------------------------------------------------------

def render_report(store: Store, results: list[dict], comparisons: Sequence[dict] = ()) -> str:
    """The report's HTML for ``results`` (with slice names, see :func:`charts.with_slice_names`) and the
    :func:`core.analysis.compare.compare_results` outputs in ``comparisons``."""
    run_ids = [r["run"] for r in results]
    slice_ids = sorted({r["slice"] for r in results if r.get("slice") is not None})
    sections = [
        ("metrics", "Metrics vs images per tag", _metrics_section(results)),
        *([("comparisons", "Comparisons", _comparisons_section(comparisons))] if comparisons else []),
        ("arms", "Arms (chart lines)", _arms_section(results)),
        ("true-tag", "Probability of the true tag", _figure(charts.true_tag_probability_vs_count(results))),
        ("images", "Test images", _images_section(store, results)),
        ("confusion", "Confusion matrices", _confusion_section(results)),
        ("runs", "Runs", _runs_section(store, results)),
        ("slices", "Slices", _slices_section(store, slice_ids)),
        ("tags", "Tags and prompts", _tags_section(store)),
        ("provenance", "Generation settings", _provenance_section(store, slice_ids)),
        ("diagnostics", "Diagnostics: synthetic vs real", diagnostic_views.report_section(store)),
    ]
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tags = charts.tags_of(results)
    body = [
        "<h1>Synthlab report</h1>",
        f"<p class='muted'>{len(run_ids)} runs on {len(slice_ids)} slices · tags: {_e(', '.join(tags))} · "
        f"{len(charts.scored_images(results))} test images · written {created}</p>",
        "<nav>" + "".join(f"<a href='#{sid}'>{_e(title)}</a>" for sid, title, _ in sections) + "</nav>",
    ]
    body += [f"<section id='{sid}'><h2>{_e(title)}</h2>{content}</section>" for sid, title, content in sections]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Synthlab report — {_e(', '.join(tags))}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _figure(fig: go.Figure, height: int = 460) -> str:
    div = fig.to_html(full_html=False, include_plotlyjs=False, default_height=f"{height}px",
                      config={"displaylogo": False, "responsive": True})
    from core.views.axes import figure_notes

    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in figure_notes(fig))
    return f"<div class='chart'>{div}{notes}</div>"


def _table(df: pd.DataFrame) -> str:
    import pandas as pd
    cells = df.astype(object).map(lambda v: "" if v is None or v is pd.NA or (isinstance(v, float) and v != v)
                                  else (f"{v:.4g}" if isinstance(v, float) else v))
    return "<div class='table'>" + cells.to_html(index=False, escape=True, border=0) + "</div>"


def _metrics_section(results: list[dict]) -> str:
    parts = []
    for metric in charts.METRICS:
        try:
            parts.append(_figure(charts.metrics_vs_count(results, metric)))
        except UserError as exc:
            parts.append(f"<p class='muted'>{_e(exc)}</p>")
    return "".join(parts)


def _comparisons_section(comparisons: Sequence[dict]) -> str:
    import pandas as pd
    parts = ["<p class='muted'>Paired difference in accuracy (a − b) on the same test images; 95 % interval "
             "from a bootstrap over test images and repeats; verdict <i>within noise</i> when the interval "
             "contains 0.</p>"]
    for c in comparisons:
        parts.append(f"<p><b>a</b> = {_e(c['a']['id'])} {_e(c['a']['label'])}<br><b>b</b> = {_e(c['b']['id'])} "
                     f"{_e(c['b']['label'])}</p>")
        rows = [{"images per tag": x["count_per_tag"], "a": x["a"], "b": x["b"], "difference": x["difference"],
                 "95% interval": f"[{x['ci'][0]:+.3f}, {x['ci'][1]:+.3f}]", "p-value": x["p_value"],
                 "verdict": x["verdict"], "repeats a/b": "/".join(map(str, x["repeats"])),
                 "test images": x["test_images"]} for x in c["comparisons"]]
        parts.append(_table(pd.DataFrame(rows)))
    return "".join(parts)


def _arms_section(results: list[dict]) -> str:
    import pandas as pd

    from core.analysis.arms import arm_table

    rows = [{"arm": a["id"], "label": a["label"], "counts": ", ".join(map(str, a["counts"])),
             "runs": len(a["runs"])} for a in arm_table(results)]
    return ("<p class='muted'>A line on the charts is an arm: runs alike in everything but the repeat "
            "(slice spec without its repeat, backend, encoder, mode, training parameters).</p>"
            + _table(pd.DataFrame(rows)))


def _chosen_images(results: list[dict]) -> list[dict]:
    """The images that flip most, at least one per tag first."""
    flips = charts.flip_counts(results)
    ranked = sorted(charts.scored_images(results), key=lambda im: (-flips.get(im["image"], 0), im["tag"], im["image"]))
    chosen, tags = [], set()
    for im in ranked:
        if im["tag"] not in tags:
            chosen.append(im)
            tags.add(im["tag"])
    chosen += [im for im in ranked if im not in chosen]
    return [{**im, "flips": flips.get(im["image"], 0)} for im in chosen[:MAX_IMAGES]]


def _thumbnail(store: Store, image_id: str) -> str:
    try:
        img = store.open_image(image_id)
    except OSError:
        return ""
    img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt='test image {image_id[:12]}' src='data:image/png;base64,{data}'>"


def _images_section(store: Store, results: list[dict]) -> str:
    images = _chosen_images(results)
    total = len(charts.scored_images(results))
    parts = [f"<p class='muted'>{len(images)} of {total} test images: those whose prediction changes most "
             "often between runs, at least one per tag.</p>"]
    for im in images:
        parts.append(
            f"<div class='image'>{_thumbnail(store, im['image'])}<div><b>{_e(im['image'][:12])}</b><br>"
            f"true tag: {_e(im['tag'])}<br>prediction changes: {im['flips']}</div></div>"
            + _figure(charts.probability_vs_count(results, im["image"]))
            + _figure(charts.image_history(results, im["image"]), height=420)
        )
    return "".join(parts)


def _confusion_section(results: list[dict]) -> str:
    """Per line (variant), the run with the most images per tag (first repeat); and each baseline."""
    best: dict[tuple, dict] = {}
    for r in charts.history_order(results):
        key = ("baseline", r["run"]) if result_labels.is_baseline(r) else charts.arm_key(r)
        current = best.get(key)
        if current is None or (r["count_per_tag"], -(r.get("repeat") or 0)) > (
                current["count_per_tag"], -(current.get("repeat") or 0)):
            best[key] = r
    chosen = [r for r in best.values() if (r.get("confusion") or {}).get("labels")][:MAX_CONFUSIONS]
    return "".join(_figure(charts.confusion_matrix(r), height=420) for r in chosen) or \
        "<p class='muted'>No confusion matrices.</p>"


def _safe_params(params: dict) -> dict:
    return {k: (REDACTED if _SECRET_PARAM.search(k) else v) for k, v in params.items()}


def _runs_section(store: Store, results: list[dict]) -> str:
    frame = tables.results_frame(results)
    ids = [int(r) for r in frame["run"]]
    marks = ",".join("?" * len(ids))
    rows = {r["id"]: r for r in store.query(f"SELECT id, params, status, finished FROM runs WHERE id IN ({marks})", tuple(ids))}
    frame["params"] = [_spec_text(json.dumps(_safe_params(json.loads(rows.get(i, {}).get("params") or "{}")),
                                             sort_keys=True)) for i in ids]
    frame["finished"] = [rows.get(i, {}).get("finished") for i in ids]
    return _table(frame)


def _slices_section(store: Store, slice_ids: list[int]) -> str:
    import pandas as pd
    if not slice_ids:
        return "<p class='muted'>Only zero-shot baselines: no slices.</p>"
    marks = ",".join("?" * len(slice_ids))
    rows = store.query(
        f"SELECT s.id, s.name, s.count_per_tag, s.size, s.real_fraction, s.repeat, substr(s.hash, 1, 12) AS hash, "
        f"s.spec, (SELECT COUNT(*) FROM slice_images si WHERE si.slice_id = s.id) AS images "
        f"FROM slices s WHERE s.id IN ({marks}) ORDER BY s.name, s.size, s.real_fraction, s.count_per_tag, s.repeat",
        tuple(slice_ids),
    )
    for r in rows:
        r["spec"] = _spec_text(r["spec"])
    return _table(pd.DataFrame(rows))


def _spec_text(spec: str) -> str:
    try:
        data = json.loads(spec)
    except (TypeError, ValueError):
        return str(spec)
    if isinstance(data, dict):
        return "; ".join(f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in data.items())
    return json.dumps(data)


def _tags_section(store: Store) -> str:
    import pandas as pd
    rows = [{"tag": t["name"], "prompt": t["prompt"], "negative": t["negative"], **t["counts"]}
            for t in store.list_tags()]
    return _table(pd.DataFrame(rows)) if rows else "<p class='muted'>No tags.</p>"


def _provenance_section(store: Store, slice_ids: Iterable[int]) -> str:
    """How the images behind these runs were made: per tag, source and model, with settings and seed range."""
    import pandas as pd
    ids = list(slice_ids)
    marks = ",".join("?" * len(ids)) or "NULL"
    rows = store.query(
        f"""SELECT tag, source, COALESCE(model_id, '') AS model, COALESCE(model_revision, '') AS revision,
               COUNT(*) AS images, GROUP_CONCAT(DISTINCT steps) AS steps, GROUP_CONCAT(DISTINCT guidance) AS guidance,
               GROUP_CONCAT(DISTINCT scheduler) AS scheduler, MIN(seed) AS seed_min, MAX(seed) AS seed_max,
               GROUP_CONCAT(DISTINCT width || 'x' || height) AS sizes, COUNT(DISTINCT prompt) AS prompts
           FROM images
           WHERE rejected = 0 AND (source = 'test' OR id IN (SELECT image_id FROM slice_images WHERE slice_id IN ({marks})))
           GROUP BY tag, source, model, revision ORDER BY tag, source, model""",
        tuple(ids),
    )
    if not rows:
        return "<p class='muted'>No images.</p>"
    return ("<p class='muted'>Images in the runs' slices and the test set, grouped by tag, source and model; "
            "seeds are each image's own (series seed + index).</p>" + _table(pd.DataFrame(rows)))


def check_self_contained(text: str) -> list[str]:
    """External resources a report would load (script/link/img sources over the network); [] when none."""
    pattern = re.compile(r"<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*['\"]?\s*(https?:|//)", re.IGNORECASE)
    return [m.group(0) for m in pattern.finditer(text)]



def default_report_path(store: Store) -> Path:
    """A fresh file name under the store's ``reports/`` folder (created if missing)."""
    folder = store.root / "reports"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the reports folder {folder}: {exc.strerror or exc}") from exc
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return folder / f"report-{stamp}.html"
