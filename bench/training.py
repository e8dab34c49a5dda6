"""Benchmark: a full sweep of linear-probe runs with a cold, then a warm, embedding cache.

    python bench/training.py [--encoder HUB_ID_OR_FOLDER] [--counts 5,10,20,30,40,60] [--sizes 32,64]
                             [--repeats 3]

The sweep is 6 counts × 2 sizes × 3 repeats = 36 runs over four tags of real photos (scikit-learn's
handwritten digits, no download). Both sweeps run through :func:`core.training.train`, jobs and all.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", help="hub id or local folder (default: a small random CLIP built here)")
    parser.add_argument("--counts", default="5,10,20,30,40,60")
    parser.add_argument("--sizes", default="32,64")
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args(argv)

    from core import encoders, imaging, slicing, training
    from core.config import device
    from core.store import Store
    from tests.datasets import import_digits

    counts = tuple(int(c) for c in a.counts.split(","))
    sizes = tuple(int(s) for s in a.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="synthlab-bench-") as tmp:
        tmp = Path(tmp)
        encoder = a.encoder
        if not encoder:
            from tests.tiny_clip import build_tiny_clip

            with encoders.quiet_transformers():
                encoder = build_tiny_clip(tmp / "clip", image_size=224, patch_size=32, hidden=768, layers=12,
                                          heads=12, mlp_ratio=4, projection_dim=512, text_hidden=32)
        store = Store(tmp / "home")
        import_digits(store, tmp / "digits", n_train=max(counts), n_test=10)
        specs = slicing.sweep("bench", counts, sizes, real_fraction=1.0, repeats=a.repeats)
        slices = slicing.build_sweep(store, specs)
        ref = encoders.resolve_encoder(encoder)
        encoders.load_vision_model(ref)
        members = {}
        for s in slices:
            for m in slicing.slice_members(store, s["id"]):
                members[(m["id"], s["size"])] = m
                imaging.resized(store, m["id"], s["size"])
        unique = len(members)
        print(f"sweep: {len(slices)} runs ({len(counts)} counts × {len(sizes)} sizes × {a.repeats} repeats), "
              f"{unique} distinct (image, size) pairs, encoder {ref.name}, device {device()}")

        timings = {}
        for label, seed in (("cold", 0), ("warm", 1)):
            if label == "cold":
                encoders.clear_cache(store)
            t0 = time.perf_counter()
            runs = training.train(store, ["bench"], params={"encoder": encoder, "seed": seed})
            timings[label] = time.perf_counter() - t0
            done = [training.get_run(store, r["id"]) for r in runs]
            failed = [r for r in done if r["status"] != "done"]
            if failed:
                print(f"{label}: {len(failed)} runs did not finish: {failed[0]['error']}", file=sys.stderr)
                return 1
            hits = sum(r["metrics"]["embedding_cache"]["hits"] for r in done)
            misses = sum(r["metrics"]["embedding_cache"]["misses"] for r in done)
            print(f"{label} embedding cache: {timings[label]:7.2f} s for {len(done)} runs "
                  f"({misses} images embedded, {hits} read from the cache)")
        ratio = timings["cold"] / timings["warm"]
        print(f"ratio cold / warm: {ratio:.1f}× ({'meets' if ratio >= 10 else 'BELOW'} the 10× bar)")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
