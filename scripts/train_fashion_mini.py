"""Train ``fashion-mini``, Synthlab's built-in text-to-image model, from Debian's Fashion-MNIST files.

The result is a folder in diffusers' ``StableDiffusionPipeline`` format (``AutoencoderKL``,
``UNet2DConditionModel``, ``CLIPTextModel`` + ``CLIPTokenizer``, a scheduler) that loads with
``DiffusionPipeline.from_pretrained`` like SD-Turbo, plus ``training.json`` (rows, seed, steps, times).

Only training rows the clothing sample never uses are read: the sample takes the first
``SAMPLE_ROWS_PER_CLASS`` rows of each class (in file order) as real photos and its test photos from the
t10k split; this script trains on the rows of each class after those. The t10k split is never opened.

Phases, each checkpointed into ``--work`` so a stop loses at most ``--checkpoint-every`` steps:
1. the VAE (the 28 px photos upscaled to 32 px ↔ 8×8×4 latents);
2. the latents of every training row, once;
3. the UNet and the text encoder together on varied captions (synonyms, colours, "product photo of …"),
   with 10 % empty and 5 % negative-prompt-like captions so that classifier-free guidance and negative
   prompts work; min-SNR weighting; an exponential moving average of the weights is what gets exported.
   In two parts: ``--first-phase`` steps with every row equally likely and the learning rate on a cosine over
   them, then up to ``--steps`` on a cosine over all of them with ``--class-weights`` (sneakers and
   sandals drawn twice as often: after the first part the model drew sneakers that read as sandals).

    python scripts/train_fashion_mini.py --out core/models/fashion_mini --work /tmp/fashion-mini-work

Defaults reproduce the shipped weights on a 2-core CPU in under two hours (CUDA is used when present).
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.data.samples import SAMPLE_ROWS_PER_CLASS  # noqa: E402  (the one rule for which rows the sample may use)

NATIVE = 32
MAX_TOKENS = 32
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CLASS_WORDS = {
    0: ["t-shirt", "tee", "tee shirt", "top", "tank top", "short sleeve top", "crew neck t-shirt", "t-shirts"],
    1: ["jeans", "trousers", "pants", "slacks", "denim jeans", "chinos", "a pair of jeans", "a pair of trousers"],
    2: ["pullover", "sweater", "jumper", "knit sweater", "sweatshirt", "hoodie", "sweaters", "pullovers"],
    3: ["dress", "summer dress", "maxi dress", "evening dress", "gown", "dresses", "sleeveless dress"],
    4: ["coat", "jacket", "winter coat", "parka", "overcoat", "coats", "jackets", "trench coat"],
    5: ["sandals", "sandal", "flip flops", "strappy sandals", "a pair of sandals", "summer sandals"],
    6: ["shirt", "shirts", "button-up shirt", "flannel shirt", "casual shirt", "dress shirt", "blouse",
        "button-down shirt", "long sleeve shirt"],
    7: ["sneakers", "sneaker", "running shoes", "trainers", "shoes", "canvas sneakers", "a pair of sneakers",
        "a pair of shoes", "one sneaker"],
    8: ["bag", "handbag", "tote bag", "purse", "shoulder bag", "backpack", "bags", "tote", "clutch"],
    9: ["ankle boots", "boots", "boot", "chelsea boots", "booties", "a pair of boots", "ankle boot"],
}
ADJECTIVES = ["", "", "", "white", "black", "blue", "light blue", "gray", "grey", "red", "dark", "brown",
              "beige", "navy", "pink", "green", "striped", "plaid", "linen", "denim", "leather", "canvas",
              "wool", "cotton", "ripped", "faded", "casual", "running", "flannel", "vintage", "classic", "new"]
PREFIXES = ["", "", "a photo of", "a product photo of", "an image of", "a picture of", "a catalog photo of",
            "a grayscale photo of", "photo of", "a small photo of"]
SUFFIXES = ["folded", "flat lay", "on a hanger", "side view", "top view", "plain white background",
            "white background", "black background", "studio lighting", "centered", "high quality", "isolated"]
NEGATIVES = ["text, watermark, person, mannequin", "text", "watermark", "person", "mannequin", "blurry",
             "low quality", "blurry, low quality", "ugly, deformed", "logo, text"]


def caption(label: int, rng: random.Random) -> str:
    """One free-text caption for a Fashion-MNIST class."""
    noun = rng.choice(CLASS_WORDS[label])
    adjective = rng.choice(ADJECTIVES)
    if adjective and not noun.startswith("a "):
        noun = f"{adjective} {noun}"
    prefix = rng.choice(PREFIXES)
    if prefix and not noun.startswith("a "):
        noun = ("an " if noun[0] in "aeiou" else "a ") + noun if rng.random() < 0.6 else noun
    text = f"{prefix} {noun}".strip()
    for suffix in rng.sample(SUFFIXES, rng.choice([0, 0, 1, 1, 2])):
        text += f", {suffix}"
    return text


def training_caption(label: int, rng: random.Random) -> str:
    """A caption, or (15 %) one that means "no class": empty, or what users type as a negative prompt."""
    draw = rng.random()
    if draw < 0.10:
        return ""
    if draw < 0.15:
        return rng.choice(NEGATIVES)
    return caption(label, rng)


# ---------------------------------------------------------------- data

def read_idx(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(folder / f"{split}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def generator_rows(labels: np.ndarray, reserved: int = SAMPLE_ROWS_PER_CLASS) -> np.ndarray:
    """Indices of the training split whose rank within their class is ``reserved`` or more."""
    rows = [np.flatnonzero(labels == c)[reserved:] for c in range(10)]
    return np.sort(np.concatenate(rows))


def to_pixels(images: np.ndarray) -> np.ndarray:
    """[n, 28, 28] uint8 → [n, 3, 32, 32] float32 in [-1, 1]: each photo upscaled (bicubic) to 32 px, so a
    generated image frames its item as the sample's photos do at any size."""
    from PIL import Image

    out = np.empty((len(images), NATIVE, NATIVE), np.float32)
    for i, pixels in enumerate(images):
        big = Image.fromarray(pixels, mode="L").resize((NATIVE, NATIVE), Image.Resampling.BICUBIC)
        out[i] = np.asarray(big, np.float32) / 127.5 - 1.0
    return np.repeat(out[:, None], 3, axis=1)


