"""The original experiment as a one-click preset, and where an experiment stands (the overview's checklist).

The preset: four clothing tags (jeans, shoes, shirts, other) with their prompts, nested slices of
10 / 30 / 50 / 120 / 170 / 200 images per tag at 1024 and 256 px, 3 repeats, in two arms — the
synthetic arm (``experiment``, real fraction 0) and a real-only baseline (``experiment-real``, real
fraction 1). :func:`cut_preset` cuts each arm the store has the images for and says, per arm, what is
missing for the others, so the real-only arm can be trained on the clothing sample before a single
image is generated.

:func:`status` counts the four steps (data, slices, runs, results) and names the next action.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from core.data import sample_jobs, slicing
from core.errors import NotEnoughImages, UserError
from core.store.database import Store
from core.store.records import SOURCES

PAGES = {"data": "pages/data.py", "generate": "pages/generate.py", "slice": "pages/slice.py",
         "train": "pages/train.py", "results": "pages/results.py"}


@dataclass(frozen=True)
class Arm:
    """One line of the experiment's chart: a sweep name and its share of real photos."""

    name: str
    real_fraction: float
    label: str


@dataclass(frozen=True)
class ExperimentPreset:
    """The original experiment; every field can be narrowed (fewer counts, one size) for a quick run."""

    tags: tuple[str, ...] = ("jeans", "shoes", "shirts", "other")
    counts: tuple[int, ...] = (10, 30, 50, 120, 170, 200)
    sizes: tuple[int, ...] = (1024, 256)
    repeats: int = 3
    seed: int = 0
    arms: tuple[Arm, ...] = field(default_factory=lambda: (
        Arm("experiment", 0.0, "synthetic only"),
        Arm("experiment-real", 1.0, "real-only baseline"),
    ))

    def narrowed(self, counts=None, sizes=None, repeats=None) -> "ExperimentPreset":
        """The same preset with other counts, sizes or repeats (validated when the slices are cut)."""
        return replace(self, counts=tuple(counts or self.counts), sizes=tuple(sizes or self.sizes),
                       repeats=int(repeats or self.repeats))


PRESET = ExperimentPreset()


def describe(preset: ExperimentPreset = PRESET) -> str:
    """One sentence: what the preset cuts."""
    arms = " and ".join(f"{a.label} ({a.name})" for a in preset.arms)
    return (f"tags {', '.join(preset.tags)}; {', '.join(map(str, preset.counts))} images per tag; "
            f"{' and '.join(f'{s} px' for s in preset.sizes)}; {preset.repeats} repeat(s); arms: {arms}")


def add_preset_tags(store: Store, preset: ExperimentPreset = PRESET) -> list[str]:
    """Create the preset's tags with their prompts where missing; a tag with no prompt gets one.
    Returns the names created or given a prompt."""
    from core.data.samples import sample_tags

    prompts = {t.name: t for t in sample_tags()}
    existing = {t["name"]: t for t in store.list_tags()}
    changed = []
    for name in preset.tags:
        spec = prompts.get(name)
        prompt, negative = (spec.prompt, spec.negative) if spec else ("", "")
        if name not in existing:
            store.add_tag(name, prompt, negative)
            changed.append(name)
        elif not existing[name]["prompt"] and prompt:
            store.add_tag(name, prompt, existing[name]["negative"] or negative, update=True)
            changed.append(name)
    return changed


def arm_specs(preset: ExperimentPreset, arm: Arm) -> list[slicing.SliceSpec]:
    return slicing.sweep(arm.name, preset.counts, preset.sizes, real_fraction=arm.real_fraction,
                         repeats=preset.repeats, seed=preset.seed, tags=preset.tags)


