"""Benchmark: how good and how fast the built-in generator ``fashion-mini`` is, on real Fashion-MNIST photos.

    python bench/generator_quality.py [--model fashion-mini] [--per-class 100] [--speed-images 256]
                                      [--pairs 4] [--json FILE]

Quality (five figures, the model card's): images are made through Synthlab's own ``generate`` (a temp
store, one tag per Fashion-MNIST class; the sample's four tags keep their prompts), then compared, in the
default encoder's features, with real photos the generator never saw:
conditioning accuracy (a probe trained on real photos labels each image as its prompt's class: the
sample's four tags, and all ten classes), CAS (a probe trained only on generated images, scored on the
t10k test photos), Fréchet distance beside the real-vs-real floor, diversity within a class as a share of
real's, and memorisation (pixels: the share of generated images nearer a training row than 99 % of test
photos are).

Speed: images per second at native size in batches of 64, Synthlab's ``generate`` (store, provenance,
content-addressed PNGs) against a plain diffusers loop over the same folder that saves PNGs, interleaved
ABAB; printed: the median of the paired time ratios, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.paired import interleave, machine  # noqa: E402
from core.analysis import generator_quality as gq  # noqa: E402
from core.data import samples  # noqa: E402
from core.generate.generation import generate  # noqa: E402
from core.generate.planning import GenerationSpec  # noqa: E402
from core.models import builtin_generator, encoder_resolution, encoders  # noqa: E402
from core.store.database import Store  # noqa: E402

SAMPLE_CLASSES = (1, 7, 6, 8)  # jeans, shoes, shirts, other: the sample's four tags


def _loadavg() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _to_image(pixels: np.ndarray):
    from PIL import Image

    return Image.fromarray(pixels, mode="L").resize((32, 32), Image.Resampling.BICUBIC).convert("RGB")


def _gray32(images) -> np.ndarray:
    return np.stack([np.asarray(im.convert("L").resize((32, 32)), np.float32).ravel() / 255 for im in images])


def _embed(ref, images, batch: int = 128) -> np.ndarray:
    return np.concatenate([encoders.embed(ref, images[i:i + batch]) for i in range(0, len(images), batch)])


def make_images(model: str, per_class: int, seed: int = 0) -> tuple[list, np.ndarray, float]:
    """Images of every class through Synthlab's generate, their class labels, and the seconds it took."""
    from PIL import Image

    images, labels = [], []
    sample = {t.name: t for t in samples.sample_tags()}
    negative = samples.SampleTag("", (), "").negative
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as home:
        store = Store(home)
        for label, (name, prompt) in enumerate(builtin_generator.CLASS_PROMPTS):
            # as the experiment makes them: the sample's prompt and negative prompt (the same text for all ten)
            store.add_tag(name, sample[name].prompt if name in sample else prompt,
                          sample[name].negative if name in sample else negative)
            result = generate(store, GenerationSpec(tag=name, count=per_class, model=model, seed=seed,
                                                    batch_size=64))
            for image_id in result["images"]:
                with Image.open(store.image_file(image_id)) as im:
                    images.append(im.convert("RGB"))
                labels.append(label)
        store.close()
    return images, np.asarray(labels), time.perf_counter() - started


def quality(model: str, per_class: int) -> dict:
    gen_images, gen_y, seconds = make_images(model, per_class)
    train_px, train_y, _ = samples.fashion_split("train")
    test_px, test_y, _ = samples.fashion_split("t10k")
    rank = np.zeros(len(train_y), int)
    for c in range(10):
        rank[train_y == c] = np.arange((train_y == c).sum())
    probe_rows = np.concatenate([np.flatnonzero((train_y == c) & (rank < per_class * 2)) for c in range(10)])
    gen_rows = np.flatnonzero(rank >= samples.SAMPLE_ROWS_PER_CLASS)
    test_rows = np.concatenate([np.flatnonzero(test_y == c)[:per_class] for c in range(10)])

    ref = encoder_resolution.resolve_encoder(None)
    real_x = _embed(ref, [_to_image(p) for p in train_px[probe_rows]])
    real_y = train_y[probe_rows]
    test_x = _embed(ref, [_to_image(p) for p in test_px[test_rows]])
    tst_y = test_y[test_rows]
    gen_x = _embed(ref, gen_images)

    four = np.isin(gen_y, SAMPLE_CLASSES)
    real_four, test_four = np.isin(real_y, SAMPLE_CLASSES), np.isin(tst_y, SAMPLE_CLASSES)
    floor_rows = np.concatenate([np.flatnonzero((train_y == c) & (rank >= per_class * 2))[:per_class]
                                 for c in range(10)])
    floor_x = _embed(ref, [_to_image(p) for p in train_px[floor_rows]])
    div = [gq.diversity(gen_x[gen_y == c]) / gq.diversity(test_x[tst_y == c]) for c in range(10)]
    gen_px = _gray32(gen_images)
    train32 = _gray32([_to_image(p) for p in train_px[gen_rows]])
    test32 = _gray32([_to_image(p) for p in test_px[test_rows]])
    memo, threshold = gq.memorisation(gen_px, train32, test32)
    return {
        "per_class": per_class, "images": len(gen_images), "generate_seconds": round(seconds, 1),
        "conditioning_four_tags": gq.conditioning_accuracy(real_x[real_four], real_y[real_four], gen_x[four], gen_y[four]),
        "conditioning_per_tag": {builtin_generator.CLASS_PROMPTS[c][0]: gq.conditioning_accuracy(
            real_x[real_four], real_y[real_four], gen_x[gen_y == c], gen_y[gen_y == c]) for c in SAMPLE_CLASSES},
        "conditioning_ten_classes": gq.conditioning_accuracy(real_x, real_y, gen_x, gen_y),
        "cas_four_tags": gq.classification_accuracy_score(gen_x[four], gen_y[four], test_x[test_four], tst_y[test_four]),
        "cas_ten_classes": gq.classification_accuracy_score(gen_x, gen_y, test_x, tst_y),
        "cas_real_ten_classes": gq.classification_accuracy_score(floor_x, train_y[floor_rows], test_x, tst_y),
        "frechet": gq.frechet_distance(gen_x, test_x),
        "frechet_floor": gq.frechet_distance(floor_x, test_x),
        "diversity_ratio": float(np.mean(div)),
        "diversity_ratio_min": float(np.min(div)),
        "memorisation": memo, "memorisation_threshold": threshold,
    }


