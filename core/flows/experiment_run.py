"""The whole experiment in one call: sample → generate → cut three arms → train → score → compare.

Each stage is idempotent, so a run that was killed picks up where it stopped and makes nothing twice:
the sample imports by content hash, generation makes only the missing images of its series, slices are
content-addressed, :func:`train` skips runs that are done, and scoring caches predictions. The result
answers the question in numbers: synthetic-only vs real-only, and mixed vs real-only, at every count.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from core.analysis import arms, compare
from core.analysis.evaluation import evaluate, results
from core.data import samples, slicing
from core.errors import InvalidInput, UserError
from core.flows.experiment import Arm, ExperimentPreset, add_preset_tags
from core.generate.generation import generate
from core.generate.planning import GenerationSpec
from core.models import builtin_generator
from core.progress import Progress
from core.store.database import Store
from core.train.training import train

SYNTHETIC, MIXED, REAL = "experiment", "experiment-mixed", "experiment-real"
ARMS = (Arm(SYNTHETIC, 0.0, "synthetic only"), Arm(MIXED, 0.5, "mixed (half real, half synthetic)"),
        Arm(REAL, 1.0, "real-only baseline"))
PAIRS = ((SYNTHETIC, REAL), (MIXED, REAL))
STAGES = ("sample", "generate", "cut", "train", "score", "compare")
MAX_PER_TAG = 1000


@dataclass(frozen=True)
class ExperimentRun:
    """What ``experiment run`` does: ``per_tag`` synthetic images per tag (and at least as many real
    photos), nested slices at ``counts`` per tag and ``sizes`` px, ``repeats`` seeds, three arms."""

    per_tag: int = 200
    test_per_tag: int = 50
    counts: tuple[int, ...] = (10, 30, 50, 120, 170, 200)
    sizes: tuple[int, ...] = (256,)
    repeats: int = 3
    model: str = builtin_generator.NAME
    seed: int = 0
    tags: tuple[str, ...] = ("jeans", "shoes", "shirts", "other")
    arms: tuple[Arm, ...] = field(default_factory=lambda: ARMS)

    def checked(self) -> "ExperimentRun":
        if not 1 <= self.per_tag <= MAX_PER_TAG:
            raise InvalidInput(f"--per-tag must be from 1 to {MAX_PER_TAG}, not {self.per_tag}")
        if not self.counts or any(c < 1 for c in self.counts):
            raise InvalidInput("--counts must be whole numbers of at least 1, e.g. 10,30,50")
        if max(self.counts) > self.per_tag:
            raise InvalidInput(f"the largest count ({max(self.counts)}) is above --per-tag ({self.per_tag}): "
                               "every arm needs that many images of each tag")
        if not 1 <= self.repeats <= 10:
            raise InvalidInput(f"--repeats must be from 1 to 10, not {self.repeats}")
        return self

    def preset(self) -> ExperimentPreset:
        return ExperimentPreset(tags=self.tags, counts=tuple(sorted(set(self.counts))), sizes=self.sizes,
                                repeats=self.repeats, seed=self.seed, arms=self.arms)


def _arm_of(evaluated: list[dict], sweep: str) -> Optional[str]:
    ids = {arms.of_result(r)[0] for r in evaluated if r.get("slice_name") == sweep and not r.get("stale")}
    return next(iter(ids)) if len(ids) == 1 else None


def comparisons(evaluated: list[dict], pairs=PAIRS, labels: dict[str, str] | None = None) -> tuple[list[dict], list[str]]:
    """Each pair's comparison at every shared count, with ``pair`` (``"synthetic only vs real-only
    baseline"``), ``arm_a`` and ``arm_b`` added; and a list of what is missing, in words."""
    labels = labels or {a.name: a.label for a in ARMS}
    out, missing = [], []
    for a, b in pairs:
        arm_a, arm_b = _arm_of(evaluated, a), _arm_of(evaluated, b)
        if not arm_a or not arm_b:
            absent = [labels.get(x, x) for x, arm in ((a, arm_a), (b, arm_b)) if not arm]
            missing.append(f"{' and '.join(absent)}: no scored runs yet")
            continue
        try:
            found = compare.compare_results(evaluated, arm_a, arm_b)
        except UserError as exc:
            missing.append(f"{labels.get(a, a)} vs {labels.get(b, b)}: {exc}")
            continue
        for c in found["comparisons"]:
            out.append({"pair": f"{labels.get(a, a)} vs {labels.get(b, b)}", "arm_a": arm_a, "arm_b": arm_b,
                        "sweep_a": a, "sweep_b": b, **c})
    return out, missing


def answer_sentence(c: dict, labels: dict[str, str] | None = None) -> str:
    """``at 30 per tag, synthetic only is 6.1 points worse than real-only baseline [−9.0, −3.2], p = 0.001``."""
    labels = labels or {a.name: a.label for a in ARMS}
    a, b = labels.get(c["sweep_a"], c["sweep_a"]), labels.get(c["sweep_b"], c["sweep_b"])
    points = 100 * c["difference"]
    lo, hi = (100 * x for x in c["ci"])
    span = f"[{lo:+.1f}, {hi:+.1f}]"
    if c["verdict"] == "within noise":
        how = f"is within noise of {b} ({points:+.1f} points {span})"
    else:
        how = f"is {abs(points):.1f} points {'better' if points > 0 else 'worse'} than {b} {span}"
    return f"at {c['count_per_tag']} per tag, {a} {how}, p = {c['p_value']:.2g}"


def _sample_short(store: Store, spec: ExperimentRun) -> bool:
    counts = {t["name"]: t["counts"] for t in store.list_tags()}
    return any(t not in counts or counts[t]["real"] < spec.per_tag or counts[t]["test"] < spec.test_per_tag
               for t in spec.tags)


