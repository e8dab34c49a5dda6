"""Results as a table: one row per run (the Results page's table, the report's run table, CSV export)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Sequence

from core.analysis import arms
from core.errors import InvalidInput

if TYPE_CHECKING:  # pandas is imported where it is used (slow to import)
    import pandas as pd

MISSING = "—"
"""What every table shows for a value that is not there (a queued run's accuracy, a slice without repeats' overlap):
Streamlit's ``placeholder`` for missing cells, never the literal ``None``."""

FRAME_COLUMNS = (
    "run", "slice", "slice_name", "arm", "backend", "encoder", "count_per_tag", "size", "input_px", "real_fraction",
    "repeat",
    "accuracy", "macro_f1", "average_precision", "log_loss",
)
_INT_COLUMNS = ("run", "slice", "count_per_tag", "size", "input_px", "repeat")
_FLOAT_COLUMNS = ("real_fraction", "accuracy", "macro_f1", "average_precision", "log_loss")
_TEXT_COLUMNS = ("slice_name", "arm", "backend", "encoder")


def results_frame(results: Sequence[dict]) -> pd.DataFrame:
    """One row per run with its slice, backend, slice parameters and headline metrics."""
    import pandas as pd
    rows = [{
        **{c: r.get(c) for c in FRAME_COLUMNS},
        "slice_name": _slice_label(r),
        "arm": arms.of_result(r)[0],
        "average_precision": mean_average_precision(r),
    } for r in sorted(results, key=lambda r: r["run"])]
    return _typed(pd.DataFrame(rows, columns=list(FRAME_COLUMNS)))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd
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
    import pandas as pd
    try:
        df = pd.read_csv(io.StringIO(text), keep_default_na=True, dtype={c: str for c in _TEXT_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InvalidInput(f"not a results CSV: {exc}") from exc
    missing = [c for c in FRAME_COLUMNS if c not in df.columns]
    if missing:
        raise InvalidInput(f"not a results CSV: missing columns {', '.join(missing)}")
    return _typed(df[list(FRAME_COLUMNS)].copy())


def _slice_label(result: dict) -> str:
    from core.views.result_labels import slice_label

    return slice_label(result)


def mean_average_precision(result: dict):
    from core.views.result_labels import mean_average_precision as average_precision

    return average_precision(result)
