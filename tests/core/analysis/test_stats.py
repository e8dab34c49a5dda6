"""core.analysis.stats on planted truths: intervals that cover, a compare that is calibrated under the null and
finds a planted difference, Jaccard overlaps of known sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from core.analysis import stats
from core.data import repeats


def test_run_intervals_cover_the_point_estimates_and_shrink_with_more_test_images():
    rng = np.random.default_rng(0)
    tags = ["a", "b", "c"]
    for n, width_max in ((60, 0.3), (600, 0.1)):
        truth = list(rng.choice(tags, n))
        predicted = [t if rng.random() < 0.8 else tags[(tags.index(t) + 1) % 3] for t in truth]
        scores = [[0.8 if p == t else 0.1 for t in tags] for p in predicted]
        out = stats.run_intervals(truth, predicted, scores, tags, seed=1)
        acc = np.mean([p == t for p, t in zip(predicted, truth)])
        f1 = f1_score(truth, predicted, average="macro")
        lo, hi = out["accuracy_ci"]
        assert lo < acc < hi and hi - lo < width_max
        lo, hi = out["macro_f1_ci"]
        assert lo < f1 < hi
        assert out["average_precision_ci"][0] < out["average_precision_ci"][1]
    assert stats.run_intervals(truth, predicted, scores, tags, seed=1) == out  # seeded: reproducible
    assert stats.run_intervals([], [], [], tags)["accuracy_ci"] is None


def test_run_interval_has_95_percent_coverage_over_fresh_test_sets():
    rng = np.random.default_rng(3)
    covered = 0
    for trial in range(200):
        truth = ["a"] * 100
        predicted = ["a" if rng.random() < 0.7 else "b" for _ in truth]
        lo, hi = stats.run_intervals(truth, predicted, None, ["a", "b"], seed=trial, resamples=400)["accuracy_ci"]
        covered += lo <= 0.7 <= hi
    assert 0.88 <= covered / 200 <= 0.99


def _arm(rng, repeats: int, images: int, p_image: np.ndarray, skill_sd: float) -> np.ndarray:
    """0/1 correctness of ``repeats`` models on shared test images: image difficulty plus a per-model skill."""
    skill = rng.normal(0, skill_sd, size=(repeats, 1))
    p = np.clip(p_image[None, :] + skill, 0, 1)
    return (rng.random((repeats, images)) < p).astype(float)


@pytest.mark.parametrize("skill_sd", [0.0, 0.04])
def test_paired_difference_is_calibrated_under_the_null(skill_sd):
    """Two arms from one distribution: 'within noise' in at least ~95 % of fresh experiments, whether
    test images (skill_sd 0) or the repeat draw (skill_sd 0.04) dominate the noise."""
    rng = np.random.default_rng(11)
    false_alarms = 0
    trials = 150
    for trial in range(trials):
        p_image = rng.beta(4, 1.5, size=200)
        a = _arm(rng, 3, 200, p_image, skill_sd)
        b = _arm(rng, 3, 200, p_image, skill_sd)
        false_alarms += stats.paired_difference(a, b, resamples=500, seed=trial)["verdict"] != "within noise"
    assert false_alarms / trials <= 0.08


def test_paired_difference_finds_a_planted_difference_and_its_sign():
    rng = np.random.default_rng(5)
    p_image = rng.beta(4, 1.5, size=200)
    better = _arm(rng, 5, 200, np.clip(p_image + 0.12, 0, 1), 0.02)
    worse = _arm(rng, 5, 200, p_image, 0.02)
    ab = stats.paired_difference(better, worse, seed=0)
    assert ab["verdict"] == "a better" and ab["ci"][0] > 0 and ab["p_value"] < 0.01
    ba = stats.paired_difference(worse, better, seed=0)
    assert ba["verdict"] == "b better" and ba["difference"] == pytest.approx(-ab["difference"])
    same = stats.paired_difference(worse, worse, seed=0)
    assert same["verdict"] == "within noise" and same["difference"] == 0 and same["p_value"] == 1.0
    with pytest.raises(ValueError, match="same"):
        stats.paired_difference(worse, worse[:, :10])


def test_few_repeats_widen_the_interval_like_a_t_interval():
    rng = np.random.default_rng(2)
    p_image = np.full(400, 0.8)
    a3, b3 = _arm(rng, 3, 400, p_image, 0.05), _arm(rng, 3, 400, p_image, 0.05)
    three = stats.paired_difference(a3, b3, seed=0)
    one = stats.paired_difference(a3[:1], b3[:1], seed=0)
    assert three["repeats"] == [3, 3] and one["repeats"] == [1, 1]
    assert "one repeat" in one["note"] and "note" not in three
    # three repeats add their (t-corrected) spread to the test-set part one repeat has alone
    df = stats.welch_df(a3, b3)
    assert 2 <= df <= 4
    assert three["ci"][1] - three["ci"][0] > one["ci"][1] - one["ci"][0]
    assert stats.t_factor(3) == pytest.approx(4.302653 / 1.959964, rel=1e-5)
    assert stats.t_factor(1) == 0.0


def test_combined_interval_adds_repeat_t_interval_and_test_uncertainty():
    values, ses = [0.6, 0.7, 0.8], [0.03, 0.04, 0.05]
    out = stats.combined_interval(values, ses)
    repeat = 4.302653 * 0.1 / math.sqrt(3)
    test = stats.Z95 * math.sqrt((0.03 ** 2 + 0.04 ** 2 + 0.05 ** 2) / 3)
    assert out["mean"] == pytest.approx(0.7)
    assert out["half_width"] == pytest.approx(math.hypot(repeat, test), rel=1e-5)
    single = stats.combined_interval([0.7], [0.04])
    assert single["repeat_half_width"] == 0 and single["half_width"] == pytest.approx(stats.Z95 * 0.04)
    assert stats.standard_error([0.5, 0.5 + 2 * stats.Z95 * 0.1]) == pytest.approx(0.1)


def test_repeat_overlap_is_the_mean_pairwise_jaccard():
    assert repeats.repeat_overlap([{1, 2}, {1, 2}]) == 1.0
    assert repeats.repeat_overlap([{1, 2}, {3, 4}]) == 0.0
    assert repeats.repeat_overlap([{1, 2, 3}, {2, 3, 4}, {1, 2, 3}]) == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert repeats.repeat_overlap([{1}]) is None
    assert repeats.overlap_note(0.3) is None
    assert "understates" in repeats.overlap_note(0.6)
    assert repeats.overlap_note(1.0).startswith("identical repeats")
