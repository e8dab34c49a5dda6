"""Known answers for `compare`, on real photos (Fashion-MNIST clothing, else scikit-learn digits).

* **Null case**: the "synthetic" images are just more real photos of the same classes. The
  synthetic-only and real-only arms are the same experiment drawn twice, so `compare` must say
  `within noise` at every count — with intervals narrow enough to mean something — and the chart's
  error bars of the two arms must overlap.
* **Label noise**: 40 % of the synthetic images carry a wrong tag. The real-only arm (b) must come
  out better at 30 per tag, with an interval below zero.

The models are cnn-small (no pretrained weights; seconds per run). Slices, training and the bootstrap
are seeded, so each test gives the same answer every time; repeats and test-set sizes are chosen so
the answer follows from the interval logic (checked for calibration in tests/core/analysis/test_stats.py), not
from one lucky draw: the null case holds for other slice seeds as well (checked while writing it: seeds
0–3 all within noise, p ≥ 0.12), and the label-noise case separates for seeds 0–2 (p ≤ 0.012).
"""

from __future__ import annotations

import json

import pytest

from core.analysis.evaluation import evaluate, results
from core.cli.main import main
from core.data.slicing import SliceSpec, build_slices
from core.store.database import Store
from core.train.training import train
from core.views import charts
from tests.datasets import digit_images, fashion_available, fashion_images

POOL = 60          # per tag and source: real pool and "synthetic" pool
TEST = 50          # test photos per tag (200 in all)
SIZE = 32


def photos(test: int = TEST) -> dict:
    """``{"real": {tag: [120 photos]}, "test": {tag: [test]}}``: real photos, disjoint."""
    if fashion_available():
        return fashion_images(n_train=2 * POOL, n_test=test, size=SIZE)
    return digit_images(n_train=2 * POOL, n_test=test, size=SIZE)


def build_store(home, wrong_fraction: float, test: int = TEST) -> Store:
    """Real pool = the first 60 photos per tag; "synthetic" pool = the next 60, of which
    ``wrong_fraction`` are stored under another tag (spread over the other tags evenly)."""
    data = photos(test)
    store = Store(home)
    tags = list(data["real"])
    for tag in tags:
        store.add_tag(tag)
    for tag, pictures in data["real"].items():
        for picture in pictures[:POOL]:
            store.add_image(picture, tag=tag, source="real")
        wrong = round(wrong_fraction * POOL)
        for i, picture in enumerate(pictures[POOL:]):
            label = tags[(tags.index(tag) + 1 + i % (len(tags) - 1)) % len(tags)] if i < wrong else tag
            store.add_image(picture, tag=label, source="synthetic", model_id="more-real-photos")
    for tag, pictures in data["test"].items():
        for picture in pictures:
            store.add_image(picture, tag=tag, source="test")
    return store


def arms_of(store: Store) -> dict[str, str]:
    return {r["slice_name"]: r["arm"] for r in results(store)}


def cli_compare(home, a: str, b: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["--home", str(home), "compare", "--a", a, "--b", b, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_null_store_compares_within_noise_at_every_count(tmp_path, capsys):
    home = tmp_path / "null"
    store = build_store(home, wrong_fraction=0.0)
    try:
        for name, real in (("synthetic-only", 0.0), ("real-only", 1.0)):
            build_slices(store, SliceSpec(name=name, counts=(10, 30), size=SIZE, real_fraction=real, repeats=3))
        train(store, ["synthetic-only", "real-only"], params={"encoder": "cnn-small", "epochs": 20})
        evaluate(store)
        arm = arms_of(store)
        assert arm["synthetic-only"] != arm["real-only"]
        out = cli_compare(home, arm["synthetic-only"], arm["real-only"], capsys)
        comparisons = out["comparisons"]
        assert [c["count_per_tag"] for c in comparisons] == [10, 30]
        for c in comparisons:
            assert set(c) >= {"count_per_tag", "a", "b", "difference", "ci", "p_value", "verdict"}
            lo, hi = c["ci"]
            assert c["verdict"] == "within noise", c
            assert lo <= 0 <= hi and c["p_value"] > 0.05
            assert lo <= c["difference"] <= hi
            assert hi - lo < 0.35, "an interval this wide would call anything noise"
            assert c["a"] > 0.6 and c["b"] > 0.6, "the models learned something"
        # the chart's combined error bars of the two arms overlap at each count
        fig = charts.metrics_vs_count(charts.with_slice_names(store, results(store)), "accuracy")
        lines = {t.meta["arm"]: t for t in fig.data if not t.meta["baseline"]}
        syn, real = lines[arm["synthetic-only"]], lines[arm["real-only"]]
        for i in range(2):
            assert abs(syn.y[i] - real.y[i]) <= syn.error_y.array[i] + real.error_y.array[i]
            assert real.error_y.array[i] > 0.02, "test-set uncertainty is part of the bar"
        assert real.meta["real_only"] and real.line.dash == "dash"
    finally:
        store.close()


@pytest.mark.slow
def test_label_noise_in_synthetic_images_makes_the_real_arm_better(tmp_path, capsys):
    home = tmp_path / "noisy"
    store = build_store(home, wrong_fraction=0.4)
    try:
        for name, real in (("synthetic-only", 0.0), ("real-only", 1.0)):
            build_slices(store, SliceSpec(name=name, counts=(30,), size=SIZE, real_fraction=real, repeats=5))
        train(store, ["synthetic-only", "real-only"], params={"encoder": "cnn-small", "epochs": 40})
        evaluate(store)
        arm = arms_of(store)
        out = cli_compare(home, arm["synthetic-only"], arm["real-only"], capsys)
        (c,) = out["comparisons"]
        assert c["count_per_tag"] == 30 and c["verdict"] == "b better", c
        assert c["ci"][1] < 0 and c["p_value"] < 0.05 and c["difference"] < 0
        assert c["repeats"] == [5, 5] and c["test_images"] == 4 * TEST
        # swapping the arms swaps the verdict
        swapped = cli_compare(home, arm["real-only"], arm["synthetic-only"], capsys)["comparisons"][0]
        assert swapped["verdict"] == "a better" and swapped["difference"] == pytest.approx(-c["difference"])
    finally:
        store.close()
