"""Known answers for the calibrated pixel probe (:mod:`core.analysis.calibrated_probe`): on cases known to carry no trace
it alarms at most at its nominal rate; a planted trace is still found.

Null cases (nothing planted): two disjoint sets of real Fashion-MNIST photos of one class, every class at two
sizes (20 cases), and a faint checkerboard planted at 128 px that the tool's own resize to 64 px removes (4
cases) — the kind of case where the old probe reported AUC 0.685 [0.554, 0.794]. Measured while writing it:
0 alarms of 24 (the old bootstrap interval excluded 0.5 on 2 of them); pure-noise features: 3 alarms of 300
(1 %, nominal ≤ 2.5 %), p < 0.05 in 3.7 %; the planted checkerboard at full size: AUC 1.0 [0.84, 1.0],
p = 0.005.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.analysis import calibrated_probe, fingerprint
from core.store import imaging
from tests.datasets import fashion_arrays, fashion_available

PER_SIDE = 30


def _photos(label: int, start: int, count: int, size: int) -> list[Image.Image]:
    images, labels = fashion_arrays("t10k")
    picked = images[labels == label][start:start + count]
    return [Image.fromarray(a, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB") for a in picked]


def _features(pictures) -> np.ndarray:
    return np.stack([fingerprint.pixel_features(fingerprint.greyscale_array(p)) for p in pictures])


def _headroom(image: Image.Image) -> Image.Image:
    arr = np.asarray(image, dtype=np.float64)
    return Image.fromarray(np.rint(8 + arr * (239 / 255)).astype(np.uint8))


def _checkerboard(image: Image.Image, amplitude: int = 3) -> Image.Image:
    arr = np.asarray(image, dtype=np.int16)
    sign = np.where(np.indices(arr.shape[:2]).sum(axis=0) % 2 == 0, 1, -1)[..., None]
    return Image.fromarray(np.clip(arr + amplitude * sign, 0, 255).astype(np.uint8))


def _planted(label: int, start: int) -> tuple[list[Image.Image], list[Image.Image]]:
    """(real, synthetic) at 128 px: the synthetic half carries a ±3/255 checkerboard."""
    pictures = [_headroom(p) for p in _photos(label, start, 2 * PER_SIDE, 128)]
    return pictures[:PER_SIDE], [_checkerboard(p) for p in pictures[PER_SIDE:]]


@pytest.mark.skipif(not fashion_available(), reason="needs Debian's dataset-fashion-mnist")
def test_null_cases_alarm_at_most_twice_in_24_and_a_planted_trace_is_found():
    alarms, cases = [], 0
    for size in (64, 96):
        for label in range(10):
            feats = _features(_photos(label, 200 * (size == 96), 2 * PER_SIDE, size))
            out = calibrated_probe.calibrated_probe(feats[:PER_SIDE], feats[PER_SIDE:], seed=label)
            cases += 1
            alarms += [(size, label, out["auc"], out["ci"])] if out["alarm"] else []
            lo, hi = out["null_band"]
            assert lo < 0.5 < hi and out["ci"][0] <= out["auc"] <= out["ci"][1]
    for case, label in enumerate((1, 7, 8, 0)):  # a trace the tool's own resize removes
        real, synthetic = _planted(label, 400)
        feats = _features([imaging.resize(p, 64) for p in real + synthetic])
        out = calibrated_probe.calibrated_probe(feats[PER_SIDE:], feats[:PER_SIDE], seed=100 + case)
        cases += 1
        alarms += [("resized", label, out["auc"], out["ci"])] if out["alarm"] else []
    assert cases == 24 and len(alarms) <= 2, alarms

    real, synthetic = _planted(1, 400)  # the same trace, not removed: found
    feats = _features(real + synthetic)
    out = calibrated_probe.calibrated_probe(feats[PER_SIDE:], feats[:PER_SIDE])
    assert out["alarm"] and out["auc"] > 0.9 and out["ci"][0] > 0.75 and out["p_value"] <= 0.01


def test_false_alarm_rate_on_pure_noise_is_at_most_nominal():
    """300 null cases of Gaussian features (152 dims, as many as the pixel features): alarms ≤ 4 %
    (the interval's one-sided nominal rate is 2.5 %); the p-value is uniform enough that p < 0.05 in ≤ 8 %."""
    rng = np.random.default_rng(0)
    alarms = small_p = 0
    for case in range(300):
        x = rng.normal(size=(2 * PER_SIDE, 152))
        out = calibrated_probe.calibrated_probe(x[:PER_SIDE], x[PER_SIDE:], seed=case, permutations=99)
        alarms += out["alarm"]
        small_p += out["p_value"] < 0.05
    assert alarms / 300 <= 0.04 and small_p / 300 <= 0.08, (alarms, small_p)


def test_a_clear_shift_is_found_and_inputs_are_checked():
    rng = np.random.default_rng(1)
    out = calibrated_probe.calibrated_probe(rng.normal(size=(40, 8)) + 1.0, rng.normal(size=(40, 8)))
    assert out["alarm"] and out["auc"] > 0.9 and out["p_value"] == pytest.approx(1 / 200)
    assert set(out) >= {"auc", "ci", "null_band", "null_median", "p_value", "alarm", "n", "method"}
    with pytest.raises(ValueError, match="at least 2 rows"):
        calibrated_probe.calibrated_probe(np.zeros((1, 4)), np.zeros((10, 4)))
