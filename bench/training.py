"""Benchmark: a sweep of linear-probe runs, warm embedding cache against cold, and against a plain baseline.

    python bench/training.py [--encoder HUB_ID_OR_FOLDER] [--counts 5,10,20,30,40,60] [--sizes 32,64]
                             [--repeats 3] [--pairs 2] [--small]

Printed, each as the median of paired ratios (ABAB…, order flipped every other pair) with min and max:
(a) the sweep in this process, warm cache over cold; (b) the same from the command line, whole
``python -m core train`` processes (the bar: cold ≥ 5× the warm time); (c) ours with a cold cache over a
plain script — transformers embedding + scikit-learn logistic regression per slice, no cache.
``--small`` uses a toy encoder (a smoke run).

The sweep is 6 counts × 2 sizes × 3 repeats = 36 runs over four tags of real photos (scikit-learn's
handwritten digits, no download). Both sweeps run through :func:`core.train.training.train`, jobs and all.
The encoder is loaded and the resize cache filled before either is timed, so the two timings differ
by the embedding cache alone: cold, every slice image is embedded once per size; warm (new runs with
another seed, so every head is fitted again), every embedding is read back from the store. Default
encoder: a random-weight CLIP built on the fly whose vision tower has the default encoder's
architecture (ViT-B/32: 224 px, 32 px patches, 768 wide, 12 layers), so embedding costs what it costs
with ``openai/clip-vit-base-patch32``; pass ``--encoder openai/clip-vit-base-patch32`` (or any hub id
or folder) to use real weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.paired import Paired, interleave, machine, timed_process  # noqa: E402


def _warm_cold(run, pairs: int):
    """Paired warm/cold timings, ABAB with the order flipped every other pair (a warm run needs the cache
    a cold one just filled, so the first pair is cold then warm)."""
    out = Paired()
    for i in range(pairs):
        if i % 2 == 0:
            out.b.append(run(True))
            out.a.append(run(False))
        else:
            out.a.append(run(False))
            out.b.append(run(True))
    return out


def plain_sweep(store, slices: list[dict], encoder: str) -> float:
    """What a one-off script does: per slice, load its images, embed them with transformers, fit a
    scikit-learn logistic regression. No cache, no store writes; the encoder is loaded once."""
    import numpy as np
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

    from core.data import slicing
    from core.store import imaging

    processor = AutoImageProcessor.from_pretrained(encoder)
    model = CLIPVisionModelWithProjection.from_pretrained(encoder).eval()
    t0 = time.perf_counter()
    for s in slices:
        members = slicing.slice_members(store, s["id"])
        pictures = [imaging.resize(Image.open(m["path"]).convert("RGB"), s["size"]) for m in members]
        feats = []
        with torch.inference_mode():
            for k in range(0, len(pictures), 32):
                inputs = processor(images=pictures[k:k + 32], return_tensors="pt")
                feats.append(model(**inputs).image_embeds.numpy())
        x = np.concatenate(feats)
        y = [m["tag"] for m in members]
        LogisticRegression(max_iter=1000).fit(x, y)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", help="hub id or local folder (default: a small random CLIP built here)")
    parser.add_argument("--counts", default="5,10,20,30,40,60")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=2, help="pairs per comparison (ABAB…)")
    parser.add_argument("--small", action="store_true", help="a toy encoder instead of a ViT-B/32-sized one")
    a = parser.parse_args(argv)

    from core.config import device
    from core.data import slicing
    from core.models import embedding_cache, encoder_ref, encoder_resolution, encoders
    from core.store import imaging
    from core.store.database import Store
    from core.train import training
    from tests.datasets import import_digits

    counts = tuple(int(c) for c in a.counts.split(","))
    sizes = tuple(int(s) for s in a.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="synthlab-bench-") as tmp:
        tmp = Path(tmp)
        encoder = a.encoder
        if not encoder and a.small:
            from tests.tiny_clip import build_tiny_clip

            with encoder_ref.quiet_transformers():
                encoder = build_tiny_clip(tmp / "clip")
        if not encoder:
            from tests.tiny_clip import build_tiny_clip

            with encoder_ref.quiet_transformers():
                encoder = build_tiny_clip(tmp / "clip", image_size=224, patch_size=32, hidden=768, layers=12,
                                          heads=12, mlp_ratio=4, projection_dim=512, text_hidden=32)
        store = Store(tmp / "home")
        import_digits(store, tmp / "digits", n_train=max(counts), n_test=10)
        specs = slicing.sweep("bench", counts, sizes, real_fraction=1.0, repeats=a.repeats)
        slices = slicing.build_sweep(store, specs)
        ref = encoder_resolution.resolve_encoder(encoder)
        encoders.load_vision_model(ref)
        members = {}
        for s in slices:
            for m in slicing.slice_members(store, s["id"]):
                members[(m["id"], s["size"])] = m
                imaging.resized(store, m["id"], s["size"])
        unique = len(members)
        print(f"sweep: {len(slices)} runs ({len(counts)} counts × {len(sizes)} sizes × {a.repeats} repeats), "
              f"{unique} distinct (image, size) pairs, encoder {ref.name}, device {device()}")

        seeds = iter(range(1, 10_000))

        def sweep_in_process(cold: bool) -> float:
            if cold:
                embedding_cache.clear_cache(store)
            t0 = time.perf_counter()
            runs = training.train(store, ["bench"], params={"encoder": encoder, "seed": next(seeds)})
            seconds = time.perf_counter() - t0
            failed = [r for r in runs if r["status"] != "done"]
            if failed:
                raise SystemExit(f"{len(failed)} runs did not finish: {failed[0]['error']}")
            return seconds

        print(machine())
        warm_cold = _warm_cold(sweep_in_process, a.pairs)
        print(f"(a) in process, {len(slices)} runs: {warm_cold.summary('warm cache', 'cold cache')} -> cold is "
              f"{1 / warm_cold.median:.1f}× the warm time")

        cli = [sys.executable, "-m", "core", "--home", str(tmp / "home"), "train", "--slices", "bench",
               "--encoder", encoder]
        store.close()

        def sweep_cli(cold: bool) -> float:
            if cold:
                s = Store(tmp / "home")
                embedding_cache.clear_cache(s)
                s.close()
            return timed_process(cli + ["--seed", str(next(seeds))])

        cli_pairs = _warm_cold(sweep_cli, a.pairs)
        print(f"(b) from the command line (whole processes), {len(slices)} runs: "
              f"{cli_pairs.summary('warm cache', 'cold cache')} -> cold is {1 / cli_pairs.median:.1f}× the warm "
              f"time ({'meets' if 1 / cli_pairs.median >= 5 else 'BELOW'} the 5× bar)")

        store = Store(tmp / "home")
        plain_pairs = interleave(lambda i: sweep_in_process(True), lambda i: plain_sweep(store, slices, encoder),
                                 a.pairs)
        print(f"(c) vs a plain baseline (transformers embedding + scikit-learn logistic regression per slice, "
              f"no cache), in process: {plain_pairs.summary('ours, cold cache', 'plain')}")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
