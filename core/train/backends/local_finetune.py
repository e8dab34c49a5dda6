"""The local backend's fine-tune mode: the encoder's last blocks unfrozen and trained with a linear head."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from core import config
from core.errors import BackendError
from core.models import encoder_resolution, encoders
from core.models.embedding_cache import View
from core.store.database import Store
from core.train.backends import local_common


def _unfreeze_last_blocks(model, n: int) -> int:
    """Freeze everything, then unfreeze the last ``n`` blocks of the longest layer stack and every
    parameter registered after it (final norm, pooler, projection). Returns the trainable count."""
    from torch import nn

    for p in model.parameters():
        p.requires_grad_(False)
    stacks = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList)]
    if not stacks:
        raise BackendError("fine-tuning: cannot find the encoder's layer blocks")
    stack_name, stack = max(stacks, key=lambda item: len(item[1]))
    for block in list(stack)[max(len(stack) - n, 0):] if n else []:
        for p in block.parameters():
            p.requires_grad_(True)
    seen_stack = False
    for name, p in model.named_parameters():
        inside = name.startswith(stack_name + ".")
        if inside:
            seen_stack = True
        elif seen_stack:
            p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _augment_pil(picture, rng: np.random.Generator):
    from PIL import Image

    w, h = picture.size
    scale = rng.uniform(0.8, 1.0)
    cw, ch = max(int(w * scale), 1), max(int(h * scale), 1)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    picture = picture.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        picture = picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return picture


def train_finetune(store, folder, tags, members, view, params, progress) -> dict:
    import torch

    device = config.device()
    local_common.deterministic(device, params["seed"])
    rng = np.random.default_rng(params["seed"])
    ref = encoder_resolution.resolve_encoder(params["encoder"])
    model = encoders.load_vision_model(ref, device, trainable=True)
    trainable = _unfreeze_last_blocks(model, params["unfreeze"])
    pictures = [encoders.load_image(store, m, view.size, view.fit, view.resample) for m in members]
    y = torch.tensor([tags.index(m["tag"]) for m in members])
    with torch.no_grad():
        model.eval()
        dim = encoders.image_features(model, encoders.pixel_values(ref, pictures[:1], device)).shape[1]
    head = torch.nn.Linear(dim, len(tags)).to(device)
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": params["lr"]},
        {"params": head.parameters(), "lr": params["head_lr"]},
    ], weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    epochs, bs = params["epochs"], params["batch_size"]
    total = epochs * math.ceil(len(members) / bs)
    step = 0
    loss = torch.tensor(0.0)
    for _ in range(epochs):
        model.train()
        encoders.freeze_norm_statistics(model)
        order = rng.permutation(len(members))
        for start in range(0, len(members), bs):
            idx = order[start:start + bs]
            batch = [_augment_pil(pictures[i], rng) if params["augment"] else pictures[i] for i in idx]
            optimizer.zero_grad(set_to_none=True)
            logits = head(encoders.image_features(model, encoders.pixel_values(ref, batch, device)))
            loss = loss_fn(logits, y[idx].to(device))
            loss.backward()
            optimizer.step()
            step += 1
            progress(step, total, f"step {step}/{total} loss {loss.item():.3f}")
    model.eval()
    encoders.save_encoder(ref, model, folder / "encoder")
    local_common.save_linear(folder, head.weight.detach().cpu().double().numpy(), head.bias.detach().cpu().double().numpy())
    return {"kind": "finetune", "encoder": ref.describe(), "trainable_parameters": trainable,
            "final_loss": float(loss.item()), "steps": step}


def finetune_predict(store: Store, folder: Path, images: list[dict], view: View) -> np.ndarray:
    import torch

    device = config.device()
    ref = encoder_resolution.resolve_encoder(str(folder / "encoder"))
    model = local_common.cached_model(folder, lambda: encoders.load_vision_model(ref, device, trainable=True).eval())
    with np.load(folder / "head.npz") as head:
        w, b = head["weights"], head["bias"]
    out = []
    for start in range(0, len(images), 64):
        chunk = [encoders.load_image(store, im, view.size, view.fit, view.resample) for im in images[start:start + 64]]
        with torch.inference_mode():
            feats = encoders.image_features(model, encoders.pixel_values(ref, chunk, device)).float().cpu().double().numpy()
        out.append(local_common.softmax(feats @ w.T + b))
    return np.concatenate(out)
