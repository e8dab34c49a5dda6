"""The headless CLI: ``python -m core [--home DIR] COMMAND … [--json]``.

The commands call the same core functions as the pages. With ``--json`` the last line of stdout is
one JSON object. A user error exits with status 2 and one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Optional, Sequence

from core import config
from core.errors import UserError
from core.store.database import Store


class CliUsageError(UserError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own contract too)
        raise CliUsageError(f"{self.prog}: {message}")


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _input_size(text: str) -> int | str:
    if text.strip().lower() == "native":
        return "native"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pixel size or 'native', got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


# -- commands ------------------------------------------------------------------------------------

def cmd_tags_add(store: Store, a: argparse.Namespace) -> dict:
    from core.generate.prompts import count_prompts, validate_template

    for text, what in ((a.prompt, "prompt"), (a.negative, "negative prompt")):
        if text and text.strip():
            validate_template(text, what)
    tag = store.add_tag(a.name, a.prompt or "", a.negative or "", update=a.update)
    tag["distinct_prompts"] = count_prompts(tag["prompt"]) if tag["prompt"] else 0
    n = tag["distinct_prompts"]
    print(f"tag {tag['name']}: {n} distinct prompts" if n <= 1000 else f"tag {tag['name']}: {n:,} prompt variants")
    return {"tag": tag}


def cmd_tags_list(store: Store, a: argparse.Namespace) -> dict:
    tags = store.list_tags()
    for t in tags:
        c = t["counts"]
        print(f"{t['name']:<20} synthetic {c['synthetic']:>5}  real {c['real']:>5}  test {c['test']:>5}  {t['prompt']}")
    return {"tags": tags}


def cmd_generate(store: Store, a: argparse.Namespace) -> dict:
    from core.generate.generation import generate
    from core.generate.planning import GenerationSpec

    spec = GenerationSpec(
        tag=a.tag, count=a.count, model=a.model, width=a.width, height=a.height, steps=a.steps,
        guidance=a.guidance, seed=a.seed, batch_size=a.batch_size, init_images=tuple(a.init_images or ()),
        strength=a.strength, expansion=a.expansion, scheduler=a.scheduler, fast_decode=a.fast_decode,
        compile=a.compile,
    )
    result = generate(store, spec, progress=_printer("generate"), workers=a.workers or 0)
    print(f"generated {result['generated']}, skipped {result['skipped']} (job {result['job']})")
    return result


def cmd_import(store: Store, a: argparse.Namespace) -> dict:
    from core.data.ingest import import_paths

    report = import_paths(store, a.paths, tag=a.tag, source=a.source, generator=a.generator,
                          progress=_printer("import"))
    print(f"imported {report['imported']}, duplicates {report['duplicates']}, rejected {len(report['rejected'])}")
    if report["created_tags"]:
        print(f"created tags (empty prompts): {', '.join(report['created_tags'])}")
    for r in report["rejected"]:
        print(f"  rejected {r['path']}: {r['reason']}")
    return report


def cmd_sample_clothing(store: Store, a: argparse.Namespace) -> dict:
    from core.data.samples import load_clothing_sample

    result = load_clothing_sample(store, per_tag=a.per_tag, test_per_tag=a.test_per_tag, size=a.size,
                                  progress=_printer("sample"), more_shoes=a.more_shoes, more_shirts=a.more_shirts)
    print(f"clothing sample from {result['source']}: imported {result['imported']}, "
          f"already there {result['duplicates']}; tags {', '.join(t['name'] for t in result['tags'])}")
    return result


def cmd_images_list(store: Store, a: argparse.Namespace) -> dict:
    images = store.list_images(tag=a.tag, source=a.source)
    for im in images:
        flag = " (rejected)" if im["rejected"] else ""
        print(f"{im['id'][:12]} {im['tag']:<12} {im['source']:<9} {im['width']}x{im['height']}{flag}")
    return {"images": images}


def cmd_images_reject(store: Store, a: argparse.Namespace) -> dict:
    for image_id in a.ids:
        store.set_rejected(image_id, not a.restore)
    return {"images": a.ids, "rejected": not a.restore}


def cmd_slice(store: Store, a: argparse.Namespace) -> dict:
    from core.data.filtering import FilterSpec
    from core.data.slicing import build_sweep, sweep

    sizes = tuple(a.sizes or ()) or (a.size,)
    filter_spec = None
    if a.min_own_tag_probability is not None or a.drop_near_duplicates or a.drop_label_issues:
        filter_spec = FilterSpec(min_own_tag_probability=a.min_own_tag_probability,
                                 drop_near_duplicates=a.drop_near_duplicates, clip_model=a.filter_clip,
                                 drop_label_issues=a.drop_label_issues)
    slices = build_sweep(store, sweep(a.name, tuple(a.counts), sizes, fit=a.fit, resample=a.resample,
                                      real_fraction=a.real_fraction, repeats=a.repeats, seed=a.seed,
                                      tags=tuple(a.tags or ()), filter=filter_spec))
    for s in slices:
        print(f"slice {s['id']} {s['name']} n={s['count_per_tag']} size={s['size']} "
              f"real={s['real_fraction']} repeat={s['repeat']} {s['hash'][:12]}"
              f"{'' if s.get('created', True) else ' (existing)'}")
    from core.data.repeats import overlap_note

    for note in dict.fromkeys(f"n={s['count_per_tag']}: {n}" for s in slices if (n := overlap_note(s.get("repeat_overlap")))):
        print(f"warning: {note}")
    return {"slices": slices}


def cmd_slice_export(store: Store, a: argparse.Namespace) -> dict:
    from core.data.slicing import export_slice

    path = export_slice(store, a.slice, a.out, progress=_printer("export"))
    print(f"wrote {path}")
    return {"export": str(path)}


def cmd_train(store: Store, a: argparse.Namespace) -> dict:
    from core.train.training import train

    mode = "tiles" if a.tiles else a.mode
    if a.tiles and a.mode not in (None, "probe", "tiles"):
        raise CliUsageError(f"--tiles is a frozen-encoder mode; it cannot be combined with --mode {a.mode}")
    params: dict[str, Any] = {"encoder": a.encoder, "mode": mode, "seed": a.seed}
    if a.input_size is not None:
        params["image_size"] = a.input_size
    if a.epochs is not None:
        params["epochs"] = a.epochs
    for item in a.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliUsageError(f"--param takes KEY=VALUE, not {item!r}")
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
        runs = train(store, a.slices, backend=a.backend, params=params, progress=_printer("train"))
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

    results = evaluate(store, a.runs or None, progress=_printer("evaluate"))
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
        result = run_diagnosis(store, a.tags or None, a.sizes or [256], a.encoder, progress=_printer("diagnose"))
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


def cmd_jobs_list(store: Store, a: argparse.Namespace) -> dict:
    from core.run.jobs import list_jobs

    jobs = list_jobs(store, kind=a.kind, status=a.status)
    for j in jobs:
        print(f"job {j['id']} {j['kind']:<9} {j['status']:<9} {j['done']}/{j['total']} {j['error'] or j['message']}")
    return {"jobs": jobs}


def cmd_jobs_cancel(store: Store, a: argparse.Namespace) -> dict:
    from core.run.jobs import cancel

    return {"job": cancel(store, a.id)}


def cmd_azure_status(store: Store, a: argparse.Namespace) -> dict:
    from core.train.backends.azure import status

    result = status(store, check=not a.offline)
    for name, value in result["settings"].items():
        print(f"{name:<30} {value}")
    if "connection" in result:
        print(("ok: " if result["connection"]["ok"] else "not connected: ") + result["connection"]["message"])
    for p in result["projects"]:
        print(f"project {p['project_id'] or '(being created)'} {p['name']}: {p['images']} images, "
              f"{p['iterations']} iterations")
    return result


def cmd_azure_cleanup(store: Store, a: argparse.Namespace) -> dict:
    from core.train.backends.azure import cleanup

    result = cleanup(store, a.sweep)
    for p in result["deleted"]:
        print(f"deleted project {p['project_id']} {p['name']}")
    for p in result["already_gone"]:
        print(f"already gone: {p['name']}")
    return result


def cmd_worker(store: Store, a: argparse.Namespace) -> dict:
    import os

    from core.run.worker import serve

    print(f"worker {os.getpid()} serving {store.root} (Ctrl-C to stop)", flush=True)
    return serve(store.root, poll_seconds=a.poll, until=a.seconds)


def cmd_workspace_new(store: Store, a: argparse.Namespace) -> dict:
    from core.run import workspaces

    workspace_id = workspaces.create(store.root)
    print(f"workspace {workspace_id}: open the app with ?workspace={workspace_id}")
    return {"workspace": workspace_id, "path": str(workspaces.path(workspace_id, store.root))}


def cmd_workspace_clean(store: Store, a: argparse.Namespace) -> dict:
    from core.run import workspaces

    removed = workspaces.remove_idle(a.max_age_hours, home=store.root)
    print(f"removed {len(removed)} idle workspace(s)")
    return {"removed": removed}


def _printer(what: str) -> Optional[Callable[[int, int, str], None]]:
    """Progress on stderr when it is a terminal (stdout stays for results and the JSON line)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, message: str = "") -> None:
        sys.stderr.write(f"\r{what}: {done}/{total} {message[:60]:<60}")
        if total and done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