def cut_preset(store: Store, preset: ExperimentPreset = PRESET) -> dict:
    """Cut every arm the store has the images for. Returns ``{"built": [slice views], "arms": {name:
    {"slices", "created"}}, "skipped": {name: reason}}``; an invalid preset raises before anything is cut.
    Raises :class:`NotEnoughImages` when no arm could be cut."""
    missing = [t for t in preset.tags if t not in set(store.tag_names())]
    if missing:
        raise UserError(f"the preset's tags {', '.join(missing)} are missing: load the clothing sample or "
                        "add them first")
    plans = {arm.name: arm_specs(preset, arm) for arm in preset.arms}
    built, arms, skipped = [], {}, {}
    for arm in preset.arms:
        try:
            done = slicing.build_sweep(store, plans[arm.name])
        except NotEnoughImages as exc:
            skipped[arm.name] = str(exc)
            continue
        built += done
        arms[arm.name] = {"slices": len(done), "created": sum(s["created"] for s in done)}
    if not built:
        raise NotEnoughImages("no arm of the preset could be cut: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return {"built": built, "arms": arms, "skipped": skipped}


# -- the overview's checklist ---------------------------------------------------------------------

def image_counts(store: Store) -> dict[str, dict[str, dict[str, int]]]:
    """``{tag: {source: {"kept": n, "rejected": n}}}`` for every tag and source."""
    out = {t: {s: {"kept": 0, "rejected": 0} for s in SOURCES} for t in store.tag_names()}
    for row in store.query("SELECT tag, source, rejected, COUNT(*) AS n FROM images GROUP BY tag, source, rejected"):
        cell = out.setdefault(row["tag"], {s: {"kept": 0, "rejected": 0} for s in SOURCES}).setdefault(
            row["source"], {"kept": 0, "rejected": 0})
        cell["rejected" if row["rejected"] else "kept"] += row["n"]
    return out


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    done: bool
    detail: str
    page: str


@dataclass(frozen=True)
class NextAction:
    """What the overview's one primary button does: ``action`` is run on the page (``sample``, ``cut``,
    ``train``) or None for a plain move to ``page``."""

    label: str
    page: str
    action: Optional[str] = None
    why: str = ""


def status(store: Store) -> dict:
    """The four steps with live counts, and the next action. ``{"steps": [Step], "next": NextAction,
    "counts": {...}}``."""
    from core.analysis.autoeval import active_job, pending_runs
    from core.analysis.evaluation import results

    counts = image_counts(store)
    tags = list(counts)
    train_ready = [t for t, c in counts.items() if c["real"]["kept"] + c["synthetic"]["kept"] > 0]
    tests = sum(c["test"]["kept"] for c in counts.values())
    slices = store.query("SELECT id, name FROM slices ORDER BY name, id")
    by_status = {s: 0 for s in ("queued", "running", "done", "failed", "cancelled")}
    for row in store.query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status"):
        by_status[row["status"]] = row["n"]
    evaluated = [r for r in results(store) if not r["stale"]]
    pending = pending_runs(store)
    per_tag = " · ".join(f"{t}: " + ", ".join(f"{c[s]['kept']} {s}" for s in SOURCES if c[s]["kept"])
                         for t, c in counts.items() if any(c[s]["kept"] for s in SOURCES))
    steps = [
        Step("data", "Tags and images", len(train_ready) >= 2 and tests > 0,
             f"{len(tags)} tag(s)" + (f" — {per_tag}" if per_tag else "") + f"; {tests} test photo(s)", PAGES["data"]),
        Step("slice", "Slices", bool(slices), f"{len(slices)} slice(s) in "
             f"{len({s['name'] for s in slices})} sweep(s)", PAGES["slice"]),
        Step("train", "Training runs", by_status["done"] > 0,
             f"{by_status['done']} done, {by_status['failed']} failed, "
             f"{by_status['running'] + by_status['queued']} waiting", PAGES["train"]),
        Step("results", "Results", bool(evaluated) and not pending,
             f"{len(evaluated)} run(s) scored on the test photos" + (f", {len(pending)} to score" if pending else ""),
             PAGES["results"]),
    ]
    trained_slices = {r["slice_id"] for r in store.query("SELECT DISTINCT slice_id FROM runs WHERE slice_id IS NOT NULL")}
    untrained = [s for s in slices if s["id"] not in trained_slices]
    sample = sample_jobs.state(store)
    if sample.job:
        nxt = NextAction("Follow the sample load", PAGES["data"], None,
                         "the clothing sample is loading: it goes on while you use other pages")
    elif not tags:
        nxt = NextAction("Load the clothing sample", PAGES["data"], "sample",
                         "the store is empty: real clothing photos for the four tags, as real and test photos")
    elif sample.incomplete:
        nxt = NextAction("Finish loading the sample", PAGES["data"], "sample",
                         f"the clothing sample stopped half way: {sample.missing()}")
    elif len(train_ready) < 2:
        nxt = NextAction("Add images", PAGES["generate"], None, "a classifier needs images of at least two tags")
    elif tests == 0:
        nxt = NextAction("Import test photos", PAGES["data"], None, "results are scored on labelled test photos")
    elif not slices:
        nxt = NextAction("Cut the preset slices", PAGES["slice"], "cut", describe())
    elif untrained and by_status["running"] + by_status["queued"] == 0:
        nxt = NextAction(f"Train {len(untrained)} slice(s) locally", PAGES["train"], "train",
                         "the default local encoder, one model per slice")
    elif by_status["running"] + by_status["queued"] or pending or active_job(store):
        nxt = NextAction("Follow the training", PAGES["train"], None, "runs are training or being scored")
    else:
        nxt = NextAction("See the results", PAGES["results"], None, "every finished run is scored")
    return {"steps": steps, "next": nxt, "counts": counts, "sample": sample,
            "untrained": list(dict.fromkeys(s["name"] for s in untrained)),
            "runs": by_status, "evaluated": len(evaluated), "pending": len(pending)}
