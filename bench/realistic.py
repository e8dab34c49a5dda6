"""Benchmark: generation at a real model's size, with random weights, through Synthlab and plain diffusers.

    python bench/realistic.py --arch sd-turbo|sd15|sdxl [--repeats 3] [--images 1] [--steps N] [--px N]
                              [--compile] [--taesd] [--keep DIR]

The architecture comes from the model's published configs, shipped as small JSON files in
``bench/configs/`` (UNet, VAE, CLIP text encoder(s), scheduler): the components are built from them with
random weights — the same FLOPs and memory as the real model, no download — saved as a diffusers folder
and loaded by Synthlab like any local model. Then, paired and interleaved (ABAB…): seconds per image at
the model's native size through ``core.generate.generation.generate`` (plan, job, store, provenance, PNG, fsync;
batch size 1) and through a plain diffusers call on the same loaded pipeline (``pipe(...)`` then
``image.save``). Printed: the median of the paired ratios with min and max, the machine, torch threads
and versions. On CPU, for ``sd-turbo`` at 512 px and 1 step, also the ratio to the published PyTorch figure
(7.8 s per image on an Intel i7-12700). On CUDA: images per second in fp16 with the attention processor
in use (SDPA), optionally ``--compile`` (Synthlab's torch.compile of the UNet) and ``--taesd`` (the plain
loop decoding with a random-weight TAESD of the published architecture).

This is a benchmark, not a test: the full-size models take minutes and gigabytes on a CPU. The test
suite builds a shrunken config through the same code (:func:`shrink`, :func:`build_pipeline`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from bench.paired import interleave, machine  # noqa: E402

CONFIGS = Path(__file__).resolve().parent / "configs"
ARCHS = tuple(sorted(p.stem for p in CONFIGS.glob("*.json")))
PROMPT = "a photo of blue jeans folded on a white table, studio light"
TAESD = {"encoder_block_out_channels": [64, 64, 64, 64], "decoder_block_out_channels": [64, 64, 64, 64],
         "num_encoder_blocks": [1, 3, 3, 3], "num_decoder_blocks": [3, 3, 3, 1], "latent_channels": 4}


def load_config(arch: str, folder: Path = CONFIGS) -> dict:
    """The published configs of ``arch`` (``bench/configs/ARCH.json``), checked for what building needs."""
    path = folder / f"{arch}.json"
    if not path.is_file():
        raise SystemExit(f"no config for {arch!r}: one of {', '.join(ARCHS)}")
    config = json.loads(path.read_text())
    for key in ("pipeline", "native_px", "steps", "guidance", "unet", "vae", "text_encoder", "scheduler"):
        if key not in config:
            raise ValueError(f"{path}: missing {key!r}")
    encoders = [config["text_encoder"]] + ([config["text_encoder_2"]] if "text_encoder_2" in config else [])
    width = sum(e["hidden_size"] for e in encoders)
    if config["unet"]["cross_attention_dim"] != width:
        raise ValueError(f"{path}: the UNet's cross_attention_dim {config['unet']['cross_attention_dim']} is not "
                         f"the text encoders' width {width}")
    return config


def shrink(config: dict, px: int = 64) -> dict:
    """The same architecture (block types, depth pattern, conditioning) at toy widths, for tests."""
    c = copy.deepcopy(config)
    unet = c["unet"]
    n = len(unet["block_out_channels"])
    unet["block_out_channels"] = [16 * (i + 1) for i in range(n)]
    unet["norm_num_groups"] = 8
    unet["layers_per_block"] = 1
    heads = unet.get("attention_head_dim", 8)
    unet["attention_head_dim"] = [2] * n if isinstance(heads, list) else 2
    if isinstance(unet.get("transformer_layers_per_block"), list):
        unet["transformer_layers_per_block"] = [min(t, 2) for t in unet["transformer_layers_per_block"]]
    encoders = ["text_encoder"] + (["text_encoder_2"] if "text_encoder_2" in c else [])
    for i, name in enumerate(encoders):
        c[name].update(hidden_size=16 * (i + 1), intermediate_size=32 * (i + 1), num_hidden_layers=2,
                       num_attention_heads=2, projection_dim=16 * (i + 1))
    unet["cross_attention_dim"] = sum(c[name]["hidden_size"] for name in encoders)
    if unet.get("addition_embed_type") == "text_time":
        unet["addition_time_embed_dim"] = 8
        unet["projection_class_embeddings_input_dim"] = 6 * 8 + c["text_encoder_2"]["projection_dim"]
    c["vae"].update(block_out_channels=[8] * len(c["vae"]["block_out_channels"]), layers_per_block=1,
                    norm_num_groups=8, sample_size=px)
    unet["sample_size"] = px // 8
    c["native_px"] = px
    c.pop("published", None)
    return c


def build_pipeline(config: dict, folder: Path, dtype: str = "float16") -> Path:
    """Build the pipeline ``config`` describes with random weights and save it (weights in ``dtype``,
    which only changes the files' size: Synthlab loads them in its own dtype) as a diffusers folder."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from tests.tiny_models import write_byte_level_clip_tokenizer

    folder = Path(folder)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tok_dir:
        write_byte_level_clip_tokenizer(tok_dir)
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)

    def text_encoder(cfg: dict):
        cls = CLIPTextModelWithProjection if cfg["_class_name"] == "CLIPTextModelWithProjection" else CLIPTextModel
        fields = {k: v for k, v in cfg.items() if not k.startswith("_")}
        return cls(CLIPTextConfig(**fields, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id))

    def fields(cfg: dict) -> dict:
        return {k: v for k, v in cfg.items() if not k.startswith("_")}

    unet = UNet2DConditionModel.from_config(fields(config["unet"]))
    vae = AutoencoderKL.from_config(fields(config["vae"]))
    scheduler = EulerDiscreteScheduler.from_config(fields(config["scheduler"]))
    common = dict(vae=vae, text_encoder=text_encoder(config["text_encoder"]), tokenizer=tokenizer, unet=unet,
                  scheduler=scheduler)
    if config["pipeline"] == "StableDiffusionXLPipeline":
        pipe = StableDiffusionXLPipeline(**common, text_encoder_2=text_encoder(config["text_encoder_2"]),
                                         tokenizer_2=tokenizer)
    else:
        pipe = StableDiffusionPipeline(**common, safety_checker=None, feature_extractor=None, image_encoder=None,
                                       requires_safety_checker=False)
    pipe.to(getattr(torch, dtype)).save_pretrained(folder, safe_serialization=True)
    return folder