# -- parser --------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m core", description="Synthlab: does training on Stable Diffusion images help?")
    p.add_argument("--home", help="store folder (default: $SYNTHLAB_HOME or ./synthlab-data)")
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tags = sub.add_parser("tags", help="define tags and their prompts").add_subparsers(dest="tags_cmd", required=True)
    t = tags.add_parser("add", parents=[common], help="add a tag with a prompt template")
    t.add_argument("name")
    t.add_argument("--prompt", default="", help="dynamicprompts template, e.g. '{blue|black} jeans'")
    t.add_argument("--negative", default="")
    t.add_argument("--update", action="store_true", help="change the prompts of an existing tag")
    t.set_defaults(func=cmd_tags_add)
    t = tags.add_parser("list", parents=[common], help="tags with image counts")
    t.set_defaults(func=cmd_tags_list)

    g = sub.add_parser("generate", parents=[common], help="generate images for a tag with Stable Diffusion")
    g.add_argument("--tag", required=True)
    g.add_argument("--count", type=int, required=True, help="target size of the series")
    g.add_argument("--model", default=None, help=f"hub id or local folder (default {config.DEFAULT_MODEL})")
    g.add_argument("--width", type=int)
    g.add_argument("--height", type=int)
    g.add_argument("--steps", type=int)
    g.add_argument("--guidance", type=float)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int, default=None,
                   help="images per pipeline call (default: by device, 4 on CPU; $SYNTHLAB_BATCH_SIZE)")
    g.add_argument("--init-images", nargs="+", help="reference images for image-to-image")
    g.add_argument("--strength", type=float, default=0.6)
    g.add_argument("--expansion", choices=["random", "combinatorial"], default="random")
    g.add_argument("--scheduler", help="diffusers scheduler class, e.g. EulerAncestralDiscreteScheduler")
    g.add_argument("--fast-decode", action="store_true", help="decode with the tiny autoencoder (TAESD)")
    g.add_argument("--compile", action="store_true", help="torch.compile the UNet (pays off on long runs)")
    g.add_argument("--workers", type=int, default=0, help="run on N Ray workers (local Ray, or $SYNTHLAB_RAY_ADDRESS)")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("import", parents=[common], help="import real or test photos, or synthetic images made elsewhere")
    i.add_argument("paths", nargs="+")
    i.add_argument("--tag", help="tag for all files (omit for a folder/zip of tag-named subfolders)")
    i.add_argument("--source", choices=["real", "test", "synthetic"], default="real")
    i.add_argument("--generator", help="with --source synthetic: the tool that made them (comfyui, a1111, …); "
                                       "parameters found in the files are kept")
    i.set_defaults(func=cmd_import)

    sm = sub.add_parser("sample", help="load a bundled sample of real photos").add_subparsers(
        dest="sample_cmd", required=True)
    sc = sm.add_parser("clothing", parents=[common],
                       help="jeans, shoes, shirts, other: real and test photos from Fashion-MNIST")
    sc.add_argument("--per-tag", type=int, default=100, help="real photos per tag (default 100)")
    sc.add_argument("--test-per-tag", type=int, default=50, help="test photos per tag (default 50)")
    sc.add_argument("--size", type=int, default=256, help="stored side in px, upscaled bicubic (default 256)")
    sc.add_argument("--more-shoes", action="store_true", help="shoes also from Sandal and Ankle boot")
    sc.add_argument("--more-shirts", action="store_true", help="shirts also from T-shirt/top")
    sc.set_defaults(func=cmd_sample_clothing)

    images = sub.add_parser("images", help="browse images").add_subparsers(dest="images_cmd", required=True)
    il = images.add_parser("list", parents=[common])
    il.add_argument("--tag")
    il.add_argument("--source", choices=["synthetic", "real", "test"])
    il.set_defaults(func=cmd_images_list)
    ir = images.add_parser("reject", parents=[common], help="reject (or --restore) images")
    ir.add_argument("ids", nargs="+")
    ir.add_argument("--restore", action="store_true")
    ir.set_defaults(func=cmd_images_reject)

    s = sub.add_parser("slice", parents=[common], help="cut nested, reproducible slices")
    s.add_argument("--name", required=True)
    s.add_argument("--counts", type=_int_list, required=True, help="e.g. 10,30,50,120,170,200")
    s.add_argument("--size", type=int, help="pixel size (shorter side, centre crop)")
    s.add_argument("--sizes", type=_int_list, help="several pixel sizes, same members at each (e.g. 1024,256)")
    s.add_argument("--fit", choices=["crop", "pad", "stretch"], default="crop")
    s.add_argument("--resample", choices=["lanczos", "bicubic", "bilinear", "box", "hamming", "nearest"],
                   default="lanczos")
    s.add_argument("--real-fraction", type=float, default=0.0)
    s.add_argument("--repeats", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--tags", type=_str_list)
    s.add_argument("--min-own-tag-probability", type=float,
                   help="drop synthetic images whose zero-shot probability of their own tag is below this")
    s.add_argument("--drop-near-duplicates", action="store_true",
                   help="keep one synthetic image per near-duplicate cluster (perceptual hash, confirmed by aligned pixel correlation)")
    s.add_argument("--drop-label-issues", action="store_true",
                   help="drop synthetic images whose label the default encoder's out-of-fold probe suspects (cleanlab)")
    s.add_argument("--filter-clip", help="full CLIP model (hub id or folder) for the zero-shot filter")
    s.set_defaults(func=cmd_slice)

    e = sub.add_parser("export", parents=[common], help="export a slice as an imagefolder zip")
    e.add_argument("slice", help="slice id, hash, or a name with one slice")
    e.add_argument("--out", required=True, help="a .zip path, or an existing folder")
    e.set_defaults(func=cmd_slice_export)

    tr = sub.add_parser("train", parents=[common], help="train one model per slice")
    tr.add_argument("--slices", nargs="+", required=True, help="slice names or ids")
    tr.add_argument("--backend", choices=["local", "azure"], default="local")
    tr.add_argument("--encoder", default=None,
                    help=f"efficientnet-lite0 (embedded, offline), a hub id or local folder (e.g. CLIP), or "
                         f"cnn-small (default {config.DEFAULT_ENCODER})")
    tr.add_argument("--mode", choices=["probe", "tiles", "finetune", "zeroshot"], default=None,
                    help="probe (default): frozen encoder + logistic regression; tiles: the same on "
                         "encoder-sized tiles at native resolution; finetune; zeroshot (CLIP)")
    tr.add_argument("--tiles", action="store_true",
                    help="frozen encoder on encoder-sized tiles of each image at its native resolution, pooled")
    tr.add_argument("--input-size", type=_input_size, default=None, metavar="PX|native",
                    help="cnn-small: the side it trains at (default 32), or 'native' for the slice's size (≤ 1024)")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--param", action="append", metavar="KEY=VALUE",
                    help="a backend parameter, repeatable (local: C, lr, head_lr, unfreeze, batch_size, "
                         "image_size, width, augment, hflip, prompt)")
    tr.add_argument("--budget-hours", type=int, default=0)
    tr.add_argument("--training-type", choices=["Regular", "Advanced"], default="Regular")
    tr.add_argument("--tier", choices=["F0", "S0"], default=None,
                    help="Azure pricing tier, for the quota plan (default $SYNTHLAB_AZURE_TIER or S0)")
    tr.add_argument("--layout", choices=["nested", "plain"], default="nested",
                    help="Azure: one project per nested series (default) or one per slice")
    tr.add_argument("--workers", type=int, default=0, help="embed on N Ray workers (local backend)")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", parents=[common], help="score finished runs on the test images")
    ev.add_argument("--runs", type=int, nargs="*")
    ev.set_defaults(func=cmd_evaluate)

    rp = sub.add_parser("report", parents=[common], help="write a standalone HTML report")
    rp.add_argument("--out", required=True, help="the HTML file to write (its folder must exist)")
    rp.add_argument("--runs", type=int, nargs="*", help="run ids (default: every evaluated run)")
    rp.add_argument("--compare", action="append", metavar="ARM_A:ARM_B",
                    help="include this comparison of two arms (repeatable; arm ids from `arms`)")
    rp.set_defaults(func=cmd_report)

    cp = sub.add_parser("compare", parents=[common],
                        help="paired difference in accuracy of two arms at each shared count, with a verdict")
    cp.add_argument("--a", required=True, help="arm id (see `arms`), id prefix, label or sweep name")
    cp.add_argument("--b", required=True, help="the other arm")
    cp.set_defaults(func=cmd_compare)

    ar = sub.add_parser("arms", parents=[common], help="the arms (chart lines) of the evaluated runs")
    ar.set_defaults(func=cmd_arms)

    dg = sub.add_parser("diagnose", parents=[common], help="diversity, domain gap and fingerprint of synthetic images")
    dg.add_argument("--tags", type=_str_list)
    dg.add_argument("--sizes", type=_int_list, help="pixel sizes for the synthetic-vs-real probe (default 256)")
    dg.add_argument("--encoder", default=None, help=f"hub id or local folder (default {config.DEFAULT_ENCODER})")
    dg.add_argument("--workers", type=int, default=0, help="embed on N Ray workers")
    dg.set_defaults(func=cmd_diagnose)

    azure = sub.add_parser("azure", help="Azure Custom Vision: status and cleanup").add_subparsers(
        dest="azure_cmd", required=True)
    az = azure.add_parser("status", parents=[common], help="settings (keys masked), connection, projects")
    az.add_argument("--offline", action="store_true", help="do not call Azure")
    az.set_defaults(func=cmd_azure_status)
    az = azure.add_parser("cleanup", parents=[common], help="delete the Azure projects this store created")
    az.add_argument("--sweep", help="only the projects of this slice name")
    az.set_defaults(func=cmd_azure_cleanup)

    jobs = sub.add_parser("jobs", help="background jobs").add_subparsers(dest="jobs_cmd", required=True)
    jl = jobs.add_parser("list", parents=[common])
    jl.add_argument("--kind")
    jl.add_argument("--status")
    jl.set_defaults(func=cmd_jobs_list)
    jc = jobs.add_parser("cancel", parents=[common])
    jc.add_argument("id", type=int)
    jc.set_defaults(func=cmd_jobs_cancel)

    wk = sub.add_parser("worker", parents=[common], help="run the job worker as its own process (one per home)")
    wk.add_argument("--poll", type=float, default=0.5, help="seconds between looks at an empty queue")
    wk.add_argument("--seconds", type=float, help="stop after this long (default: until SIGTERM / Ctrl-C)")
    wk.set_defaults(func=cmd_worker)

    ws = sub.add_parser("workspace", help="demo workspaces (host side)").add_subparsers(dest="ws_cmd", required=True)
    wn = ws.add_parser("new", parents=[common], help="create an empty demo workspace and print its id")
    wn.set_defaults(func=cmd_workspace_new)
    wc = ws.add_parser("clean", parents=[common], help="remove idle workspaces (no queued or running job)")
    wc.add_argument("--max-age-hours", type=float, help="default $SYNTHLAB_DEMO_IDLE_HOURS or 24")
    wc.set_defaults(func=cmd_workspace_clean)
    return p


