"""The local backend through the Trainer protocol: probe, cnn-small, zero-shot and fine-tune on real digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInput, ModelNotFound
from core.models import embedding_cache, encoder_resolution
from core.models.embedding_cache import View
from core.train.backends.base import Trainer
from core.train.backends.registry import get_trainer
from core.train.training import slice_for_run


def _slice(store, count: int) -> dict:
    row = store.query_one("SELECT id FROM slices WHERE name = 'digits' AND count_per_tag = ?", (count,))
    return slice_for_run(store, {"slice": row["id"], "params": {}, "slice_name": "digits"})


def _run(out: dict, slice_: dict) -> dict:
    return {"id": 1, "backend": "local", "artifact": out["artifact"], "metrics": out["metrics"],
            "slice": slice_["id"], "size": slice_["size"]}


def _accuracy(probs: list[dict], images: list[dict]) -> float:
    return float(np.mean([max(p, key=p.get) == im["tag"] for p, im in zip(probs, images)]))


def test_registry_gives_protocol_trainers():
    local = get_trainer("local")
    assert isinstance(local, Trainer) and local.name == "local" and get_trainer("local") is local
    with pytest.raises(InvalidInput, match="unknown backend 'nope'"):
        get_trainer("nope")


def test_params_are_normalised_and_checked(store, tiny_clip, tmp_path):
    local = get_trainer("local")
    cnn = local.validate(store, {"encoder": "cnn-small", "mode": "probe", "seed": 3})
    assert cnn["mode"] == "scratch" and cnn["seed"] == 3 and cnn["epochs"] == 20 and cnn["image_size"] == 32
    probe = local.validate(store, {"encoder": tiny_clip, "epochs": 9})
    assert probe == {"encoder": tiny_clip, "mode": "probe", "C": 1.0, "seed": 0}
    assert local.validate(store, probe) == probe
    with pytest.raises(InvalidInput, match="unknown parameter 'lr_typo'"):
        local.validate(store, {"encoder": "cnn-small", "lr_typo": 1})
    with pytest.raises(InvalidInput, match="epochs must be a whole number"):
        local.validate(store, {"encoder": "cnn-small", "epochs": 2.5})
    with pytest.raises(InvalidInput, match="zero-shot needs a full CLIP model"):
        local.validate(store, {"encoder": "cnn-small", "mode": "zeroshot"})
    with pytest.raises(ModelNotFound, match="does not exist"):
        local.validate(store, {"encoder": str(tmp_path / "missing")})


def test_probe_head_gives_sklearn_probabilities_over_every_tag(digits, tiny_clip):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    local = get_trainer("local")
    s = _slice(digits, 20)
    out = local.train(digits, s, {"encoder": tiny_clip}, None)
    assert out["metrics"]["tags"] == ["one", "three", "two", "zero"]
    assert out["metrics"]["embedding_cache"] == {"hits": 0, "misses": 80}
    test = digits.list_images(source="test")
    probs = local.predict(digits, _run(out, s), test)
    assert all(set(p) == {"one", "three", "two", "zero"} and abs(sum(p.values()) - 1) < 1e-9 for p in probs)

    ref = encoder_resolution.resolve_encoder(tiny_clip)
    norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    x = norm(embedding_cache.embed_images(digits, ref, s["members"], View(32)).astype(np.float64))
    scaler = StandardScaler().fit(x)
    reference = LogisticRegression(C=1.0, solver="newton-cg", max_iter=1000).fit(
        scaler.transform(x), [m["tag"] for m in s["members"]])
    expected = reference.predict_proba(scaler.transform(norm(
        embedding_cache.embed_images(digits, ref, test, View(32)).astype(np.float64))))
    got = np.array([[p[t] for t in reference.classes_] for p in probs])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert _accuracy(probs, test) > 0.4  # chance is 0.25: random CLIP features still separate digits


def test_two_tag_probe_is_a_proper_two_way_distribution(digits, tiny_clip):
    local = get_trainer("local")
    s = _slice(digits, 20)
    s["members"] = [m for m in s["members"] if m["tag"] in ("zero", "one")]
    s["tags"] = ["one", "zero"]
    out = local.train(digits, s, {"encoder": tiny_clip}, None)
    test = [im for im in digits.list_images(source="test") if im["tag"] in ("zero", "one")]
    probs = local.predict(digits, _run(out, s), test)
    assert all(set(p) == {"one", "zero"} and abs(sum(p.values()) - 1) < 1e-9 for p in probs)
    assert _accuracy(probs, test) >= 0.8


def test_cnn_small_is_deterministic_for_a_seed(digits):
    local = get_trainer("local")
    s = _slice(digits, 5)
    test = digits.list_images(source="test")[::4]
    params = {"encoder": "cnn-small", "seed": 1, "epochs": 4}
    first = local.predict(digits, _run(local.train(digits, s, params, None), s), test)
    out = local.train(digits, s, params, None)
    second = local.predict(digits, _run(out, s), test)
    other = local.predict(digits, _run(local.train(digits, s, {**params, "seed": 2}, None), s), test)
    assert first == second and first != other
    assert all(set(p) == {"one", "three", "two", "zero"} and abs(sum(p.values()) - 1) < 1e-9 for p in first)
    assert (Path(out["artifact"]) / "model.safetensors").is_file()
    assert json.loads((Path(out["artifact"]) / "meta.json").read_text())["view"]["size"] == 32


def test_progress_reports_and_cancellation_propagate(digits):
    from core.errors import JobCancelled

    seen = []

    def progress(done, total, message):
        seen.append((done, total))
        if done == 2:
            raise JobCancelled("stop")

    with pytest.raises(JobCancelled):
        get_trainer("local").train(digits, _slice(digits, 5), {"encoder": "cnn-small", "epochs": 5}, progress)
    assert seen == [(1, 5), (2, 5)]
    assert not [p for p in (digits.root / "models").iterdir() if not p.name.startswith(".")]
    assert not list((digits.root / "models").glob(".tmp-*"))


def test_zeroshot_scores_text_prompts_without_training(digits, tiny_clip):
    local = get_trainer("local")
    pseudo = {"id": None, "hash": None, "tags": ["one", "zero"], "members": [], "spec": {}}
    out = local.train(digits, pseudo, {"encoder": tiny_clip, "mode": "zeroshot", "size": 32}, None)
    assert out["metrics"]["prompts"] == ["a photo of one", "a photo of zero"] and out["metrics"]["n_train"] == 0
    test = digits.list_images(source="test")[:8]
    probs = local.predict(digits, {"id": 2, "artifact": out["artifact"]}, test)
    assert all(set(p) == {"one", "zero"} and abs(sum(p.values()) - 1) < 1e-9 for p in probs)


def test_finetune_trains_the_last_blocks_only(digits, tiny_clip):
    from safetensors.torch import load_file

    local = get_trainer("local")
    s = _slice(digits, 5)
    out = local.train(digits, s, {"encoder": tiny_clip, "mode": "finetune", "epochs": 1, "unfreeze": 1,
                                  "lr": 1e-3}, None)
    tuned = load_file(str(Path(out["artifact"]) / "encoder" / "model.safetensors"))
    original = load_file(str(Path(tiny_clip) / "model.safetensors"))
    first, last = "vision_model.encoder.layers.0.mlp.fc1.weight", "vision_model.encoder.layers.1.mlp.fc1.weight"
    assert (tuned[first] == original[first]).all()
    assert not (tuned[last] == original[last]).all()
    probs = local.predict(digits, _run(out, s), digits.list_images(source="test")[:6])
    assert all(abs(sum(p.values()) - 1) < 1e-9 and len(p) == 4 for p in probs)
