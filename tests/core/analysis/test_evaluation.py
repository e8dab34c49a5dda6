"""Evaluation on the labelled test photos: cached predictions, scikit-learn metrics, stored results, quick test."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from core.analysis import evaluation
from core.data import slicing
from core.errors import InvalidInput, UserError
from core.train import training

TAGS = ["one", "three", "two", "zero"]


@pytest.fixture
def trained(digits, tiny_clip):
    runs = training.train(digits, ["digits"], params={"encoder": tiny_clip})
    return digits, [r["id"] for r in runs]


def _count(store, table):
    return store.query_one(f"SELECT COUNT(*) AS n FROM {table}")["n"]


def test_every_finished_run_scores_every_test_image_with_sklearn_metrics(trained):
    store, ids = trained
    results = evaluation.evaluate(store)
    assert [r["run"] for r in results] == ids and _count(store, "predictions") == 3 * 120
    for r in results:
        assert r["tags"] == TAGS and r["test_images"] == 120 and r["backend"] == "local"
        probs = np.array([[im["probabilities"][t] for t in TAGS] for im in r["per_image"]])
        np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-9)
        truth = [im["tag"] for im in r["per_image"]]
        predicted = [TAGS[i] for i in probs.argmax(axis=1)]
        assert r["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(predicted, truth)]))
        matrix = np.array(r["confusion"]["matrix"])
        assert r["confusion"]["labels"] == TAGS and matrix.sum() == 120 and np.trace(matrix) == round(r["accuracy"] * 120)
        assert {t: v["support"] for t, v in r["per_tag"].items()} == {t: 30 for t in TAGS}
        assert r["macro_f1"] == pytest.approx(np.mean([v["f1"] for v in r["per_tag"].values()]))
        assert all(0 <= v["average_precision"] <= 1 for v in r["per_tag"].values())
        assert r["log_loss"] == pytest.approx(-np.mean(np.log([p[TAGS.index(t)] for p, t in zip(probs, truth)])))
    assert results[2]["accuracy"] > results[0]["accuracy"]  # 60 per tag beats 5 per tag
    assert [r["accuracy"] for r in training.list_runs(store, ids)] == [r["accuracy"] for r in results]
    stored = evaluation.results(store)
    assert [{k: v for k, v in r.items() if k != "stale"} for r in stored] == results
    assert not any(r["stale"] for r in stored)


def test_evaluating_again_reads_the_prediction_cache(trained):
    store, ids = trained
    first = evaluation.evaluate(store, ids[:2])
    shutil.rmtree(store.root / "models")  # no model could predict now: only the cache can answer
    again = evaluation.evaluate(store, ids[:2])
    assert [r["per_image"] for r in again] == [r["per_image"] for r in first]
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in first]
    assert evaluation.results(store, [ids[2]]) == []  # never evaluated
    picture = Image.new("RGB", (64, 64), "white")
    store.add_image(picture, tag="zero", source="test")
    assert all(r["stale"] for r in evaluation.results(store))
    with pytest.raises(UserError, match="has no model on disk"):
        evaluation.evaluate(store, ids[:1])  # the new photo needs a prediction
    assert _count(store, "predictions") == 2 * 120


def test_a_run_that_knows_fewer_tags_is_scored_over_all_test_tags(digits, tiny_clip):
    slicing.build_slices(digits, slicing.SliceSpec(name="pair", counts=(20,), size=32, real_fraction=1.0,
                                                   tags=("zero", "one")))
    [run] = training.train(digits, ["pair"], params={"encoder": tiny_clip})
    [result] = evaluation.evaluate(digits, [run["id"]])
    assert result["tags"] == ["one", "zero"] and result["confusion"]["labels"] == TAGS[:1] + ["zero", "three", "two"]
    assert all(set(im["probabilities"]) == {"one", "zero"} for im in result["per_image"])
    assert result["accuracy"] <= 0.5  # half the test photos show tags this run cannot name
    assert result["per_tag"]["two"]["recall"] == 0 and result["per_tag"]["two"]["average_precision"] == 0
    assert result["log_loss"] is not None and result["macro_f1"] is not None


def test_only_finished_runs_can_be_evaluated(digits, tiny_clip):
    with pytest.raises(InvalidInput, match="no finished runs to evaluate"):
        evaluation.evaluate(digits)
    [queued] = training.submit_training(digits, ["1"], "local", {"encoder": tiny_clip})
    with pytest.raises(InvalidInput, match=f"run {queued} is queued: only finished runs"):
        evaluation.evaluate(digits, [queued])


def test_quick_test_scores_a_stored_or_uploaded_photo_under_each_run(trained):
    store, ids = trained
    photo = store.list_images(tag="three", source="test")[0]
    stored = evaluation.quick_test(store, ids, photo["id"])
    assert [r["run"] for r in stored] == ids and all(set(r["probabilities"]) == set(TAGS) for r in stored)
    assert _count(store, "predictions") == 3  # the stored photo's predictions are cached
    buf = io.BytesIO()
    store.open_image(photo["id"]).save(buf, format="PNG")
    uploaded = evaluation.quick_test(store, ids, buf.getvalue())
    for a, b in zip(stored, uploaded):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6) and a["top"] == b["top"]
        assert abs(sum(b["probabilities"].values()) - 1) < 1e-9 and b["label"].startswith(f"run {b['run']} · digits")
    assert _count(store, "predictions") == 3  # uploads are not stored
    with pytest.raises(InvalidInput, match="cannot use this photo: not an image"):
        evaluation.quick_test(store, ids, b"not a picture")
    with pytest.raises(InvalidInput, match="pick at least one finished run"):
        evaluation.quick_test(store, [], photo["id"])


def test_an_evaluation_stored_with_the_old_intervals_is_rescored_once_and_kept(populated):
    """An evaluation from before ``interval_version`` 2 (the percentile bootstrap: [1, 1] when every photo is
    right) gets Clopper-Pearson and BCa intervals on read, and keeps them (the next read computes nothing)."""
    import json

    store = populated
    row = store.query_one("SELECT id, metrics FROM runs WHERE metrics LIKE '%evaluation%' ORDER BY id LIMIT 1")
    metrics = json.loads(row["metrics"])
    metrics["evaluation"].pop("interval_version", None)
    metrics["evaluation"]["accuracy_ci"] = [1.0, 1.0]
    with store.tx() as conn:
        conn.execute("UPDATE runs SET metrics = ? WHERE id = ?", (json.dumps(metrics), row["id"]))
    (mine,) = [r for r in evaluation.results(store) if r["run"] == row["id"]]
    lo, hi = mine["accuracy_ci"]
    assert mine["interval_version"] == 2 and 0.0 <= lo <= mine["accuracy"] <= hi <= 1.0 and hi - lo > 0
    kept = json.loads(store.query_one("SELECT metrics FROM runs WHERE id = ?", (row["id"],))["metrics"])["evaluation"]
    assert kept["interval_version"] == 2 and kept["accuracy_ci"] == mine["accuracy_ci"]
