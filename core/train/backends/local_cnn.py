"""The local backend's cnn-small mode: a small CNN trained from scratch, at the slice's own size when asked."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from core import config
from core.models import encoders
from core.models.embedding_cache import View
from core.store.database import Store
from core.train.backends import local_common


def _cnn_input_size(view: View, params: dict, native: int | None = None) -> int:
    """The side cnn-small trains at: ``image_size`` px at most (default 32), or with ``image_size=native``
    the slice's own size (its largest shorter side for original-size slices), capped at 1024."""
    if params["image_size"] == local_common.NATIVE:
        return int(min(view.size or native or local_common.MAX_NATIVE_PX, local_common.MAX_NATIVE_PX))
    return min(view.size or params["image_size"], params["image_size"])


def _cnn_pixels(store: Store, images: list[dict], view: View, px: int):
    """The images as a uint8 ``(n, 3, px, px)`` tensor (a quarter of float32: native sizes fit in memory)."""
    import torch

    from core.store import imaging

    arrays = []
    for im in images:
        picture = encoders.load_image(store, im, view.size, view.fit, view.resample)
        if picture.size != (px, px):
            picture = imaging.resize(picture, px, "crop", "box" if picture.width > px else "bicubic")
        arrays.append(np.asarray(picture.convert("RGB"), dtype=np.uint8))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _cnn_scale(batch):
    return (batch.float() / 255.0 - 0.5) / 0.25


def _cnn_tensor(store: Store, images: list[dict], view: View, px: int):
    return _cnn_scale(_cnn_pixels(store, images, view, px))


def _memory_budget(device: str) -> int:
    """Bytes a batch's activations may take: half the free GPU memory, else 1 GiB (``SYNTHLAB_CNN_MEMORY_MB``)."""
    forced = config.setting("SYNTHLAB_CNN_MEMORY_MB")
    if forced:
        return int(float(forced) * 2**20)
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free * 0.5)
    return 2**30


def cnn_batch_size(px: int, width: int, wanted: int, device: str, *, training: bool = True) -> int:
    """The largest batch up to ``wanted`` whose activations fit the memory budget at ``px`` px: the
    stored outputs of each conv, norm and activation (×2 for gradients when training), in float32."""
    per_sample = 3 * px * px  # the input
    side, channels = px, [width, 2 * width, 4 * width, 4 * width]
    for i, ch in enumerate(channels):
        side = math.ceil(side / 2) if i < 3 else side
        per_sample += 3 * ch * side * side
    per_sample *= 4 * (2 if training else 1)
    return int(max(1, min(wanted, _memory_budget(device) // max(per_sample, 1))))


def _small_cnn(n_classes: int, width: int):
    from torch import nn

    def block(cin: int, cout: int, down: bool) -> list:
        return [nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    w = width
    return nn.Sequential(
        *block(3, w, True), *block(w, 2 * w, True), *block(2 * w, 4 * w, True), *block(4 * w, 4 * w, False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * w, n_classes),
    )


def _augment(batch, generator, hflip: bool):
    """Light augmentation on a batch: a random shift of up to 1/8 of the side, a flip, a little contrast."""
    import torch

    n, _, h, w = batch.shape
    pad = max(h // 8, 1)
    padded = torch.nn.functional.pad(batch, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if hflip:
        flip = torch.rand(n, generator=generator) < 0.5
        out[flip] = out[flip].flip(-1)
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=generator) - 0.5) * 0.2
    return out * gain


def train_cnn(store, folder, tags, members, view, params, progress) -> dict:
    import torch
    from safetensors.torch import save_file

    device = config.device()
    local_common.deterministic(device, params["seed"])
    generator = torch.Generator().manual_seed(params["seed"])
    px = _cnn_input_size(view, params, local_common.native_px(store, members, view))
    x = _cnn_pixels(store, members, view, px)
    y = torch.tensor([tags.index(m["tag"]) for m in members])
    model = _small_cnn(len(tags), params["width"]).to(device)
    epochs = params["epochs"]
    bs = cnn_batch_size(px, params["width"], params["batch_size"], device)
    steps = epochs * math.ceil(len(members) / bs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=params["lr"], total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    loss = torch.tensor(0.0)
    for epoch in range(epochs):
        order = torch.randperm(len(members), generator=generator)
        for start in range(0, len(members), bs):
            idx = order[start:start + bs]
            xb = _cnn_scale(x[idx])
            if params["augment"]:
                xb = _augment(xb, generator, params["hflip"])
            if len(idx) == 1:  # batch norm needs two samples in training mode
                xb = torch.cat([xb, xb])
                idx = torch.cat([idx, idx])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb.to(device)), y[idx].to(device))
            loss.backward()
            optimizer.step()
            schedule.step()
        progress(epoch + 1, epochs, f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f}")
    model.eval()
    eval_bs = cnn_batch_size(px, params["width"], 256, device, training=False)
    with torch.inference_mode():
        predicted = torch.cat([model(_cnn_scale(x[i:i + eval_bs]).to(device)).argmax(1).cpu()
                               for i in range(0, len(members), eval_bs)])
    train_acc = float((predicted == y).float().mean())
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return {"kind": "cnn", "encoder": None, "input_px": px, "batch_size_used": bs, "train_accuracy": train_acc,
            "final_loss": float(loss.item())}


def cnn_predict(store: Store, folder: Path, meta: dict, images: list[dict], view: View) -> np.ndarray:
    import torch
    from safetensors.torch import load_file

    params = meta["params"]
    device = config.device()

    def build():
        model = _small_cnn(len(meta["tags"]), params["width"])
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.to(device).eval()

    model = local_common.cached_model(folder, build)
    px = int(meta.get("input_px") or _cnn_input_size(view, params))
    chunk = cnn_batch_size(px, params["width"], 256, device, training=False)
    out = []
    for start in range(0, len(images), chunk):
        x = _cnn_tensor(store, images[start:start + chunk], view, px)
        with torch.inference_mode():
            out.append(local_common.softmax(model(x.to(device)).float().cpu().double().numpy()))
    return np.concatenate(out)
