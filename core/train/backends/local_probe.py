"""The local backend's linear-probe and zero-shot modes: a logistic-regression head on cached embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.models import embedding_cache, encoder_resolution, encoders
from core.train.backends import local_common


def linear_predict(folder: Path, x: np.ndarray) -> np.ndarray:
    with np.load(folder / "head.npz") as head:
        return local_common.softmax(local_common.normalize(x.astype(np.float64)) @ head["weights"].T + head["bias"])


def train_probe(store, folder, tags, members, view, params, progress) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    ref = encoder_resolution.resolve_encoder(params["encoder"])
    stats = embedding_cache.CacheStats()
    vectors = embedding_cache.embed_images(store, ref, members, view, progress, stats=stats)
    y = np.array([tags.index(m["tag"]) for m in members])
    # all of the head's arithmetic on one BLAS thread: a small fit's threads only fight each other (up to
    # 10× slower), and BLAS threads woken by the scaling outside the limit spin beside the fit
    with local_common.one_thread():
        x = local_common.normalize(vectors.astype(np.float64))
        scaler = StandardScaler().fit(x)
        head = LogisticRegression(C=params["C"], solver="newton-cg", max_iter=1000).fit(scaler.transform(x), y)
        coef = head.coef_ / scaler.scale_
        bias = head.intercept_ - coef @ scaler.mean_
        if coef.shape[0] == 1:  # binary: sklearn keeps one row, p(class 1) = sigmoid(z) = softmax([0, z])
            coef, bias = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], bias])
        full_w = np.zeros((len(tags), coef.shape[1]))
        full_b = np.full(len(tags), -1e9)
        for row, cls in enumerate(head.classes_):
            full_w[cls], full_b[cls] = coef[row], bias[row]
        train_acc = float((local_common.softmax(x @ full_w.T + full_b).argmax(1) == y).mean())
    local_common.save_linear(folder, full_w, full_b)
    progress(1, 1, "head fitted")
    out = {"kind": "linear", "encoder": ref.describe(), "embedding_cache": stats.as_dict(), "train_accuracy": train_acc}
    if view.tiles:  # the encoder saw the images at their own resolution, tile by tile
        native = local_common.native_px(store, members, view)
        out.update({"input_px": native, "tile_px": ref.input_px,
                    "tiles_per_image": len(encoders.tile_boxes(native, native, ref.input_px)) if native else None})
    return out


def train_zeroshot(store, folder, tags, members, view, params, progress) -> dict:
    ref = encoder_resolution.resolve_encoder(params["encoder"])
    texts = [params["prompt"].format(tag=t) for t in tags]
    emb, scale = encoders.text_features(ref, texts)
    local_common.save_linear(folder, scale * local_common.normalize(emb.astype(np.float64)), np.zeros(len(tags)))
    progress(1, 1, "text prompts embedded")
    return {"kind": "linear", "encoder": ref.describe(), "prompts": texts}
