"""The live quick test: one photo under several finished runs, as bars per tag, and that photo's
probability of each tag against images per tag over every finished run (the original experiment's chart).

A photo is a stored image id (a test photo) or the bytes of an upload; uploads are never added to the
store. Figures are plotly, drawn from :func:`core.analysis.evaluation.quick_test` rows.
"""

from __future__ import annotations

import hashlib
from typing import Callable, MutableMapping, Sequence

import plotly.graph_objects as go

from core.analysis import evaluation
from core.errors import InvalidInput
from core.store.database import Store
from core.train.training import list_runs
from core.views import charts


def photo_key(image: str | bytes) -> str:
    """A short stable key for a photo (its id, or the SHA-256 of an upload's bytes)."""
    if isinstance(image, (bytes, bytearray)):
        return "upload-" + hashlib.sha256(bytes(image)).hexdigest()[:16]
    return str(image)


def cached(state: MutableMapping, name: str, key: tuple, compute: Callable[[], object]):
    """``compute()`` kept in ``state`` (the session) under ``name`` for one ``key`` at a time, so a rerun
    with the same photo and runs reuses it."""
    cache = state.setdefault(name, {})
    if key not in cache:
        cache.clear()
        cache[key] = compute()
    return cache[key]


def bars_figure(rows: Sequence[dict]) -> go.Figure:
    """Grouped bars: x the tags, one bar colour per run, y the probability."""
    fig = go.Figure()
    for r in rows:
        tags = list(r["probabilities"])
        fig.add_trace(go.Bar(x=tags, y=[r["probabilities"][t] for t in tags], name=r["label"],
                             hovertemplate="%{x}: %{y:.3f}<extra>%{fullData.name}</extra>"))
    fig.update_layout(barmode="group", template="plotly_white", yaxis={"range": [0, 1], "title": {"text": "probability"}},
                      xaxis={"title": {"text": "tag"}}, legend={"orientation": "h", "y": -0.25, "title": {"text": "run"}},
                      margin={"t": 10})
    return fig


def curve(store: Store, image: str | bytes, error: str = "std") -> go.Figure:
    """The photo's probability of each tag against images per tag, over every finished run trained on a
    slice (repeats averaged into error bars, like the Results page)."""
    runs = [r for r in list_runs(store, status="done") if r["slice"] is not None]
    if not runs:
        raise InvalidInput("no finished run trained on a slice: train some first")
    rows = evaluation.quick_test(store, [r["id"] for r in runs], image)
    key = photo_key(image)
    by_id = {r["id"]: r for r in runs}
    results = []
    for row in rows:
        run = by_id[row["run"]]
        tags = list(row["probabilities"])
        results.append({
            "run": run["id"], "slice": run["slice"], "slice_name": run["slice_name"],
            "count_per_tag": run["count_per_tag"], "size": run["size"], "real_fraction": run["real_fraction"],
            "repeat": run["repeat"], "backend": run["backend"], "encoder": run["encoder"], "mode": run["mode"],
            "confusion": {"labels": tags}, "per_tag": {t: {} for t in tags},
            "per_image": [{"image": key, "tag": None, "probabilities": row["probabilities"]}],
        })
    fig = charts.probability_vs_count(results, key, error=error)
    truth = "" if isinstance(image, (bytes, bytearray)) else f" (true tag: {store.get_image(str(image))['tag']})"
    fig.update_layout(title_text=f"Predicted probability per tag against images per tag · this photo{truth}")
    return fig
