"""Diagnostics on constructed cases: the metrics behave as their definitions say, on arrays and on a store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from core.analysis import diagnostic_metrics
from core.analysis import diagnostics as dg
from core.errors import InvalidInput, ModelNotFound, NotFound, UnknownTag, UserError
from core.views import diagnostic_views

# -- pure metrics on constructed arrays ------------------------------------------------------------


def test_identical_embeddings_have_zero_diversity_and_orthogonal_ones_full():
    assert dg.mean_pairwise_cosine_distance(np.tile([[1.0, 2.0, 3.0]], (5, 1))) == pytest.approx(0.0, abs=1e-12)
    assert dg.mean_pairwise_cosine_distance(np.eye(4)) == pytest.approx(1.0)
    # scale does not matter, direction does
    assert dg.mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [5.0, 0.0]])) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        dg.mean_pairwise_cosine_distance(np.ones((1, 3)))


def test_distinct_prompts_counts_different_non_empty_prompts():
    assert diagnostic_metrics.distinct_prompts(["blue jeans", "black jeans", "blue jeans ", None, ""]) == 2


def noise_images(n: int, seed: int, px: int = 32) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (px, px, 3), dtype=np.uint8)) for _ in range(n)]


def near_identical_images(n: int, px: int = 32) -> list[Image.Image]:
    """Visually identical images with different bytes (the store keeps exact copies only once): a 4×4
    grid of colour blocks, nothing like pixel noise."""
    grid = np.random.default_rng(7).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(grid).resize((px, px), Image.Resampling.NEAREST))
    out = []
    for i in range(n):
        arr = base.copy()
        arr[0, 0, 0] = i
        out.append(Image.fromarray(arr))
    return out


def test_identical_images_make_one_duplicate_cluster_and_noise_none():
    same = near_identical_images(4)
    other = noise_images(3, seed=1)
    ids = ["a", "b", "c", "d", "x", "y", "z"]
    bits = np.vstack([diagnostic_metrics.perceptual_hash_bits(im) for im in same + other])
    assert bits.shape == (7, 64)
    assert diagnostic_metrics.duplicate_clusters(ids, bits) == [["a", "b", "c", "d"]]
    assert diagnostic_metrics.duplicate_clusters(ids[4:], bits[4:]) == []


def test_duplicate_clusters_are_transitive_components():
    bits = np.zeros((4, 64), dtype=bool)
    bits[1, :3] = True       # 3 bits from 0
    bits[2, :6] = True       # 3 bits from 1, 6 from 0
    bits[3, 20:60] = True    # far from all
    assert diagnostic_metrics.duplicate_clusters(["p", "q", "r", "s"], bits, threshold=3) == [["p", "q", "r"]]
    assert diagnostic_metrics.duplicate_clusters(["p", "q", "r", "s"], bits, threshold=2) == []


def test_frechet_matches_the_closed_form_for_one_dimension():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(4000, 1))
    b = rng.normal(3.0, 2.0, size=(4000, 1))
    # (μa−μb)² + σa² + σb² − 2σaσb = 9 + 1 + 4 − 4
    assert diagnostic_metrics.frechet_distance(a, b) == pytest.approx(10.0, rel=0.05)
    assert diagnostic_metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_clearly_different_sets_separate_and_two_halves_of_one_set_do_not():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 16))
    synthetic = rng.normal(size=(60, 16)) + 1.5
    assert diagnostic_metrics.probe_auc(synthetic, real) > 0.95
    gap, floor = diagnostic_metrics.matched_frechet(synthetic, real)
    assert gap > 5 * floor > 0

    one_set = rng.normal(size=(300, 16))
    first, second = one_set[:150], one_set[150:]
    assert abs(diagnostic_metrics.probe_auc(first, second) - 0.5) < 0.15
    gap, floor = diagnostic_metrics.matched_frechet(first, second)
    assert gap < 2 * floor  # within the floor's own noise (the different sets above: many times it)


def test_the_floor_is_measured_at_the_sizes_of_the_gap():
    """Many synthetic images, few real ones, one distribution: the gap sits at its floor, not below it
    (the estimator grows as samples shrink, so unmatched sizes would put the "floor" above the gap)."""
    rng = np.random.default_rng(3)
    synthetic, real = rng.normal(size=(300, 64)), rng.normal(size=(40, 64))
    gap, floor = diagnostic_metrics.matched_frechet(synthetic, real)
    assert 0.8 < gap / floor < 1.25
    assert diagnostic_metrics.frechet_distance(synthetic, real) < 0.8 * floor  # what an unmatched comparison would report
    with pytest.raises(ValueError):
        diagnostic_metrics.matched_frechet(synthetic, real[:3])


def test_frechet_is_finite_with_fewer_samples_than_dimensions():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 512)), rng.normal(size=(6, 512)) + 0.5
    d = diagnostic_metrics.frechet_distance(a, b)
    assert np.isfinite(d) and d > 0
    with pytest.raises(ValueError):
        diagnostic_metrics.frechet_distance(a[:1], b)


def test_radial_spectrum_reaches_the_corners_where_a_checkerboard_lives():
    n = 32
    checker = (np.indices((n, n)).sum(axis=0) % 2).astype(float)
    spectrum = dg.radial_power_spectrum(checker)
    corner = int(round(np.hypot(n / 2, n / 2)))
    assert int(np.argmax(spectrum)) == corner > n // 2
    assert spectrum[: n // 2 + 1].max() < 1e-9 * spectrum[corner]


def test_radial_spectrum_puts_a_sinusoid_at_its_frequency_and_a_flat_image_at_zero():
    n, k = 32, 5
    x = np.arange(n)
    wave = np.tile(np.sin(2 * np.pi * k * x / n), (n, 1))
    spectrum = dg.radial_power_spectrum(wave)
    assert spectrum.shape == (int(np.ceil(np.hypot(n / 2, n / 2))) + 1,)  # out to the corner radius
    assert int(np.argmax(spectrum)) == k
    assert np.allclose(dg.radial_power_spectrum(np.full((n, n), 0.7)), 0.0)
    smooth = np.tile(np.sin(2 * np.pi * x / n), (n, 1))
    noisy = np.random.default_rng(0).random((n, n))
    assert dg.radial_power_spectrum(noisy)[-4:].mean() > 100 * dg.radial_power_spectrum(smooth)[-4:].mean()


# -- on a store, with the tiny CLIP ------------------------------------------------------------


@pytest.fixture
def lab(store):
    """jeans: 6 near-identical synthetic images (3 prompts) and 6 noise photos; shoes: synthetic only."""
    store.add_tag("jeans")
    store.add_tag("shoes")
    for i, im in enumerate(near_identical_images(6, px=40)):
        store.add_image(im, tag="jeans", source="synthetic", prompt=f"jeans {i % 3}", seed=i)
    for im in noise_images(6, seed=2, px=40):
        store.add_image(im, tag="jeans", source="real")
    for i, im in enumerate(noise_images(4, seed=3, px=40)):
        store.add_image(im, tag="shoes", source="synthetic", prompt="shoes", seed=i)
    store.add_image(noise_images(1, seed=4, px=40)[0], tag="jeans", source="test")
    return store


def test_diagnose_reports_every_metric_per_tag(lab, tiny_clip):
    result = dg.diagnose(lab, sizes=(32, 64), encoder=tiny_clip)
    assert result["sizes"] == [32, 64] and result["embedding_size"] == 32
    jeans = result["tags"]["jeans"]
    assert jeans["counts"] == {"synthetic": 6, "real": 6}
    assert jeans["diversity"]["synthetic"] < 1e-3 < jeans["diversity"]["real"]
    assert jeans["distinct_prompts"] == 3
    synthetic_ids = {im["id"] for im in lab.list_images("jeans", "synthetic")}
    assert len(jeans["duplicate_clusters"]) == 1 and set(jeans["duplicate_clusters"][0]) == synthetic_ids
    assert jeans["frechet"]["synthetic_vs_real"] > jeans["frechet"]["real_vs_real_floor"] >= 0
    assert set(jeans["auc"]) == {"32", "64"} and all(v > 0.9 for v in jeans["auc"].values())
    assert jeans["notes"] == {}
    assert set(result["spectrum"]) == {"32", "64"}
    assert len(result["spectrum"]["64"]["real"]) == len(result["spectrum"]["64"]["frequency"]) == 47  # to the corner
    assert result["spectrum"]["64"]["nyquist_index"] == 32 and result["spectrum"]["64"]["frequency"][32] == 0.5
    ratio = np.asarray(result["spectrum"]["64"]["log_ratio_2d"])
    assert ratio.shape == (64, 64) and np.isfinite(ratio).all()
    for key in ("auc_ci", "pixel_auc_ci"):
        for size in ("32", "64"):
            lo, hi = jeans[key][size]
            assert 0 <= lo <= jeans[key.replace("_ci", "")][size] <= hi <= 1
    assert set(jeans["pixel_auc"]) == {"32", "64"}
    assert result["duplicates"]["min_correlation"] == dg.DUPLICATE_MIN_CORRELATION
    assert result["duplicates"]["max_hamming"] == result["duplicate_threshold"] == dg.DUPLICATE_THRESHOLD

    shoes = result["tags"]["shoes"]  # no real photos: the metrics that need them are null, with reasons
    assert shoes["diversity"]["real"] is None and shoes["diversity"]["synthetic"] is not None
    assert shoes["frechet"] == {"synthetic_vs_real": None, "real_vs_real_floor": None}
    assert shoes["auc"] == {"32": None, "64": None} == shoes["pixel_auc"] == shoes["auc_ci"] == shoes["pixel_auc_ci"]
    assert "real" in shoes["notes"]["auc"] and "4 real images" in shoes["notes"]["frechet"]
    json.dumps(result)  # the whole report is plain JSON


def test_diagnose_reuses_the_embedding_cache_and_skips_rejected_images(lab, tiny_clip):
    from core.analysis.fingerprint import FEATURE_KEY

    first = dg.diagnose(lab, tags=["jeans"], sizes=(32,), encoder=tiny_clip, spectrum=False)
    counts = {r["encoder"] == FEATURE_KEY: r["n"] for r in lab.query(
        "SELECT encoder, COUNT(*) AS n FROM embeddings GROUP BY encoder = ?", (FEATURE_KEY,))}
    assert counts == {False: 12, True: 12}  # encoder embeddings and pixel features, one per image
    assert lab.query_one("SELECT COUNT(*) AS n FROM image_signatures")["n"] == 12
    assert first["cache"]["embeddings"]["misses"] == first["cache"]["pixel_features"]["misses"] == 12
    assert first["cache"]["signatures"]["misses"] == 12
    victim = lab.list_images("jeans", "real")[0]["id"]
    lab.set_rejected(victim)
    again = dg.diagnose(lab, tags=["jeans"], sizes=(32,), encoder=tiny_clip, spectrum=False)
    assert lab.query_one("SELECT COUNT(*) AS n FROM embeddings")["n"] == 24
    assert again["tags"]["jeans"]["counts"]["real"] == 5 and "spectrum" not in again
    cache = again["cache"]  # nothing recomputed on the unchanged images
    assert cache["embeddings"] == {"hits": 11, "misses": 0} and cache["pixel_features"] == {"hits": 11, "misses": 0}
    assert cache["signatures"] == {"hits": 11, "misses": 0}


@pytest.mark.parametrize("kwargs, error, message", [
    ({"tags": ["hats"]}, UnknownTag, "unknown tag 'hats'"),
    ({"sizes": ()}, InvalidInput, "at least one pixel size"),
    ({"sizes": (8,)}, InvalidInput, "size must be between"),
    ({"encoder": "/no/such/folder"}, ModelNotFound, "does not exist"),
])
def test_bad_requests_are_user_errors(lab, tiny_clip, kwargs, error, message):
    with pytest.raises(error, match=message):
        dg.diagnose(lab, **{"encoder": tiny_clip, **kwargs})
    assert lab.query_one("SELECT COUNT(*) AS n FROM embeddings")["n"] == 0


def test_a_store_without_images_to_diagnose_says_so(store, tiny_clip):
    with pytest.raises(InvalidInput, match="no tags yet"):
        dg.diagnose(store, encoder=tiny_clip)
    store.add_tag("jeans")
    store.add_image(noise_images(1, seed=5)[0], tag="jeans", source="test")
    with pytest.raises(UserError, match="no synthetic or real images"):
        dg.submit_diagnosis(store, encoder=tiny_clip)
    assert store.query("SELECT * FROM jobs") == []


def test_a_diagnosis_job_keeps_its_result_for_the_page_and_the_report(lab, tiny_clip):
    assert dg.latest_diagnosis(lab) is None
    assert "No diagnostics yet" in diagnostic_views.report_section(lab)
    out = dg.run_diagnosis(lab, ["jeans"], [32], tiny_clip)
    latest = dg.latest_diagnosis(lab)
    assert latest["job"] == out["job"] and latest["tags"]["jeans"]["auc"] == out["tags"]["jeans"]["auc"]
    assert dg.active_diagnosis(lab) is None
    section = diagnostic_views.report_section(lab)
    assert "<table" in section and "jeans" in section and "AUC @ 32px" in section
    assert "<script src" not in section and "plotly" in section.lower()
    rows = diagnostic_views.summary_rows(latest)
    assert rows[0]["tag"] == "jeans" and rows[0]["duplicate clusters"] == 1


def test_rejecting_a_cluster_keeps_its_first_image_and_is_all_or_nothing(lab):
    ids = [im["id"] for im in lab.list_images("jeans", "synthetic")]
    assert dg.reject_duplicates(lab, ids[:3]) == ids[1:3]
    state = {im["id"]: im["rejected"] for im in lab.list_images("jeans", "synthetic")}
    assert not state[ids[0]] and state[ids[1]] and state[ids[2]] and not state[ids[3]]
    with pytest.raises(NotFound):
        dg.reject_duplicates(lab, [ids[3], ids[4], "f" * 64])
    assert not any(im["rejected"] for im in lab.list_images("jeans", "synthetic") if im["id"] in ids[3:])
    shown = dg.cluster_images(lab, ids[:2])
    assert [im["rejected"] for im in shown] == [False, True] and os.path.exists(shown[0]["path"])


def test_spectrum_figure_has_one_line_per_source_and_size():
    result = {"spectrum": {"32": {"frequency": [0, 0.25, 0.5], "synthetic": [0, 1, 2], "real": [0, 2, 1]},
                           "64": {"frequency": [0, 0.5], "synthetic": [0, 1], "real": None}}}
    fig = diagnostic_views.spectrum_figure(result)
    assert [t.name for t in fig.data] == ["synthetic @ 32px", "real @ 32px", "synthetic @ 64px"]
    assert fig.layout.yaxis.type == "log"


# -- the CLI -------------------------------------------------------------------------------------


def cli(home, *args):
    return subprocess.run([sys.executable, "-m", "core", "--home", str(home), *args], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)


def test_cli_diagnose_prints_the_report_as_the_last_json_line(lab, tiny_clip):
    proc = cli(lab.root, "diagnose", "--tags", "jeans,shoes", "--sizes", "32,64", "--encoder", tiny_clip, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    jeans = out["tags"]["jeans"]
    assert set(jeans) >= {"diversity", "distinct_prompts", "duplicate_clusters", "frechet", "auc"}
    assert set(jeans["frechet"]) == {"synthetic_vs_real", "real_vs_real_floor"}
    assert set(jeans["auc"]) == {"32", "64"} and jeans["auc"]["32"] > 0.9
    assert out["tags"]["shoes"]["auc"]["32"] is None
    assert dg.latest_diagnosis(lab)["job"] == out["job"]


def test_cli_diagnose_user_errors_exit_2_with_one_line(lab, tiny_clip):
    proc = cli(lab.root, "diagnose", "--tags", "hats", "--encoder", tiny_clip, "--json")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown tag 'hats'" in lines[0]
    assert lab.query("SELECT * FROM jobs") == []


def test_a_foreground_diagnosis_reports_progress_to_its_caller_and_the_job(lab, tiny_clip):
    seen = []
    out = dg.run_diagnosis(lab, ["jeans"], [32], tiny_clip, progress=lambda d, t, m: seen.append((d, t, m)))
    assert seen and seen[-1][0] == seen[-1][1] and seen[-1][2] == "done"
    assert any("pixel probe" in m for _, _, m in seen) and any("near-duplicates" in m for _, _, m in seen)
    from core.run import jobs

    job = jobs.get_job(lab, out["job"])
    assert job["done"] == job["total"] > 0


def test_diagnosis_progress_is_one_steady_scale_through_every_phase(lab, tiny_clip):
    """Progress counts images handled (not phases of very different cost), never goes back, keeps one
    total, and moves inside the label-issue fits too — so the rate and the ETA settle."""
    seen = []
    dg.diagnose(lab, ["jeans", "shoes"], [32], tiny_clip, progress=lambda d, t, m: seen.append((d, t, m)))
    assert len({t for _, t, _ in seen}) == 1
    done = [d for d, _, _ in seen]
    assert done == sorted(done) and done[-1] == seen[-1][1]
    fits = [d for d, _, m in seen if "label-issue probe fit" in m]
    assert len(fits) >= 5 and fits[-1] > fits[0]  # moves within the fits, not only around them
    phases = {m.split(" · ")[0] for _, _, m in seen}
    assert {"jeans: embedding at 32 px", "jeans: near-duplicates", "suspected wrong labels"} <= phases


def test_the_page_keeps_showing_a_cancelled_diagnosis_until_the_next_one(lab, tiny_clip):
    from core.run import jobs

    assert dg.diagnosis_to_show(lab) is None
    queued = dg.submit_diagnosis(lab, ["jeans"], [32], tiny_clip)
    assert dg.diagnosis_to_show(lab) == queued  # queued: shown with its progress
    jobs.cancel(lab, queued)
    assert dg.diagnosis_to_show(lab) == queued and dg.latest_diagnosis(lab) is None  # cancelled: still said
    done = dg.run_diagnosis(lab, ["jeans"], [32], tiny_clip)["job"]
    assert dg.diagnosis_to_show(lab) is None and dg.latest_diagnosis(lab)["job"] == done  # the result speaks
