"""Commands that make and judge models: generate, train, evaluate, compare, arms, report, diagnose."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.cli import common
from core.store.database import Store


def cmd_generate(store: Store, a: argparse.Namespace) -> dict:
    from core.generate.generation import generate
    from core.generate.planning import GenerationSpec

    spec = GenerationSpec(
        tag=a.tag, count=a.count, model=a.model, width=a.width, height=a.height, steps=a.steps,
        guidance=a.guidance, seed=a.seed, batch_size=a.batch_size, init_images=tuple(a.init_images or ()),
        strength=a.strength, expansion=a.expansion, scheduler=a.scheduler, fast_decode=a.fast_decode,
        compile=a.compile,
    )
    result = generate(store, spec, progress=common.progress_printer("generate"), workers=a.workers or 0)
    print(f"generated {result['generated']}, skipped {result['skipped']} (job {result['job']})")
    return result


def cmd_train(store: Store, a: argparse.Namespace) -> dict:
    from core.train.training import train

    mode = "tiles" if a.tiles else a.mode
    if a.tiles and a.mode not in (None, "probe", "tiles"):
        raise common.CliUsageError(f"--tiles is a frozen-encoder mode; it cannot be combined with --mode {a.mode}")
    params: dict[str, Any] = {"encoder": a.encoder, "mode": mode, "seed": a.seed}
    if a.input_size is not None:
        params["image_size"] = a.input_size
    if a.epochs is not None:
        params["epochs"] = a.epochs
    for item in a.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise common.CliUsageError(f"--param takes KEY=VALUE, not {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    if a.backend == "azure":
        params.update({"budget_hours": a.budget_hours, "training_type": a.training_type, "tier": a.tier,
                       "layout": a.layout})
    from core.models.remote import embedding_workers
    from core.run.cluster import engine

    with embedding_workers(a.workers):
        runs = train(store, a.slices, backend=a.backend, params=params, progress=common.progress_printer("train"))
        runs = _with_accuracy(store, runs)
    for r in runs:
        score = f" accuracy {r['accuracy']:.3f}" if r.get("accuracy") is not None else ""
        print(f"run {r['id']} slice {r['slice']} {r['backend']} {r['status']}{score}")
    return {"runs": runs, "engine": engine(a.workers or 0)}


def _with_accuracy(store: Store, runs: list[dict]) -> list[dict]:
    """Score the finished runs on the test photos (when there are any) so each carries its ``accuracy``."""
    from core.analysis.autoeval import evaluate_runs
    from core.train.training import list_runs, summary

    out = evaluate_runs(store, [r["id"] for r in runs if r["status"] == "done"])
    if not out["evaluated"]:
        return runs
    fresh = {r["id"]: summary(r) for r in list_runs(store, [r["id"] for r in runs])}
    return [fresh.get(r["id"], r) for r in runs]


def cmd_evaluate(store: Store, a: argparse.Namespace) -> dict:
    from core.analysis.evaluation import evaluate

    results = evaluate(store, a.runs or None, progress=common.progress_printer("evaluate"))
    for r in results:
        f1 = f"{r['macro_f1']:.3f}" if r.get("macro_f1") is not None else "-"
        lo, hi = r.get("accuracy_ci") or (float("nan"), float("nan"))
        print(f"run {r['run']} arm {r.get('arm')} n={r['count_per_tag']} size={r['size']} repeat={r['repeat']} "
              f"accuracy {r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] macro-F1 {f1}")
    return {"results": results}


def cmd_compare(store: Store, a: argparse.Namespace) -> dict:
    from core.analysis.compare import compare, sentence

    result = compare(store, a.a, a.b)
    print(f"a: {result['a']['id']} {result['a']['label']}")
    print(f"b: {result['b']['id']} {result['b']['label']}")
    for c in result["comparisons"]:
        print(sentence(c))
    return result


def cmd_arms(store: Store, a: argparse.Namespace) -> dict:
    from core.analysis.arms import arm_table
    from core.analysis.evaluation import results

    table = [{k: v for k, v in row.items() if k != "spec"} for row in arm_table(results(store))]
    for row in table:
        print(f"{row['id']}  {row['label']}  counts {','.join(map(str, row['counts']))}  runs {len(row['runs'])}")
    return {"arms": table}


def cmd_report(store: Store, a: argparse.Namespace) -> dict:
    from core.analysis.compare import parse_pairs
    from core.views.report import write_report

    path = write_report(store, a.out, run_ids=a.runs or None, comparisons=parse_pairs(a.compare or []))
    print(f"wrote {path}")
    return {"report": str(path)}


def cmd_diagnose(store: Store, a: argparse.Namespace) -> dict:
    from core.analysis.diagnostics import run_diagnosis
    from core.models.remote import embedding_workers
    from core.run.cluster import engine

    with embedding_workers(a.workers):
        result = run_diagnosis(store, a.tags or None, a.sizes or [256], a.encoder, progress=common.progress_printer("diagnose"))
    result = {**result, "engine": engine(a.workers or 0)}

    def aucs(values: dict, intervals: dict) -> str:
        return ", ".join(f"{size}px {v if v is not None else 'n/a'}"
                         + (f" [{intervals[size][0]}, {intervals[size][1]}]" if intervals.get(size) else "")
                         for size, v in values.items())

    for tag, r in result["tags"].items():
        print(f"{tag}: diversity synthetic {r['diversity']['synthetic']} real {r['diversity']['real']}; "
              f"Fréchet {r['frechet']['synthetic_vs_real']} (floor {r['frechet']['real_vs_real_floor']}); "
              f"AUC {aucs(r['auc'], r.get('auc_ci') or {})}; "
              f"pixel AUC {aucs(r.get('pixel_auc') or {}, r.get('pixel_auc_ci') or {})}; "
              f"{len(r['duplicate_clusters'])} duplicate clusters")
    return result
