"""What the Train page shows, as plain data: the encoder choices, the runs table, the run card's rows, the
scoring state of finished runs, and the quick test's photo choices."""

from __future__ import annotations

from typing import Optional, Sequence

from core import config
from core.analysis import autoeval, evaluation
from core.store.database import Store
from core.train.backends import azure_settings

DEFAULT = f"default ({config.DEFAULT_ENCODER}, pretrained, offline)"
CNN = "cnn-small (from scratch, offline)"
OTHER = "a local folder or hub id"
ENCODER_CHOICES = (DEFAULT, CNN, OTHER)
CNN_NOTE = ("cnn-small learns from the slice alone: on small slices the pretrained default encoder "
            f"({config.DEFAULT_ENCODER}) is more accurate and the better default.")
UPLOAD_TYPES = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")
PHOTO_SOURCES = ("a test photo", "upload one")


def encoder_param(choice: str, path: str = "") -> Optional[str]:
    """The ``encoder`` training parameter an encoder choice stands for (``None``: the default)."""
    if choice == OTHER:
        return path.strip() or None
    return "cnn-small" if choice == CNN else None


def default_epochs(choice: str) -> int:
    return 20 if choice == CNN else 3


def interval(ci) -> str:
    """A 95 % interval as ``lo – hi`` (empty when there is none)."""
    return f"{ci[0]:.3f} – {ci[1]:.3f}" if ci and None not in ci else ""


def run_rows(runs: Sequence[dict]) -> list[dict]:
    """The runs table: one row per run, Azure's own metrics beside ours for Azure runs."""
    return [{
        "run": r["id"], "slice": r["slice_name"], "count per tag": r["count_per_tag"], "size": r["size"] or "original",
        "input px": r.get("input_px"), "real fraction": r["real_fraction"], "repeat": r["repeat"],
        "backend": r["backend"], "mode": r["mode"], "status": r["status"], "accuracy": r["accuracy"],
        "95% interval": interval(r.get("accuracy_ci")), "time (s)": r["time"], "error": r["error"] or "",
        **azure_settings.metrics_columns(r),
    } for r in runs]


def batch_line(status: dict) -> str:
    return (f"This batch: {status['done']}/{status['total']} done · {status['running']} running · "
            f"{status['queued']} queued · {status['failed']} failed · {status['cancelled']} cancelled")


def scoring_state(store: Store, runs: Sequence[dict], scoring: Optional[int]) -> tuple[str, str]:
    """Where the scoring of finished runs stands: ``("no-test", "")`` when there are no test photos,
    ``("pending", caption)`` when some are not scored and no scoring job runs, ``("scored", caption)`` when
    all are, ``("", "")`` otherwise."""
    finished = [r["id"] for r in runs if r["status"] == "done"]
    pending = autoeval.pending_runs(store)
    tests = evaluation.test_images(store)
    if finished and not tests:
        return "no-test", ""
    if pending and scoring is None:
        return "pending", f"{len(pending)} finished run(s) not scored on the current test photos yet."
    if finished and not pending:
        return "scored", f"All {len(finished)} finished run(s) scored on {len(tests)} test photo(s)."
    return "", ""


def active_runs(runs: Sequence[dict]) -> list[int]:
    """The queued and running runs: the work a Train page shows even in a tab that queued none of it."""
    return [r["id"] for r in runs if r["status"] in ("queued", "running")]


def progress_signature(runs: Sequence[dict], scoring: Optional[int]) -> tuple:
    """What changes when the Train page should redraw: a run's status or score, or the scoring job."""
    return tuple((r["id"], r["status"], r["accuracy"] is not None) for r in runs) + (scoring,)


def card_tag_rows(result: dict) -> list[dict]:
    """The run card's per-tag table."""
    return [{"tag": t, "precision": v["precision"], "recall": v["recall"], "AP": v["average_precision"],
             "test photos": v["support"]} for t, v in result["per_tag"].items()]


def card_metrics(result: dict) -> list[tuple[str, str]]:
    """The run card's headline numbers: accuracy, its interval, macro F1."""
    f1 = result.get("macro_f1")
    return [("Accuracy", f"{result['accuracy']:.3f}"), ("95% interval", interval(result.get("accuracy_ci")) or "n/a"),
            ("Macro F1", f"{f1:.3f}" if f1 is not None else "n/a")]


def test_photo_labels(store: Store) -> dict[str, str]:
    """The test photos a quick test can pick: id → ``tag · id prefix``."""
    return {im["id"]: f"{im['tag']} · {im['id'][:12]}" for im in evaluation.test_images(store)}


def top_line(rows: Sequence[dict]) -> str:
    return " · ".join(f"run {r['run']}: {r['top']}" for r in rows)
