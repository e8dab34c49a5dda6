"""What the Slice page's sweep form needs, as plain data: its defaults and the experiment's preset as widget
values, the filter a form describes, the plan's warnings, what a build made, and the preview's labels."""

from __future__ import annotations

from typing import Optional, Sequence

from core import config
from core.data import filtering, repeats, slicing
from core.store.database import Store
from core.store.imaging import FITS, RESAMPLES

FIT_CHOICES = list(FITS)
RESAMPLE_CHOICES = list(RESAMPLES)
DEFAULTS = {"sl_name": slicing.EXPERIMENT_PRESET["name"], "sl_counts": "10, 30, 50", "sl_sizes": "256", "sl_real": 0.0,
            "sl_repeats": 1, "sl_seed": 0, "sl_tags": []}
PRESET_LABEL = "Use the experiment's preset: 10, 30, 50, 120, 170, 200 per tag at 1024 and 256 px"
PREVIEW = 24


def preset_values() -> dict:
    """The experiment's preset as the form's widget values."""
    preset = slicing.EXPERIMENT_PRESET
    return {"sl_name": preset["name"], "sl_counts": ", ".join(map(str, preset["counts"])),
            "sl_sizes": ", ".join(map(str, preset["sizes"])), "sl_real": preset["real_fraction"],
            "sl_repeats": preset["repeats"], "sl_seed": preset["seed"]}


def filter_spec(dedupe: bool, min_p: float, clip: str, label_issues: bool) -> Optional[filtering.FilterSpec]:
    """The filter the form's boxes describe (None: no filtering)."""
    if not (dedupe or min_p or label_issues):
        return None
    return filtering.FilterSpec(min_own_tag_probability=min_p or None, drop_near_duplicates=dedupe,
                                clip_model=clip or None, drop_label_issues=label_issues)


def warnings(store: Store, specs: Sequence[slicing.SliceSpec]) -> list[str]:
    """The plan's warnings over a sweep, each once; Azure's floors only where an Azure key is set (they
    matter only to those who use it)."""
    azure = bool(config.setting("VISION_TRAINING_KEY"))
    return list(dict.fromkeys(w for spec in specs for w in slicing.plan_warnings(store, spec, azure=azure)))


def built_summary(built: Sequence[dict]) -> tuple[str, list[str]]:
    """What a build made (``N slices ready (n new, m already there)``) and its repeat-overlap notes."""
    new = sum(b["created"] for b in built)
    notes = list(dict.fromkeys(f"{b['count_per_tag']} per tag: {n}" for b in built
                               if (n := repeats.overlap_note(b.get("repeat_overlap")))))
    return f"{len(built)} slices ready ({new} new, {len(built) - new} already there)", notes


def preview_labels(table: Sequence[dict]) -> dict[int, str]:
    return {r["id"]: f"#{r['id']} {r['name']} · {r['count/tag']}/tag · {r['size']} px · repeat {r['repeat']}"
            for r in table}