def parameters(folder: Path) -> dict[str, int]:
    """Parameter counts per component, read from the saved safetensors headers (no loading)."""
    out = {}
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        total = 0
        for f in (folder / part).glob("*.safetensors"):
            with open(f, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(size))
            for name, meta in header.items():
                if name != "__metadata__":
                    count = 1
                    for d in meta["shape"]:
                        count *= d
                    total += count
        if total:
            out[part] = total
    return out


def measure(folder: Path, config: dict, *, px: int, steps: int, images: int, repeats: int, compile: bool,
            home: Path) -> dict:
    """Paired seconds per image: Synthlab's ``generate`` and a plain call of the same pipeline."""
    import torch

    from core import config as settings
    from core.generate.generation import generate
    from core.generate.pipelines import get_pipeline
    from core.generate.planning import GenerationSpec
    from core.models.generators import resolve_model
    from core.store.database import Store

    store = Store(home)
    store.add_tag("bench", PROMPT)
    guidance = float(config["guidance"])
    model = resolve_model(str(folder))
    device = settings.device()

    def spec(seed: int, count: int) -> GenerationSpec:
        return GenerationSpec(tag="bench", count=count, model=str(folder), width=px, height=px, steps=steps,
                              guidance=guidance, seed=seed, batch_size=1, compile=compile)

    t0 = time.perf_counter()
    generate(store, spec(10_000, 1))  # load and warm up (and compile) once, outside the timings
    load_s = time.perf_counter() - t0
    pipe = get_pipeline(model, "text2img", device, compile=compile).pipe
    out_dir = home / "plain"
    out_dir.mkdir()

    def ours(i: int) -> float:
        start = time.perf_counter()
        made = generate(store, spec(1000 * (i + 1), images))["generated"]
        assert made == images
        return (time.perf_counter() - start) / images

    def plain(i: int) -> float:
        start = time.perf_counter()
        for k in range(images):
            with torch.inference_mode():
                image = pipe(PROMPT, num_inference_steps=steps, guidance_scale=guidance, width=px, height=px,
                             generator=torch.Generator("cpu").manual_seed(1000 * (i + 1) + k)).images[0]
            image.save(out_dir / f"{i}-{k}.png")
        return (time.perf_counter() - start) / images

    pairs = interleave(ours, plain, repeats)
    attention = sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})
    store.close()
    return {"pairs": pairs, "load_s": load_s, "device": device, "dtype": str(pipe.unet.dtype).replace("torch.", ""),
            "attention": attention, "pipe": pipe}