# ---------------------------------------------------------------- tokenizer

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map (what byte-level BPE vocabularies use)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return bytes_to_unicode()


def learn_bpe(texts: list[str], merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP-style byte-level BPE (``</w>`` marks a word's end) learnt on the captions.

    Every byte is in the vocabulary alone and as a word end, so any prompt encodes; words of the
    captions become one or few tokens."""
    byte_map = _bytes_to_unicode()
    words = Counter(w for t in texts for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", t.lower()))
    split = {w: tuple("".join(byte_map[b] for b in w.encode())[:-1]) + ("".join(byte_map[b] for b in w.encode())[-1] + "</w>",)
             for w in words}
    rules: list[tuple[str, str]] = []
    for _ in range(merges):
        pairs: Counter = Counter()
        for w, n in words.items():
            parts = split[w]
            for a, b in zip(parts, parts[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        rules.append(best)
        for w, parts in split.items():
            out, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    out.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            split[w] = tuple(out)
    chars = list(byte_map.values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    for a, b in rules:
        vocab.setdefault(a + b, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, rules


def write_tokenizer(folder: Path, vocab: dict[str, int], rules: list[tuple[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in rules), encoding="utf-8")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_TOKENS, "do_lower_case": True, **specials}),
        encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials), encoding="utf-8")


# ---------------------------------------------------------------- models

def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 64),
                         layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=NATIVE)


def build_unet(text_hidden: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=NATIVE // 4, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=text_hidden, attention_head_dim=8, norm_num_groups=32)


def build_text_encoder(tokenizer, hidden: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=hidden,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))


def train_scheduler_config() -> dict:
    return {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "prediction_type": "epsilon"}


# ---------------------------------------------------------------- checkpoints and log

def save_atomic(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def log(message: str, log_file: Path | None) -> None:
    line = f"{time.strftime('%H:%M:%S')} {message}"
    print(line, file=sys.stderr, flush=True)
    if log_file:
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def progress_bar(total: int, start: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True, mininterval=5)


# ---------------------------------------------------------------- phases

def train_vae(pixels, args, device, log_file):
    import torch

    path = args.work / "vae.pt"
    vae = build_vae().to(device)
    state = torch.load(path, map_location=device) if path.exists() else None
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr)
    start = 0
    if state:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(start):
        torch.randint(0, len(pixels), (args.batch,), generator=gen)
    log(f"vae from step {start} of {args.vae_steps}", log_file)
    bar = progress_bar(args.vae_steps, start, "vae")
    for step in range(start, args.vae_steps):
        idx = torch.randint(0, len(pixels), (args.batch,), generator=gen)
        x = torch.from_numpy(pixels[idx.numpy()]).to(device)
        dist = vae.encode(x).latent_dist
        recon = vae.decode(dist.sample(generator=None)).sample
        loss = (recon - x).abs().mean() + (recon - x).pow(2).mean() + args.kl_weight * dist.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
        if (step + 1) % 50 == 0:
            log(f"vae step {step + 1}/{args.vae_steps} loss {loss.item():.4f}", log_file)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.vae_steps:
            save_atomic({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step + 1}, path)
    bar.close()
    return vae.eval()


@np.errstate(all="ignore")
def encode_latents(vae, pixels, args, device):
    import torch

    path = args.work / "latents.npz"
    if path.exists():
        saved = np.load(path)
        return saved["mean"], saved["std"], float(saved["scale"])
    means, stds = [], []
    with torch.inference_mode():
        for i in range(0, len(pixels), 512):
            dist = vae.encode(torch.from_numpy(pixels[i:i + 512]).to(device)).latent_dist
            means.append(dist.mean.cpu().numpy())
            stds.append(dist.std.cpu().numpy())
    mean, std = np.concatenate(means), np.concatenate(stds)
    scale = float(1.0 / np.sqrt((mean ** 2).mean() + (std ** 2).mean() - mean.mean() ** 2))
    np.savez(path, mean=mean, std=std, scale=scale)
    return mean, std, scale


class EMA:
    def __init__(self, modules, decay: float):
        self.decay = decay
        self.shadow = [copy.deepcopy(m).eval().requires_grad_(False) for m in modules]

    def update(self, modules, step: int) -> None:
        import torch

        decay = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for shadow, module in zip(self.shadow, modules):
                for s, p in zip(shadow.parameters(), module.parameters()):
                    s.lerp_(p.detach(), 1 - decay)


def export(folder: Path, vae, unet, text_encoder, tokenizer, scale: float, meta: dict) -> None:
    """Save the pipeline atomically (a half-written folder never replaces a whole one)."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    vae.register_to_config(scaling_factor=scale)
    scheduler = DPMSolverMultistepScheduler(**train_scheduler_config(), algorithm_type="dpmsolver++",
                                            solver_order=2, timestep_spacing="trailing", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    (tmp / "training.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    card = folder / "README.md"
    if card.exists():
        shutil.copy2(card, tmp / "README.md")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def train_unet(mean, std, labels, tokenizer, args, device, log_file):
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    torch.manual_seed(args.seed)
    text_encoder = build_text_encoder(tokenizer, args.text_hidden).to(device)
    unet = build_unet(args.text_hidden).to(device)
    modules = [unet, text_encoder]
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ema = EMA(modules, args.ema)
    path = args.work / "unet.pt"
    start = 0
    if path.exists():
        state = torch.load(path, map_location=device)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text"])
        ema.shadow[0].load_state_dict(state["ema_unet"])
        ema.shadow[1].load_state_dict(state["ema_text"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    log(f"unet from step {start} of {args.steps}", log_file)
    noise_sched = DDPMScheduler(**train_scheduler_config())
    alphas = noise_sched.alphas_cumprod.to(device)
    snr = alphas / (1 - alphas)
    mean_t = torch.from_numpy(mean).to(device)
    std_t = torch.from_numpy(std).to(device)
    labels_list = labels.tolist()
    row_weights = torch.tensor([args.class_weights.get(label, 1.0) for label in labels_list], dtype=torch.float64)

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / args.warmup)
        horizon = min(args.first_phase, args.steps) if step < args.first_phase else args.steps
        progress = step / max(1, horizon)
        return args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    bar = progress_bar(args.steps, start, "unet")
    started = time.time()
    for step in range(start, args.steps):
        rng = random.Random(args.seed * 1_000_003 + step)
        gen = torch.Generator().manual_seed(args.seed * 7919 + step)
        if args.class_weights and step >= args.first_phase:
            idx = torch.multinomial(row_weights, args.batch, replacement=True, generator=gen)
        else:
            idx = torch.randint(0, len(mean), (args.batch,), generator=gen)
        z = (mean_t[idx] + std_t[idx] * torch.randn(mean_t[idx].shape, generator=gen).to(device)) * args.scale
        texts = [training_caption(labels_list[i], rng) for i in idx.tolist()]
        ids = tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        noise = torch.randn(z.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
        noisy = noise_sched.add_noise(z, noise, t)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        hidden = text_encoder(ids)[0]
        pred = unet(noisy, t, hidden).sample
        weight = torch.clamp(snr[t], max=5.0) / snr[t]
        loss = (weight * F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.update(modules, step)
        bar.update(1)
        if (step + 1) % 50 == 0:
            rate = (step + 1 - start) / (time.time() - started)
            log(f"unet step {step + 1}/{args.steps} loss {loss.item():.4f} lr {lr_at(step):.2e} "
                f"{rate:.2f} step/s eta {(args.steps - step - 1) / rate / 60:.1f} min", log_file)
        last = step + 1 == args.steps
        if (step + 1) % args.checkpoint_every == 0 or last:
            save_atomic({"unet": unet.state_dict(), "text": text_encoder.state_dict(),
                         "ema_unet": ema.shadow[0].state_dict(), "ema_text": ema.shadow[1].state_dict(),
                         "opt": opt.state_dict(), "step": step + 1}, path)
        if args.export_every and ((step + 1) % args.export_every == 0) or last:
            yield step + 1, ema.shadow[0], ema.shadow[1]
    bar.close()


def class_weights(text: str) -> dict[int, float]:
    """``"7:2,5:2"`` → {7: 2.0, 5: 2.0}: how much more often the UNet phase draws a class's rows."""
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        label, _, weight = part.partition(":")
        try:
            weights[int(label)] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--class-weights takes class:weight pairs like 7:2,5:2, not {part!r}")
        if not 0 <= int(label) <= 9 or not 0 < float(weight) <= 10:
            raise argparse.ArgumentTypeError(f"--class-weights: class 0–9, weight in (0, 10], not {part!r}")
    return weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the pipeline folder to write")
    parser.add_argument("--work", type=Path, required=True, help="checkpoints and cached latents (resumable)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SYNTHLAB_FASHION_DIR")
                                                          or "/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--vae-steps", type=int, default=500)
    parser.add_argument("--steps", type=int, default=6400)
    parser.add_argument("--first-phase", type=int, default=2400,
                        help="steps of the first phase: rows drawn uniformly, learning rate on a cosine over "
                             "these steps; after it the cosine runs over --steps and --class-weights apply")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-5)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--text-hidden", type=int, default=64)
    parser.add_argument("--merges", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--class-weights", type=class_weights, default=class_weights("7:2,5:2"),
                        help="after the first phase, draw these classes' rows this much more often (default: "
                             "sneakers and sandals twice, the two footwear classes the first phase mixes up); "
                             "'' for none")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N generator rows (smoke tests)")
    parser.add_argument("--checkpoint-every", type=int, default=200)
    parser.add_argument("--export-every", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    from transformers import CLIPTokenizer

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.work.mkdir(parents=True, exist_ok=True)
    began = time.time()
    images, labels = read_idx(args.data, "train")
    rows = generator_rows(labels)
    if args.limit:
        rows = rows[np.linspace(0, len(rows) - 1, args.limit).astype(int)]
    pixels, row_labels = to_pixels(images[rows]), labels[rows].astype(np.int64)
    log(f"{len(rows)} training rows (rank >= {SAMPLE_ROWS_PER_CLASS} in each class), device {device}, "
        f"threads {torch.get_num_threads()}", args.log)

    token_dir = args.work / "tokenizer"
    if not (token_dir / "vocab.json").exists():
        rng = random.Random(args.seed)
        corpus = [caption(c, rng) for _ in range(3000) for c in range(10)] + NEGATIVES * 50
        write_tokenizer(token_dir, *learn_bpe(corpus, args.merges))
    tokenizer = CLIPTokenizer.from_pretrained(token_dir)

    torch.manual_seed(args.seed)
    vae = train_vae(pixels, args, device, args.log)
    mean, std, args.scale = encode_latents(vae, pixels, args, device)
    log(f"latents {mean.shape}, scaling factor {args.scale:.4f}", args.log)
    meta = {
        "data": "Fashion-MNIST (Zalando, MIT licence), Debian package dataset-fashion-mnist, train split only",
        "rows": f"train rows whose rank within their class is >= {SAMPLE_ROWS_PER_CLASS} (file order)"
                + (f", thinned to {args.limit}" if args.limit else ""),
        "rows_count": int(len(rows)), "rows_per_class": {str(c): int((row_labels == c).sum()) for c in range(10)},
        "sample_rows_per_class": SAMPLE_ROWS_PER_CLASS, "seed": args.seed, "vae_steps": args.vae_steps,
        "steps": args.steps, "first_phase": args.first_phase,
        "class_weights": {str(k): v for k, v in sorted(args.class_weights.items())},
        "batch": args.batch, "lr": args.lr, "device": device,
        "threads": torch.get_num_threads(), "scaling_factor": args.scale, "native_size": NATIVE,
        "command": "python scripts/train_fashion_mini.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    for step, unet, text_encoder in train_unet(mean, std, row_labels, tokenizer, args, device, args.log):
        meta.update({"trained_steps": step, "seconds": round(time.time() - began, 1)})
        export(args.out, copy.deepcopy(vae).cpu(), copy.deepcopy(unet).cpu(), copy.deepcopy(text_encoder).cpu(),
               tokenizer, args.scale, meta)
        log(f"exported {args.out} at step {step}", args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
