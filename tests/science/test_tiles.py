"""Known answer: a fine pattern at native resolution reaches a frozen pretrained encoder only through ``tiles``.

Two tags differ *only* by a ±12/255 checkerboard planted on 448 px copies of real clothing photos. The
default probe shows the encoder a 224 px downscale, which averages the 1-px checkerboard away: it cannot
tell the tags apart. ``tiles`` embeds four native 224 px tiles per image and pools them: it can."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.analysis.evaluation import evaluate
from core.data.slicing import SliceSpec, build_slices
from core.train.training import train
from tests.datasets import fashion_available, fashion_images

pytestmark = pytest.mark.skipif(not fashion_available(), reason="dataset-fashion-mnist is not installed (.ci/run)")

SIDE = 448
AMPLITUDE = 12


def _checkered(picture: Image.Image, on: bool) -> Image.Image:
    a = AMPLITUDE + np.asarray(picture, dtype=np.float64) * (255 - 2 * AMPLITUDE) / 255
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    return Image.fromarray(np.rint(a + (AMPLITUDE * np.where((x + y) % 2, -1, 1)[..., None] if on else 0))
                           .astype(np.uint8))


def _interval(result: dict) -> tuple[float, float]:
    correct = np.array([max(p["probabilities"], key=p["probabilities"].get) == p["tag"] for p in result["per_image"]],
                       float)
    means = correct[np.random.default_rng(0).integers(0, len(correct), (4000, len(correct)))].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


@pytest.mark.slow
def test_tiles_see_a_native_checkerboard_the_downscaled_probe_cannot(store):
    photos = fashion_images({"a": 1, "b": 1, "c": 7, "d": 7}, n_train=6, n_test=5, size=SIDE, split="train")
    for tag, on in (("plain", False), ("checkered", True)):
        store.add_tag(tag, tag)
    for source in ("real", "test"):  # each tag gets trousers and sneakers alike: only the pattern differs
        for tag, on, groups in (("plain", False, ("a", "c")), ("checkered", True, ("b", "d"))):
            for group in groups:
                for picture in photos[source][group]:
                    store.add_image(_checkered(picture, on), tag=tag, source=source)
    build_slices(store, SliceSpec(name="native", counts=(12,), size=SIDE, real_fraction=1.0))
    [probe] = train(store, ["native"], params={"encoder": "efficientnet-lite0"})
    [tiles] = train(store, ["native"], params={"encoder": "efficientnet-lite0", "mode": "tiles"})
    results = {r["run"]: r for r in evaluate(store)}
    p, t = results[probe["id"]], results[tiles["id"]]
    assert p["input_px"] == 224 and t["input_px"] == SIDE
    p_lo, p_hi = _interval(p)
    t_lo, t_hi = _interval(t)
    assert t_lo > 0.8, (t["accuracy"], t_lo)
    assert p_lo < 0.5 < p_hi or p["accuracy"] <= 0.7, (p["accuracy"], p_lo, p_hi)  # chance for the downscale
    assert p_hi < t_lo, ((p_lo, p_hi), (t_lo, t_hi))
