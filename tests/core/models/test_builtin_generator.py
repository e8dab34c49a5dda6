"""The shipped generator fashion-mini: it loads offline through from_pretrained and makes what its prompts say.

Known answer: a classifier trained only on real Fashion-MNIST photos of the sample's four tags labels the
shipped model's images of those tags as their prompt's tag (≥ 0.9), and prompts outside the sample give
their class too; random weights of the same architecture do not (the check can fail).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.data import samples
from core.generate.generation import generate
from core.generate.planning import GenerationSpec
from core.models import builtin_generator, encoder_resolution, encoders
from tests.datasets import fashion_available

pytestmark = pytest.mark.skipif(not fashion_available(), reason="dataset-fashion-mnist is not installed")

FOUR = {"jeans": 1, "shoes": 7, "shirts": 6, "other": 8}


def _real_probe(classes: dict[str, int], per_class: int = 40):
    from sklearn.linear_model import LogisticRegression

    pixels, labels, _ = samples.fashion_split("train")
    ref = encoder_resolution.resolve_encoder(None)
    images, y = [], []
    for name, label in classes.items():
        for index in np.flatnonzero(labels == label)[:per_class]:
            images.append(Image.fromarray(pixels[index], mode="L").resize((32, 32), Image.Resampling.BICUBIC)
                          .convert("RGB"))
            y.append(name)
    return ref, LogisticRegression(max_iter=2000).fit(encoders.embed(ref, images), y)


def _generated(store, tag: str, prompt: str, count: int) -> list[Image.Image]:
    store.add_tag(tag, prompt, "")
    result = generate(store, GenerationSpec(tag=tag, count=count, model=builtin_generator.NAME, batch_size=32))
    out = []
    for image_id in result["images"]:
        with Image.open(store.image_file(image_id)) as im:
            out.append(im.convert("RGB"))
    return out


def test_the_shipped_folder_is_whole_and_small():
    assert builtin_generator.available()
    size = sum(p.stat().st_size for p in builtin_generator.FOLDER.rglob("*") if p.is_file())
    assert size <= 40 * 2 ** 20
    card = (builtin_generator.FOLDER / "README.md").read_text(encoding="utf-8")
    for needle in ("Fashion-MNIST", "MIT", "rows", "train_fashion_mini.py", "conditioning", "memorisation"):
        assert needle in card
    meta = json.loads((builtin_generator.FOLDER / "training.json").read_text())
    assert meta["sample_rows_per_class"] == samples.SAMPLE_ROWS_PER_CLASS


def test_generate_from_the_cli_offline_records_model_and_revision(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-cache"))
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "no-cache"), "OMP_NUM_THREADS": "1"}
    import os

    run = lambda *a: subprocess.run([sys.executable, "-m", "core", "--home", str(home), *a, "--json"],
                                    capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    assert run("tags", "add", "jeans", "--prompt", "a product photo of blue jeans").returncode == 0
    done = run("generate", "--tag", "jeans", "--count", "6", "--model", "fashion-mini")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["generated"] == 6 and len(out["images"]) == 6
    listed = json.loads(run("images", "list", "--tag", "jeans").stdout.strip().splitlines()[-1])["images"]
    assert {i["width"] for i in listed} == {builtin_generator.NATIVE_SIZE}
    provenance = listed[0]["provenance"]
    assert provenance["model_id"] == "fashion-mini"
    assert provenance["model_revision"] == builtin_generator.revision()


def test_a_real_trained_classifier_recognises_the_four_sample_tags(store):
    ref, probe = _real_probe(FOUR)
    prompts = {t.name: t.prompt for t in samples.sample_tags()}
    hits = total = 0
    for tag in FOUR:
        predicted = probe.predict(encoders.embed(ref, _generated(store, tag, prompts[tag], 25)))
        hits += int((predicted == tag).sum())
        total += len(predicted)
    assert hits / total >= 0.9, hits / total


def test_prompts_outside_the_sample_give_their_class(store):
    classes = {"dress": 3, "sandal": 5, "boot": 9, "pullover": 2}
    ref, probe = _real_probe(classes)
    prompts = {"dress": "a black evening dress", "sandal": "strappy summer sandals",
               "boot": "a pair of brown ankle boots", "pullover": "a grey knit sweater"}
    hits = total = 0
    for tag, prompt in prompts.items():
        predicted = probe.predict(encoders.embed(ref, _generated(store, tag, prompt, 16)))
        hits += int((predicted == tag).sum())
        total += len(predicted)
    assert hits / total >= 0.8, hits / total
