"""Benchmark: Synthlab's generation against a plain diffusers loop, and batched against one at a time.

    python bench/generation.py [--model HUB_ID_OR_FOLDER] [--count 16] [--steps 20] [--size 128]
                               [--batch-size 4] [--repeats 2]

(a) Whole process, measured side by side: ``python -m core generate`` (store, job row, provenance,
    content-addressed PNGs, fsync) over a plain script that loads the same pipeline with
    ``DiffusionPipeline.from_pretrained`` and saves the same images (seed S+i, same prompt, same size)
    with ``image.save``. Both are fresh subprocesses with the same environment, alternated, best of
    ``--repeats``; the script also checks that the two made the same pixels. The bar is ≤ 1.15×.
(b) Images per second through :func:`core.generation.generate` in this process with a warm pipeline:
    ``--batch-size`` images per call over one image per call.

Default model: a random-weight Stable Diffusion built here, big enough that generation (not Python's
start-up) dominates a process on a CPU; on a GPU box pass a hub id that is in the local cache.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
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


def _timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def whole_process(model: str, count: int, steps: int, size: int, guidance: float, repeats: int, tmp: Path) -> dict:
    import numpy as np
    from PIL import Image

    from core.store import Store

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plain, ours = [], []
    for r in range(repeats):
        out = tmp / f"plain-{r}"
        out.mkdir()
        plain.append(_timed([sys.executable, "-c", PLAIN_LOOP, model, str(out), str(count), str(steps), str(size),
                             str(guidance)], env))
        home = tmp / f"home-{r}"
        store = Store(home)
        store.add_tag("bench", PROMPT)
        store.close()
        ours.append(_timed([sys.executable, "-m", "core", "--home", str(home), "generate", "--tag", "bench",
                            "--count", str(count), "--model", model, "--steps", str(steps), "--width", str(size),
                            "--height", str(size), "--guidance", str(guidance), "--seed", "0"], env))
    store = Store(tmp / "home-0")
    rows = store.query("SELECT id, series_index FROM images ORDER BY series_index")
    worst = 0
    for row in rows:
        a = np.asarray(store.open_image(row["id"]), dtype=np.int16)
        b = np.asarray(Image.open(tmp / "plain-0" / f"{row['series_index']}.png").convert("RGB"), dtype=np.int16)
        worst = max(worst, int(np.abs(a - b).max()))
    return {"plain": min(plain), "ours": min(ours), "images": len(rows), "max_pixel_diff": worst,
            "all_plain": plain, "all_ours": ours}


def batching(model: str, count: int, steps: int, size: int, guidance: float, batch: int, tmp: Path) -> dict:
    from core.generation import GenerationSpec, generate
    from core.store import Store

    def run(name: str, batch_size: int, seed: int) -> float:
        store = Store(tmp / name)
        store.add_tag("bench", PROMPT)
        spec = GenerationSpec(tag="bench", count=count, model=model, steps=steps, width=size, height=size,
                              guidance=guidance, seed=seed, batch_size=batch_size)
        start = time.perf_counter()
        generate(store, spec)
        return count / (time.perf_counter() - start)

    run("warm-1", 1, 10_000)
    run("warm-b", batch, 20_000)
    single = run("single", 1, 0)
    batched = run("batched", batch, 0)
    return {"single": single, "batched": batched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or local folder (default: a random SD model built here)")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    a = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="synthlab-bench-gen-") as tmp:
        tmp = Path(tmp)
        model = a.model
        if not model:
            from tests.tiny_models import build_tiny_sd

            model = build_tiny_sd(tmp / "model", unet_channels=(64, 128, 128), vae_channels=(32, 64, 64, 64),
                                  text_hidden=64, sample_size=a.size // 8)
        from core.config import device

        print(f"model {model} · device {device()} · {a.count} images of {a.size}px, {a.steps} steps, "
              f"guidance {a.guidance:g}")
        w = whole_process(model, a.count, a.steps, a.size, a.guidance, a.repeats, tmp)
        print(f"(a) whole process, best of {a.repeats}: python -m core generate {w['ours']:.2f} s, "
              f"plain diffusers loop {w['plain']:.2f} s -> {w['ours'] / w['plain']:.3f}x "
              f"(bar <= 1.15x; runs: ours {', '.join(f'{t:.2f}' for t in w['all_ours'])}; "
              f"plain {', '.join(f'{t:.2f}' for t in w['all_plain'])}); "
              f"{w['images']} images, max pixel difference between the two {w['max_pixel_diff']}/255")
        b = batching(model, a.count, a.steps, a.size, a.guidance, a.batch_size, tmp)
        print(f"(b) images/s, warm pipeline: batch {a.batch_size} {b['batched']:.3f}/s, one at a time "
              f"{b['single']:.3f}/s -> {b['batched'] / b['single']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
