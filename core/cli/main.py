"""The headless CLI: ``python -m core [--home DIR] COMMAND … [--json]``.

The commands call the same core functions as the pages. With ``--json`` the last line of stdout is
one JSON object. A user error exits with status 2 and one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from core import config
from core.cli import common, data_commands, flow_commands, model_commands, service_commands
from core.data import samples
from core.errors import UserError
from core.store.database import Store


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's own contract too)
        raise common.CliUsageError(f"{self.prog}: {message}")


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
    t.set_defaults(func=data_commands.cmd_tags_add)
    t = tags.add_parser("list", parents=[common], help="tags with image counts")
    t.set_defaults(func=data_commands.cmd_tags_list)

    g = sub.add_parser("generate", parents=[common], help="generate images for a tag with Stable Diffusion")
    g.add_argument("--tag", required=True)
    g.add_argument("--count", type=int, required=True, help="target size of the series")
    g.add_argument("--model", default=None,
                   help=f"{config.BUILTIN_MODEL} (built-in, offline), a hub id or a local folder (default: "
                        f"{config.BUILTIN_MODEL} without CUDA or in demo mode, else {config.DEFAULT_MODEL})")
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
    g.set_defaults(func=model_commands.cmd_generate)

    i = sub.add_parser("import", parents=[common], help="import real or test photos, or synthetic images made elsewhere")
    i.add_argument("paths", nargs="+")
    i.add_argument("--tag", help="tag for all files (omit for a folder/zip of tag-named subfolders)")
    i.add_argument("--source", choices=["real", "test", "synthetic"], default="real")
    i.add_argument("--generator", help="with --source synthetic: the tool that made them (comfyui, a1111, …); "
                                       "parameters found in the files are kept")
    i.set_defaults(func=data_commands.cmd_import)

    sm = sub.add_parser("sample", help="load a bundled sample of real photos").add_subparsers(
        dest="sample_cmd", required=True)
    sc = sm.add_parser("clothing", parents=[common],
                       help="jeans, shoes, shirts, other: real and test photos from Fashion-MNIST")
    sc.add_argument("--per-tag", type=int, default=samples.DEFAULT_PER_TAG,
                    help=f"real photos per tag (default {samples.DEFAULT_PER_TAG})")
    sc.add_argument("--test-per-tag", type=int, default=samples.DEFAULT_TEST_PER_TAG,
                    help=f"test photos per tag (default {samples.DEFAULT_TEST_PER_TAG})")
    sc.add_argument("--size", type=int, default=256, help="stored side in px, upscaled bicubic (default 256)")
    sc.add_argument("--more-shoes", action="store_true", help="shoes also from Sandal and Ankle boot")
    sc.add_argument("--more-shirts", action="store_true", help="shirts also from T-shirt/top")
    sc.set_defaults(func=data_commands.cmd_sample_clothing)

    images = sub.add_parser("images", help="browse images").add_subparsers(dest="images_cmd", required=True)
    il = images.add_parser("list", parents=[common])
    il.add_argument("--tag")
    il.add_argument("--source", choices=["synthetic", "real", "test"])
    il.set_defaults(func=data_commands.cmd_images_list)
    ir = images.add_parser("reject", parents=[common], help="reject (or --restore) images")
    ir.add_argument("ids", nargs="+")
    ir.add_argument("--restore", action="store_true")
    ir.set_defaults(func=data_commands.cmd_images_reject)

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
    s.set_defaults(func=data_commands.cmd_slice)

    e = sub.add_parser("export", parents=[common], help="export a slice as an imagefolder zip")
    e.add_argument("slice", help="slice id, hash, or a name with one slice")
    e.add_argument("--out", required=True, help="a .zip path, or an existing folder")
    e.set_defaults(func=data_commands.cmd_slice_export)

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
    tr.set_defaults(func=model_commands.cmd_train)

    ev = sub.add_parser("evaluate", parents=[common], help="score finished runs on the test images")
    ev.add_argument("--runs", type=int, nargs="*")
    ev.set_defaults(func=model_commands.cmd_evaluate)

    rp = sub.add_parser("report", parents=[common], help="write a standalone HTML report")
    rp.add_argument("--out", required=True, help="the HTML file to write (its folder must exist)")
    rp.add_argument("--runs", type=int, nargs="*", help="run ids (default: every evaluated run)")
    rp.add_argument("--compare", action="append", metavar="ARM_A:ARM_B",
                    help="include this comparison of two arms (repeatable; arm ids from `arms`)")
    rp.set_defaults(func=model_commands.cmd_report)

    cp = sub.add_parser("compare", parents=[common],
                        help="paired difference in accuracy of two arms at each shared count, with a verdict")
    cp.add_argument("--a", required=True, help="arm id (see `arms`), id prefix, label or sweep name")
    cp.add_argument("--b", required=True, help="the other arm")
    cp.set_defaults(func=model_commands.cmd_compare)

    ar = sub.add_parser("arms", parents=[common], help="the arms (chart lines) of the evaluated runs")
    ar.set_defaults(func=model_commands.cmd_arms)

    dg = sub.add_parser("diagnose", parents=[common], help="diversity, domain gap and fingerprint of synthetic images")
    dg.add_argument("--tags", type=_str_list)
    dg.add_argument("--sizes", type=_int_list, help="pixel sizes for the synthetic-vs-real probe (default 256)")
    dg.add_argument("--encoder", default=None, help=f"hub id or local folder (default {config.DEFAULT_ENCODER})")
    dg.add_argument("--workers", type=int, default=0, help="embed on N Ray workers")
    dg.set_defaults(func=model_commands.cmd_diagnose)

    ex = sub.add_parser("experiment", help="the whole experiment in one command").add_subparsers(
        dest="experiment_cmd", required=True)
    er = ex.add_parser("run", parents=[common], help="sample → generate → cut three arms → train → score → compare "
                       "(offline with the built-in model; resumes, makes nothing twice)")
    er.add_argument("--per-tag", type=int, default=200, help="synthetic images per tag, and real photos at least (200)")
    er.add_argument("--test-per-tag", type=int, default=50, help="test photos per tag (50)")
    er.add_argument("--counts", type=_int_list, help="images per tag of the slices (default 10,30,50,120,170,200)")
    er.add_argument("--sizes", type=_int_list, help="slice sizes in px (default 256)")
    er.add_argument("--repeats", type=int, default=3)
    er.add_argument("--model", default=None, help=f"generator (default {config.BUILTIN_MODEL})")
    er.add_argument("--seed", type=int, default=0)
    er.set_defaults(func=flow_commands.cmd_experiment_run)

    azure = sub.add_parser("azure", help="Azure Custom Vision: status and cleanup").add_subparsers(
        dest="azure_cmd", required=True)
    az = azure.add_parser("status", parents=[common], help="settings (keys masked), connection, projects")
    az.add_argument("--offline", action="store_true", help="do not call Azure")
    az.set_defaults(func=service_commands.cmd_azure_status)
    az = azure.add_parser("cleanup", parents=[common], help="delete the Azure projects this store created")
    az.add_argument("--sweep", help="only the projects of this slice name")
    az.set_defaults(func=service_commands.cmd_azure_cleanup)

    jobs = sub.add_parser("jobs", help="background jobs").add_subparsers(dest="jobs_cmd", required=True)
    jl = jobs.add_parser("list", parents=[common])
    jl.add_argument("--kind")
    jl.add_argument("--status")
    jl.set_defaults(func=service_commands.cmd_jobs_list)
    jc = jobs.add_parser("cancel", parents=[common])
    jc.add_argument("id", type=int)
    jc.set_defaults(func=service_commands.cmd_jobs_cancel)

    wk = sub.add_parser("worker", parents=[common], help="run the job worker as its own process (one per home)")
    wk.add_argument("--poll", type=float, default=0.5, help="seconds between looks at an empty queue")
    wk.add_argument("--seconds", type=float, help="stop after this long (default: until SIGTERM / Ctrl-C)")
    wk.set_defaults(func=service_commands.cmd_worker)

    ws = sub.add_parser("workspace", help="demo workspaces (host side)").add_subparsers(dest="ws_cmd", required=True)
    wn = ws.add_parser("new", parents=[common], help="create an empty demo workspace and print its id")
    wn.set_defaults(func=service_commands.cmd_workspace_new)
    wc = ws.add_parser("clean", parents=[common], help="remove idle workspaces (no queued or running job)")
    wc.add_argument("--max-age-hours", type=float, help="default $SYNTHLAB_DEMO_IDLE_HOURS or 24")
    wc.set_defaults(func=service_commands.cmd_workspace_clean)
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

    from core.store.failures import storage_failure, store_damage

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
        if damaged is None and "args" in locals():
            damaged = storage_failure(store.root if store is not None else config.home(args.home), exc)
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