def _log_internal_error(args: argparse.Namespace | None) -> str:
    import traceback

    from core.redact import redact

    folder = config.home(getattr(args, "home", None)) / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "cli.log", "a", encoding="utf-8") as fh:
            fh.write(redact(traceback.format_exc()) + "\n")
        return str(folder / "cli.log")
    except OSError:
        return "no log (the store's logs folder cannot be written)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Everything it prints goes through :class:`core.redact.MaskingStream`."""
    from core.redact import MaskingStream

    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskingStream(out), MaskingStream(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (``… | head``): stop quietly, as a Unix filter does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
    except (OSError, AttributeError, ValueError):
        pass
    return 0


def _main(argv: Sequence[str] | None) -> int:
    import sqlite3

    from core.store.failures import store_damage

    parser = build_parser()
    store = None
    try:
        args = parser.parse_args(argv)
        store = Store(args.home)
        result = args.func(store, args)
        if getattr(args, "json", False):
            print(json.dumps(result, default=str, ensure_ascii=False))
        sys.stdout.flush()
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except sqlite3.DatabaseError as exc:
        damaged = store_damage(store, exc) if store is not None else None
        if damaged is not None:
            print(f"error: {damaged}", file=sys.stderr)
            return 2
        log = _log_internal_error(args if "args" in locals() else None)
        print(f"error: internal error ({type(exc).__name__}: {exc}); details in {log}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in the log
        log = _log_internal_error(args if "args" in locals() else None)
        print(f"error: internal error ({type(exc).__name__}: {exc}); details in {log}", file=sys.stderr)
        return 1
    return 0