def taesd_line(pipe, config: dict, px: int, steps: int, repeats: int) -> str:
    """Plain diffusers with a TAESD-architecture decoder (random weights) against its full VAE decode."""
    import torch
    from diffusers import AutoencoderTiny

    tiny = AutoencoderTiny(**TAESD).to(pipe.device, pipe.unet.dtype)
    full = pipe.vae

    def run(vae) -> float:
        pipe.vae = vae
        start = time.perf_counter()
        with torch.inference_mode():
            pipe(PROMPT, num_inference_steps=steps, guidance_scale=float(config["guidance"]), width=px, height=px)
        return time.perf_counter() - start

    try:
        p = interleave(lambda i: run(tiny), lambda i: run(full), repeats)
    finally:
        pipe.vae = full
    return f"TAESD decode (plain loop): {p.summary('with TAESD', 'full VAE')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=ARCHS, required=True)
    parser.add_argument("--repeats", type=int, default=3, help="pairs (ABAB…)")
    parser.add_argument("--images", type=int, default=1, help="images per timing")
    parser.add_argument("--steps", type=int, help="default: the model's usual (sd-turbo 1, others 25)")
    parser.add_argument("--px", type=int, help="default: the model's native size")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet (Synthlab's --compile)")
    parser.add_argument("--taesd", action="store_true", help="also time the plain loop with a TAESD decoder")
    parser.add_argument("--shrink", action="store_true", help="toy widths, same architecture (a smoke run)")
    parser.add_argument("--keep", help="build the model into this folder and keep it (reused when present)")
    a = parser.parse_args(argv)

    import torch

    config = load_config(a.arch)
    if a.shrink:
        config = shrink(config)
    px = a.px or config["native_px"]
    steps = a.steps or config["steps"]
    with tempfile.TemporaryDirectory(prefix="synthlab-bench-realistic-") as tmp:
        tmp = Path(tmp)
        folder = Path(a.keep) if a.keep else tmp / "model"
        t0 = time.perf_counter()
        if not (folder / "model_index.json").is_file():
            build_pipeline(config, folder)
        built = time.perf_counter() - t0
        counts = parameters(folder)
        print(machine())
        print(f"{a.arch}{' (shrunk)' if a.shrink else ''}: {config['pipeline']} from bench/configs/{a.arch}.json, "
              f"random weights; parameters " + ", ".join(f"{k} {v / 1e6:.0f} M" for k, v in counts.items())
              + f"; built in {built:.0f} s; {px} px, {steps} step(s), guidance {config['guidance']}")
        r = measure(folder, config, px=px, steps=steps, images=a.images, repeats=a.repeats, compile=a.compile,
                    home=tmp / "home")
        pairs = r["pairs"]
        print(f"device {r['device']} ({r['dtype']}, attention {', '.join(r['attention'])}, torch threads "
              f"{torch.get_num_threads()}); loaded and warmed up in {r['load_s']:.1f} s")
        print(f"seconds per image: Synthlab {min(pairs.a):.2f} (median {sorted(pairs.a)[len(pairs.a) // 2]:.2f}), "
              f"plain diffusers {min(pairs.b):.2f} (median {sorted(pairs.b)[len(pairs.b) // 2]:.2f})")
        print(pairs.summary("Synthlab", "plain diffusers"))
        if r["device"].startswith("cuda"):
            med = sorted(pairs.a)[len(pairs.a) // 2]
            print(f"CUDA: {1 / med:.2f} img/s through Synthlab ({r['dtype']}, {'compiled' if a.compile else 'eager'})")
        published = config.get("published")
        if published and r["device"] == "cpu" and px == published["px"] and steps == published["steps"]:
            med = sorted(pairs.a)[len(pairs.a) // 2]
            print(f"vs published {published['what']}: {published['seconds_per_image']} s/image on "
                  f"{published['device']} -> this machine through Synthlab is {med / published['seconds_per_image']:.2f}× "
                  "that time")
        if a.taesd:
            print(taesd_line(r["pipe"], config, px, steps, a.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
