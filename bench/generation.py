"""Benchmark: Synthlab's generation against a plain diffusers loop, and batched against one at a time.

    python bench/generation.py [--model HUB_ID_OR_FOLDER] [--count 16] [--steps 20] [--size 128]
                               [--batch-size 4] [--repeats 2]

(a) Whole process, paired: ``python -m core generate --batch-size 1`` (store, job row, provenance,
    content-addressed PNGs, fsync) over a plain script that loads the same pipeline with
    ``DiffusionPipeline.from_pretrained`` and saves the same images (seed S+i, same prompt, same size,
    one at a time) with ``image.save``. Both are fresh subprocesses with the same environment, run
    interleaved (ABAB…, ``--repeats`` pairs); printed: the median of the paired ratios with min and max.
    The script also checks that the two made the same pixels. The bar is ≤ 1.15×.
(b) Time per image through :func:`core.generate.generation.generate` in this process with a warm pipeline,
    paired ABAB: ``--batch-size`` images per call over one image per call (the measurement behind the
    default batch size on this device, :func:`core.generate.pipelines.default_batch_size`).

Default model: a random-weight Stable Diffusion built here, big enough that generation (not Python's
start-up) dominates a process on a CPU; on a GPU box pass a hub id that is in the local cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.paired import Paired, bench_env, interleave, machine, timed_process  # noqa: E402

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

PROMPT = "a photo of blue jeans on a white background"

PLAIN_LOOP = r'''
import sys, torch
from diffusers import DiffusionPipeline
model, out, count, steps, size, guidance = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.float16 if device == "cuda" else torch.float32
pipe = DiffusionPipeline.from_pretrained(model, dtype=dtype).to(device)
pipe.set_progress_bar_config(disable=True)
for i in range(count):
    image = pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, width=size, height=size,
                 generator=torch.Generator("cpu").manual_seed(i)).images[0]
    image.save(f"{out}/{i}.png")
'''.replace("PROMPT", repr(PROMPT))


def whole_process(model: str, count: int, steps: int, size: int, guidance: float, repeats: int, tmp: Path) -> dict:
    import numpy as np
    from PIL import Image

    from core.store.database import Store

    env = bench_env()

    def plain(i: int) -> float:
        out = tmp / f"plain-{i}"
        out.mkdir()
        return timed_process([sys.executable, "-c", PLAIN_LOOP, model, str(out), str(count), str(steps), str(size),
                              str(guidance)], env)

    def ours(i: int) -> float:
        home = tmp / f"home-{i}"
        store = Store(home)
        store.add_tag("bench", PROMPT)
        store.close()
        return timed_process([sys.executable, "-m", "core", "--home", str(home), "generate", "--tag", "bench",
                              "--count", str(count), "--model", model, "--steps", str(steps), "--width", str(size),
                              "--height", str(size), "--guidance", str(guidance), "--seed", "0",
                              "--batch-size", "1"], env)

    pairs = interleave(ours, plain, repeats)
    store = Store(tmp / "home-0")
    rows = store.query("SELECT id, series_index FROM images ORDER BY series_index")
    worst = 0
    for row in rows:
        a = np.asarray(store.open_image(row["id"]), dtype=np.int16)
        b = np.asarray(Image.open(tmp / "plain-0" / f"{row['series_index']}.png").convert("RGB"), dtype=np.int16)
        worst = max(worst, int(np.abs(a - b).max()))
    return {"pairs": pairs, "images": len(rows), "max_pixel_diff": worst}


def batching(model: str, count: int, steps: int, size: int, guidance: float, batch: int, repeats: int,
             tmp: Path) -> Paired:
    from core.generate.generation import generate
    from core.generate.planning import GenerationSpec
    from core.store.database import Store

    def run(name: str, batch_size: int, seed: int) -> float:
        store = Store(tmp / name)
        store.add_tag("bench", PROMPT)
        spec = GenerationSpec(tag="bench", count=count, model=model, steps=steps, width=size, height=size,
                              guidance=guidance, seed=seed, batch_size=batch_size)
        start = time.perf_counter()
        generate(store, spec)
        return (time.perf_counter() - start) / count

    run("warm-1", 1, 10_000)
    run("warm-b", batch, 20_000)
    return interleave(lambda i: run(f"batched-{i}", batch, 100 * i), lambda i: run(f"single-{i}", 1, 100 * i),
                      repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or local folder (default: a random SD model built here)")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="pairs per comparison")
    a = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="synthlab-bench-gen-") as tmp:
        tmp = Path(tmp)
        model = a.model
        if not model:
            from tests.tiny_models import build_tiny_sd

            model = build_tiny_sd(tmp / "model", unet_channels=(64, 128, 128), vae_channels=(32, 64, 64, 64),
                                  text_hidden=64, sample_size=a.size // 8)
        import torch

        from core.config import device

        print(machine())
        print(f"model {model} · device {device()} · {a.count} images of {a.size}px, {a.steps} steps, "
              f"guidance {a.guidance:g}")
        w = whole_process(model, a.count, a.steps, a.size, a.guidance, a.repeats, tmp)
        print(f"(a) whole process, {w['pairs'].summary('python -m core generate', 'plain diffusers loop')} "
              f"(bar <= 1.15x); {w['images']} images, max pixel difference between the two "
              f"{w['max_pixel_diff']}/255")
        b = batching(model, a.count, a.steps, a.size, a.guidance, a.batch_size, a.repeats, tmp)
        r = [1 / x for x in b.ratios]
        print(f"(b) warm pipeline, seconds per image: batch {a.batch_size} / one at a time: median of {len(r)} "
              f"paired ratios {b.median:.3f}× (min {min(b.ratios):.3f}×, max {max(b.ratios):.3f}×), i.e. batch "
              f"{a.batch_size} is {1 / b.median:.2f}× as fast (torch threads {torch.get_num_threads()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