def speed(model: str, count: int, pairs: int) -> dict:
    """Images/s of Synthlab's generate vs a plain diffusers loop, paired ABAB."""
    import torch
    from diffusers import DiffusionPipeline

    from core.generate.planning import preset_for
    from core.models.generators import resolve_model

    info = resolve_model(model)
    preset = preset_for(model)
    prompt = "a product photo of blue jeans, folded, plain white background"
    plain = DiffusionPipeline.from_pretrained(info.source)
    plain.set_progress_bar_config(disable=True)

    def ours(i: int) -> float:
        with tempfile.TemporaryDirectory() as home:
            store = Store(home)
            store.add_tag("jeans", prompt, "")
            start = time.perf_counter()
            generate(store, GenerationSpec(tag="jeans", count=count, model=model, seed=1000 * (i + 1), batch_size=64))
            seconds = time.perf_counter() - start
            store.close()
        return seconds

    def baseline(i: int) -> float:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            for first in range(0, count, 64):
                n = min(64, count - first)
                gens = [torch.Generator().manual_seed(1000 * (i + 1) + first + k) for k in range(n)]
                images = plain([prompt] * n, negative_prompt=[""] * n, num_inference_steps=preset.steps,
                               guidance_scale=preset.guidance, height=preset.height, width=preset.width,
                               generator=gens).images
                for k, image in enumerate(images):
                    image.save(Path(out) / f"{first + k}.png")
            return time.perf_counter() - start

    ours(-1)
    baseline(-1)
    paired = interleave(ours, baseline, pairs)
    return {"count": count, "pairs": pairs, "ratio_median": paired.median, "ratios": paired.ratios,
            "ours_images_per_s": count / float(np.median(paired.a)),
            "plain_images_per_s": count / float(np.median(paired.b)),
            "steps": preset.steps, "guidance": preset.guidance, "summary": paired.summary("synthlab", "plain")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=builtin_generator.NAME)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--speed-images", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    print(machine())
    print(_loadavg(), "(before)")
    out = {"quality": quality(args.model, args.per_class)}
    q = out["quality"]
    print(f"conditioning accuracy: {q['conditioning_four_tags']:.3f} (sample's four tags), "
          f"{q['conditioning_ten_classes']:.3f} (ten classes); per tag: "
          + ", ".join(f"{t} {v:.2f}" for t, v in q["conditioning_per_tag"].items()))
    print(f"CAS (trained on generated, tested on real): {q['cas_four_tags']:.3f} (four tags), "
          f"{q['cas_ten_classes']:.3f} (ten classes; real-trained: {q['cas_real_ten_classes']:.3f})")
    print(f"Fréchet distance: {q['frechet']:.2f} (real vs real floor {q['frechet_floor']:.2f})")
    print(f"diversity within a class, generated / real: {q['diversity_ratio']:.3f} "
          f"(lowest class {q['diversity_ratio_min']:.3f})")
    print(f"memorisation: {q['memorisation']:.3%} of generated images nearer a training photo than 99 % "
          f"of test photos are")
    print(_loadavg())
    if not args.skip_speed:
        out["speed"] = s = speed(args.model, args.speed_images, args.pairs)
        print(f"speed: {s['ours_images_per_s']:.1f} images/s (synthlab) vs {s['plain_images_per_s']:.1f} (plain "
              f"diffusers loop), {s['steps']} steps, guidance {s['guidance']}, batch 64; {s['summary']}")
        print(_loadavg())
    out["load_average"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
