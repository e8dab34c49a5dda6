"""Known answer: a faint periodic pattern planted on 512 px "synthetic" photos is found by the pixel
probe at 512 px and gone after downscaling to 64 px; with nothing planted, nothing is found."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.analysis import fingerprint
from tests.datasets import fashion_available, fashion_images

PX = 512
PER_SOURCE = 30
AMPLITUDE = 3  # of 255: invisible to the eye

pytestmark = pytest.mark.skipif(not fashion_available(), reason="needs Debian's dataset-fashion-mnist")


def checkerboard(image: Image.Image, amplitude: int = AMPLITUDE) -> Image.Image:
    """The photo plus ``±amplitude/255`` alternating per pixel (a generator's upsampling trace)."""
    arr = np.asarray(image, dtype=np.int16)
    sign = np.where(np.indices(arr.shape[:2]).sum(axis=0) % 2 == 0, 1, -1)[..., None]
    return Image.fromarray(np.clip(arr + amplitude * sign, 0, 255).astype(np.uint8))


def headroom(image: Image.Image) -> Image.Image:
    """Levels 0–255 mapped into 8–247 (every image, both sources): the pattern never clips, so it adds no
    brightness that would survive downscaling — only the pattern differs."""
    arr = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.rint(8 + arr * (239 / 255)).astype(np.uint8))


def build(store) -> None:
    """Tag ``jeans``: 30 real trouser photos and 30 other trouser photos as synthetic, carrying the pattern;
    tag ``shoes`` (the null case): 30 + 30 sneaker photos, nothing planted. All 512 px, each photo once;
    the synthetic ones come in as a user brings another tool's images: ``import --source synthetic``."""
    photos = fashion_images({"jeans": 1, "shoes": 7}, n_train=2 * PER_SOURCE, n_test=0, size=PX)["real"]
    for tag, planted in (("jeans", True), ("shoes", False)):
        store.add_tag(tag)
        pictures = [headroom(p) for p in photos[tag]]
        for photo in pictures[:PER_SOURCE]:
            store.add_image(photo, tag=tag, source="real")
        folder = store.root.parent / "made-elsewhere" / tag  # images from another generator, imported
        folder.mkdir(parents=True)
        for i, photo in enumerate(pictures[PER_SOURCE:]):
            (checkerboard(photo) if planted else photo).save(folder / f"{tag}-{i:03d}.png")
        proc = subprocess.run([sys.executable, "-m", "core", "--home", str(store.root), "import", "--tag", tag,
                               "--source", "synthetic", "--generator", "elsewhere", str(folder), "--json"],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["imported"] == PER_SOURCE


def diagnose_cli(home, encoder: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "core", "--home", str(home), "diagnose", "--sizes", "512,64",
                           "--encoder", encoder, "--json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_planted_pattern_is_found_at_full_size_and_not_after_downscaling(store, tiny_clip):
    build(store)
    out = diagnose_cli(store.root, tiny_clip)
    jeans = out["tags"]["jeans"]
    assert jeans["pixel_auc"]["512"] >= 0.9 and jeans["pixel_auc_ci"]["512"][0] > 0.75
    lo, hi = jeans["pixel_auc_ci"]["64"]
    assert lo <= 0.5 <= hi or jeans["pixel_auc"]["64"] <= 0.7
    assert set(jeans["auc_ci"]) == {"512", "64"} and all(len(v) == 2 for v in jeans["auc_ci"].values())
    for size in ("512", "64"):  # nothing planted, nothing found
        lo, hi = out["tags"]["shoes"]["pixel_auc_ci"][size]
        assert lo <= 0.5 <= hi or out["tags"]["shoes"]["pixel_auc"][size] <= 0.7
    # the spectra see it too: the radial profile's corner ring, and the 2-D ratio's corners
    spectrum = out["spectrum"]["512"]
    corner = int(round(np.hypot(PX / 2, PX / 2)))  # the ring of the checkerboard's frequency (√2·Nyquist)
    assert len(spectrum["frequency"]) > corner and spectrum["synthetic"][corner] > 10 * spectrum["real"][corner]
    ratio = np.asarray(spectrum["log_ratio_2d"])
    assert ratio[0, 0] > 1 and abs(np.median(ratio)) < 0.3  # a bright corner on an even background
    assert np.asarray(out["spectrum"]["64"]["log_ratio_2d"])[0, 0] < 0.5


def test_the_probe_interval_holds_chance_for_noise_and_excludes_it_for_a_clear_shift():
    rng = np.random.default_rng(0)
    same = fingerprint.probe(rng.normal(size=(60, 8)), rng.normal(size=(60, 8)))
    assert same["ci"][0] <= 0.5 <= same["ci"][1]
    apart = fingerprint.probe(rng.normal(size=(60, 8)) + 1.0, rng.normal(size=(60, 8)))
    assert apart["auc"] > 0.9 and apart["ci"][0] > 0.8
    assert fingerprint.auc(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.1, 0.8])) == pytest.approx(0.875)