def run_experiment(store: Store, spec: ExperimentRun = ExperimentRun(), progress: Progress = None,
                   check: Callable[[], None] = lambda: None) -> dict:
    """Run every stage that still has work; returns ``{"comparisons", "missing", "sentences", "stages",
    "runs", "spec"}``. ``check`` is called between steps (a job's cancel check)."""
    spec = spec.checked()
    seconds: dict[str, float] = {}
    total = len(STAGES)

    def stage(i: int, name: str, message: str) -> float:
        check()
        if progress:
            progress(i, total, f"{name}: {message}")
        return time.monotonic()

    def relay(i: int, name: str):
        def inner(done: int, of: int, message: str) -> None:
            check()
            if progress:
                progress(i, total, f"{name}: {message}")
        return inner

    started = stage(0, "sample", "loading the clothing sample")
    if _sample_short(store, spec):
        samples.load_clothing_sample(store, per_tag=spec.per_tag, test_per_tag=spec.test_per_tag,
                                     progress=relay(0, "sample"))
    add_preset_tags(store, spec.preset())
    seconds["sample"] = time.monotonic() - started

    started = stage(1, "generate", f"{spec.per_tag} images per tag with {spec.model}")
    for tag in spec.tags:
        generate(store, GenerationSpec(tag=tag, count=spec.per_tag, model=spec.model, seed=spec.seed),
                 progress=relay(1, f"generate {tag}"))
    seconds["generate"] = time.monotonic() - started

    started = stage(2, "cut", "the three arms' slices")
    preset = spec.preset()
    built = []
    for arm in preset.arms:
        built += slicing.build_sweep(store, slicing.sweep(arm.name, preset.counts, preset.sizes,
                                                          real_fraction=arm.real_fraction, repeats=preset.repeats,
                                                          seed=preset.seed, tags=preset.tags))
    seconds["cut"] = time.monotonic() - started

    started = stage(3, "train", f"{len(built)} runs")
    runs = train(store, [str(s["id"]) for s in built], progress=relay(3, "train"))
    seconds["train"] = time.monotonic() - started

    started = stage(4, "score", "on the test photos")
    run_ids = [r["id"] for r in runs]
    evaluate(store, run_ids, progress=relay(4, "score"))
    seconds["score"] = time.monotonic() - started

    started = stage(5, "compare", "each arm against the real-only baseline")
    found, missing = comparisons(results(store, run_ids))
    seconds["compare"] = time.monotonic() - started
    if progress:
        progress(total, total, "done")
    return {"comparisons": found, "missing": missing, "sentences": [answer_sentence(c) for c in found],
            "stages": {k: round(v, 2) for k, v in seconds.items()}, "runs": len(run_ids),
            "spec": {k: v for k, v in asdict(spec).items() if k != "arms"}}


# -- as a job (the Overview's one button), and the answer the Results page leads with ------------

def run_experiment_job(ctx) -> dict:
    """Job handler ``experiment``: :func:`run_experiment` with the job's progress and cancel check."""
    params = dict(ctx.params)
    spec = ExperimentRun(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})
    try:
        return run_experiment(ctx.store, spec, progress=lambda d, t, m: ctx.progress(d, t, m),
                              check=ctx.check_cancelled)
    except Exception:
        ctx.check_cancelled()  # a cancel of this job stops the stage's own job first: end cancelled, not failed
        raise


def submit_experiment(store: Store, spec: ExperimentRun = ExperimentRun()) -> int:
    """Queue the whole experiment as one job (validated first; nothing is written for a bad spec)."""
    from core.run import jobs

    params = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec.checked()).items() if k != "arms"}
    return jobs.submit(store, "experiment", params)


def active_job(store: Store) -> Optional[int]:
    """The queued or running ``experiment`` job, if any (so a page can follow it after a reload)."""
    rows = store.query("SELECT id FROM jobs WHERE kind = 'experiment' AND status IN ('queued', 'running') "
                       "ORDER BY id DESC LIMIT 1")
    return rows[0]["id"] if rows else None


def answer(store: Store) -> dict:
    """``{"sentences", "missing", "todo"}`` from the scored runs of the three arms: the answer in words, what
    is missing, and what to do about it (``todo`` is empty when both comparisons exist)."""
    evaluated = results(store)
    found, missing = comparisons([r for r in evaluated if r.get("slice_name") in {a.name for a in ARMS}])
    todo = []
    if missing:
        todo.append("run the whole experiment from the Overview (or `python -m core experiment run`): it loads the "
                    "sample, generates with the built-in fashion-mini offline, cuts the three arms, trains and scores")
    return {"sentences": [answer_sentence(c) for c in found], "missing": missing, "todo": todo,
            "comparisons": found, "notes": upscale_notes(store, evaluated)}


def answer_lines(store: Store) -> list[tuple[str, str]]:
    """:func:`answer` as ``(kind, text)`` lines for a page: ``markdown`` verdicts, ``warning`` gaps, ``caption``
    notes."""
    found = answer(store)
    return ([("markdown", f"- {line}") for line in found["sentences"]]
            + [("warning", f"The question is still open — {line}") for line in found["missing"] + found["todo"]]
            + [("caption", line) for line in found["notes"]])


def upscale_notes(store: Store, evaluated: list[dict]) -> list[str]:
    """One sentence per (size, tags) of the scored runs with synthetic images that were upscaled to it."""
    views = {(r.get("size"), tuple(sorted(r.get("tags") or ()))) for r in evaluated
             if r.get("size") and (r.get("real_fraction") is None or r["real_fraction"] < 1)}
    notes = (slicing.upscale_note(store, size, list(tags)) for size, tags in sorted(views, key=str))
    return list(dict.fromkeys(n for n in notes if n))
