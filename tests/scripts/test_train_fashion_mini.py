"""The script that made the shipped generator: a few steps on a small subset, resumed, loaded back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data import samples
from tests.datasets import fashion_available

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_fashion_mini.py"
pytestmark = pytest.mark.skipif(not fashion_available(), reason="dataset-fashion-mnist is not installed")


def _train(out: Path, work: Path, steps: int, *more: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--work", str(work), "--vae-steps", "2",
                           "--steps", str(steps), "--batch", "8", "--limit", "64", "--merges", "50",
                           "--checkpoint-every", "1", "--threads", "1", *more],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


def test_a_few_steps_make_a_loadable_pipeline_and_a_second_run_resumes(tmp_path):
    out, work = tmp_path / "model", tmp_path / "work"
    first = _train(out, work, 2)
    assert first.returncode == 0, first.stderr[-2000:]
    meta = json.loads((out / "training.json").read_text())
    assert meta["trained_steps"] == 2 and meta["rows_count"] == 64
    second = _train(out, work, 3, "--first-phase", "2")  # step 3 is in the second phase: footwear weighted
    assert second.returncode == 0, second.stderr[-2000:]
    assert "vae from step 2 of 2" in second.stderr and "unet from step 2 of 3" in second.stderr
    meta = json.loads((out / "training.json").read_text())
    assert meta["trained_steps"] == 3 and meta["first_phase"] == 2
    assert meta["class_weights"] == {"5": 2.0, "7": 2.0}

    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(out)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    image = pipe("a photo of jeans", num_inference_steps=2, guidance_scale=1.0).images[0]
    assert image.size == (32, 32)


def test_bad_class_weights_are_refused_before_any_work(tmp_path):
    bad = _train(tmp_path / "model", tmp_path / "work", 1, "--class-weights", "7:2,shoes:3")
    assert bad.returncode == 2
    assert "--class-weights takes class:weight pairs like 7:2,5:2, not 'shoes:3'" in bad.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "model").exists()


def test_the_generator_rows_never_meet_the_samples_rows():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import train_fashion_mini as script
    finally:
        sys.path.remove(str(SCRIPT.parent))
    _, labels, _ = samples.fashion_split("train")
    generator = set(script.generator_rows(labels).tolist())
    assert script.SAMPLE_ROWS_PER_CLASS == samples.SAMPLE_ROWS_PER_CLASS
    sample_rows = set()
    for tag in samples.sample_tags(more_shoes=True, more_shirts=True):
        sample_rows |= set(samples.pick_rows(labels, tag.labels, samples.MAX_PER_TAG["train"]))
    assert sample_rows and generator and not generator & sample_rows
    assert len(generator) == 10 * (6000 - samples.SAMPLE_ROWS_PER_CLASS)
    counts = np.bincount(labels[sorted(generator)], minlength=10)
    assert (counts == 6000 - samples.SAMPLE_ROWS_PER_CLASS).all()
