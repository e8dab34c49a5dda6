"""What the Results page's tabs show, as plain data: which results a filter keeps, the test-image picker,
the real-only baselines drawn beside a mixed arm, the arms to compare and the comparison table."""

from __future__ import annotations

from typing import Optional, Sequence

from core.analysis import arms
from core.views import charts, result_labels

ERROR_LABELS = {"combined": "95% (repeats + test set)", "std": "± 1 std", "ci95": "95% repeats only"}
ERROR_HELP = ("combined: repeat spread and test-set uncertainty together; the others show only the spread of runs "
              "that differ in their slice's repeat.")
ALL_TAGS = "all tags"
NO_RESULTS = ("No results yet: a finished run is scored on the labelled test photos the moment it ends. Add test "
              "photos (Data page, role test), cut slices (Slice) and train on them (Train).")
COMPARE_CAPTION = ("Paired difference in accuracy (a − b) on the same test images, with a 95% interval from a bootstrap "
                   "over test images and repeats. 'within noise' when the interval contains 0.")
REPORT_TEXT = ("One HTML file with these charts, the run table, slice specs, prompts and generation settings; "
               "it opens offline.")
PICKER_LIMIT = 24
NO_RESULTS_LINKS = (("pages/data.py", "Add test photos on the Data page"),
                    ("pages/slice.py", "Cut slices on the Slice page"),
                    ("pages/train.py", "Train on the Train page"))


def filter_choices(results: Sequence[dict]) -> tuple[list[str], list[str]]:
    """The slice labels and backends a filter can pick from."""
    return (sorted({result_labels.slice_label(r) for r in results}), sorted({r["backend"] for r in results}))


def filtered(results: Sequence[dict], names: Sequence[str], backends: Sequence[str]) -> list[dict]:
    """The results of the picked slices on the picked backends."""
    return [r for r in results if result_labels.slice_label(r) in names and r["backend"] in backends]


def picker(results: Sequence[dict], tag: str, most_flips: bool,
           current: Optional[str]) -> tuple[list[dict], dict[str, int], str]:
    """The test images to offer (of ``tag``, or every tag; most prediction changes first when asked, at most
    :data:`PICKER_LIMIT`), their flip counts, and the picked image: ``current`` while it is still scored,
    else the first one shown."""
    images = charts.scored_images(results)
    flips = charts.flip_counts(results)
    shown = [im for im in images if tag == ALL_TAGS or im["tag"] == tag]
    if most_flips:
        shown.sort(key=lambda im: -flips.get(im["image"], 0))
    shown = shown[:PICKER_LIMIT]
    if current not in {im["image"] for im in images}:
        current = shown[0]["image"] if shown else images[0]["image"]
    return shown, flips, current


def with_real_only_baselines(results: Sequence[dict], all_results: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """``results`` plus the runs of the real-only arm matching each mixed or synthetic arm (drawn beside it),
    and the arms that have no such real-only twin yet."""
    shown_runs = {r["run"] for r in results}
    baselines: dict[int, dict] = {}
    missing = []
    for row in arms.arm_table(results):
        if row["real_fraction"] is None or row["real_fraction"] >= 1.0:
            continue
        twin = arms.real_only_match(all_results, row["id"])
        if twin:
            baselines.update({r["run"]: r for r in all_results if r["arm"] == twin and r["run"] not in shown_runs})
        else:
            missing.append(row)
    return list(results) + list(baselines.values()), missing


def arm_choices(results: Sequence[dict]) -> dict[str, str]:
    """Every arm's id → ``"id · label"``, in table order."""
    return {row["id"]: f"{row['id']} · {row['label']}" for row in arms.arm_table(results)}


def comparison_rows(compared: dict) -> list[dict]:
    """The Compare tab's table, each result shown once (no sentence repeats it): one row per count per tag, with
    the note and the design advice; identical repeats say so instead of a zero-width interval and a p-value."""
    rows = []
    for c in compared["comparisons"]:
        lo, hi = c["ci"]
        rows.append({"images per tag": c["count_per_tag"], "a": round(c["a"], 3), "b": round(c["b"], 3),
                     "difference": round(c["difference"], 3),
                     "95% interval": "identical repeats — no spread to measure" if lo == hi else f"[{lo:+.3f}, {hi:+.3f}]",
                     "p-value": None if lo == hi else round(c["p_value"], 4), "verdict": c["verdict"],
                     "repeats a/b": "/".join(map(str, c["repeats"])),
                     "note": ". ".join(n for n in (c.get("note"), c.get("advice")) if n)})
    return rows


def sweep_made(made: dict) -> str:
    return (f"Sweep {made['name']}: {len(made['slices'])} slices, {len(made['runs'])} runs queued for training; "
            "evaluate them when they are done.")
