"""The Azure Custom Vision backend against the fake Custom Vision server, through the real SDK over HTTP."""

from __future__ import annotations

import json
import time

import pytest
from PIL import Image

from core.analysis import evaluation
from core.data import slicing
from core.errors import InvalidInput, MissingSetting, UserError
from core.train import training
from core.train.backends import azure, azure_api, azure_images, azure_projects, azure_status
from core.train.backends.azure_settings import (
    AzureAuthError,
    AzureUnreachable,
    QuotaPlan,
    load_settings,
    quota_plan,
    scrub,
)
from tests.fakes import FAKE_PREDICTION_RESOURCE_ID, FakeCustomVision

TRAINING_KEY = "tk-7d1c0ffee-training-secret"
PREDICTION_KEY = "pk-9b2deadbeef-prediction-secret"
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40)}
FAST = {"SYNTHLAB_AZURE_RATE": "0", "SYNTHLAB_AZURE_POLL": "0.02", "SYNTHLAB_AZURE_POLL_MAX": "0.05",
        "SYNTHLAB_AZURE_BACKOFF": "0.01", "SYNTHLAB_AZURE_MAX_WAIT": "0.05", "SYNTHLAB_AZURE_RETRY_SECONDS": "20"}


def azure_env(fake: FakeCustomVision, *, prediction: bool = True, key: str = TRAINING_KEY) -> dict[str, str]:
    """The five settings pointing at the fake, plus fast retry/poll knobs."""
    env = {"VISION_TRAINING_ENDPOINT": fake.endpoint, "VISION_TRAINING_KEY": key, **FAST}
    if prediction:
        env.update({"VISION_PREDICTION_ENDPOINT": fake.endpoint, "VISION_PREDICTION_KEY": PREDICTION_KEY,
                    "VISION_PREDICTION_RESOURCE_ID": FAKE_PREDICTION_RESOURCE_ID})
    return env


def fill_store(store, per_tag: int = 8, test_per_tag: int = 2, side: int = 256) -> None:
    """Flat-colour images (a few pixels changed so each is distinct): ≥ 256 px, a few hundred bytes each."""
    for tag, colour in COLOURS.items():
        store.add_tag(tag)
        for i in range(per_tag):
            image = Image.new("RGB", (side, side), colour)
            image.putpixel((i % side, i // side), ((colour[0] + 40) % 256, (i * 7) % 256, colour[2]))
            store.add_image(image, tag=tag, source="synthetic")
        for i in range(test_per_tag):
            image = Image.new("RGB", (side + 20, side), colour)
            image.putpixel((i, 3), (0, 0, (i * 50 + 1) % 256))
            store.add_image(image, tag=tag, source="test")


def cut(store, name: str = "sw", counts=(5, 8), size: int | None = 256, repeats: int = 1) -> list[dict]:
    return slicing.build_slices(store, slicing.SliceSpec(name=name, counts=tuple(counts), size=size, repeats=repeats))


@pytest.fixture
def fake():
    with FakeCustomVision(TRAINING_KEY, PREDICTION_KEY, training_delay=0.05) as f:
        yield f


@pytest.fixture
def env(fake, monkeypatch, home):
    for k, v in azure_env(fake).items():
        monkeypatch.setenv(k, v)
    return fake


def uploaded(fake: FakeCustomVision) -> int:
    """Images the fake accepted as new (HTTP 200 batches hold only "OK" images)."""
    return sum(r.image_count or 0 for r in fake.requests_for("CreateImagesFromFiles") if r.status == 200)


# -- settings, secrets, connection ---------------------------------------------------------------------

def test_missing_settings_name_the_variable_and_write_no_run(store, monkeypatch):
    fill_store(store)
    cut(store)
    with pytest.raises(MissingSetting, match="VISION_TRAINING_ENDPOINT"):
        training.train(store, ["sw"], backend="azure")
    monkeypatch.setenv("VISION_TRAINING_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(MissingSetting, match="VISION_TRAINING_KEY"):
        training.train(store, ["sw"], backend="azure")
    assert store.query("SELECT * FROM runs") == []


def test_settings_are_masked_and_scrubbed(env):
    settings = load_settings()
    assert TRAINING_KEY not in repr(settings) and PREDICTION_KEY not in repr(settings)
    shown = json.dumps(settings.masked())
    assert TRAINING_KEY not in shown and PREDICTION_KEY not in shown and env.endpoint in shown
    text = scrub(f"failed with {TRAINING_KEY} and {PREDICTION_KEY}")
    assert TRAINING_KEY not in text and PREDICTION_KEY not in text and "••••" in text
    assert load_settings().can_publish


def test_batch_setting_never_exceeds_64(env, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_AZURE_BATCH", "500")
    assert load_settings().batch == 64
    monkeypatch.setenv("SYNTHLAB_AZURE_RATE", "fast")
    with pytest.raises(InvalidInput, match="SYNTHLAB_AZURE_RATE"):
        load_settings()


def test_connection_check_ok_wrong_key_and_unreachable(env, monkeypatch):
    ok = azure_status.check_connection()
    assert ok["ok"] and ok["domains"] > 0 and ok["projects"] == 0 and ok["prediction"].startswith("ok")
    assert [r.operation for r in env.requests][:1] == ["GetDomains"]

    monkeypatch.setenv("VISION_TRAINING_KEY", "wrong-key-0123456789")
    with pytest.raises(AzureAuthError) as excinfo:
        azure_status.check_connection()
    message = str(excinfo.value)
    assert message.startswith("Azure refused the training key (401)") and "VISION_TRAINING_KEY" in message
    assert "wrong-key-0123456789" not in message
    status = azure_status.connection_status()
    assert not status["ok"] and "401" in status["message"]
    assert "wrong-key-0123456789" not in json.dumps(status)

    monkeypatch.setenv("VISION_TRAINING_KEY", TRAINING_KEY)
    monkeypatch.setenv("VISION_PREDICTION_KEY", "bad-prediction-key-42")
    with pytest.raises(AzureAuthError, match=r"refused the prediction key \(401\)"):
        azure_status.check_connection()

    closed = FakeCustomVision()
    closed.stop()
    monkeypatch.setenv("VISION_TRAINING_ENDPOINT", closed.endpoint)
    started = time.monotonic()
    with pytest.raises(AzureUnreachable, match="cannot reach Azure Custom Vision at http://127.0.0.1") as excinfo:
        azure_status.check_connection(retry_seconds=0.3)
    assert "connection refused" in str(excinfo.value) and time.monotonic() - started < 5

    monkeypatch.setattr(azure_api, "UNREACHABLE_SECONDS", 0.5)  # a never-answering endpoint: not the whole budget
    started = time.monotonic()
    with pytest.raises(AzureUnreachable, match="connection refused"):
        azure_status.check_connection(retry_seconds=300)
    assert time.monotonic() - started < 5


# -- the whole sweep -------------------------------------------------------------------------------------

def test_sweep_one_project_per_series_one_iteration_per_count_then_evaluate(env, store):
    fill_store(store)
    cut(store, counts=(5, 8), repeats=2)
    runs = training.train(store, ["sw"], backend="azure", params={"tier": "F0"})
    assert [r["status"] for r in runs] == ["done"] * 4

    assert len(env.created_projects) == 2 and len(env.projects) == 2
    for project_id in env.projects:
        assert [it.status for it in env.iterations(project_id)] == ["Completed", "Completed"]
        assert sorted(env.tag_names(project_id)) == ["green", "red"]
        assert env.image_count(project_id) == 16
    assert len(env.requests_for("CreateTag")) == 4  # tags created once per project
    assert uploaded(env) == 32  # each image once: the n=8 iteration uploaded only the 3 new per tag
    assert not [r for r in env.requests_for("CreateImagesFromFiles") if r.status != 200]
    n5 = [it for pid in env.projects for it in env.iterations(pid) if it.name == "Iteration 1"]
    assert all(len(it.image_tags) == 10 for it in n5)

    run = training.get_run(store, runs[0]["id"])
    metrics = run["metrics"]["azure"]
    assert metrics["project_id"] in env.projects and metrics["iteration_id"]
    assert set(metrics["per_tag"]) == {"green", "red"} and 0 <= metrics["precision"] <= 1
    assert {"recall", "average_precision"} <= set(metrics)
    assert run["params"] == {"training_type": "Regular", "budget_hours": 0, "tier": "F0", "layout": "nested"}
    assert run["input_px"] == run["metrics"]["input_px"] == 256  # the side of what was uploaded

    results = evaluation.evaluate(store)
    tests = evaluation.test_images(store)
    assert len(results) == 4
    for result in results:
        assert [p["image"] for p in result["per_image"]] == [t["id"] for t in tests]
        for p in result["per_image"]:
            assert set(p["probabilities"]) == {"green", "red"}
            assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert result["accuracy"] == 1.0 and result["input_px"] == 256
    assert env.requests_for("ClassifyImageWithNoStore") and not env.requests_for("QuickTestImage")
    assert len(env.published) == 4

    again = training.train(store, ["sw"], backend="azure", params={"tier": "F0"})
    assert [r["id"] for r in again] == [r["id"] for r in runs] and len(env.created_projects) == 2


def test_quick_test_without_a_prediction_resource(env, store, monkeypatch):
    for name in ("VISION_PREDICTION_ENDPOINT", "VISION_PREDICTION_KEY", "VISION_PREDICTION_RESOURCE_ID"):
        monkeypatch.delenv(name)
    fill_store(store, per_tag=5)
    cut(store, counts=(5,))
    training.train(store, ["sw"], backend="azure")
    [result] = evaluation.evaluate(store)
    assert result["accuracy"] == 1.0 and len(result["per_image"]) == 4
    quick = env.requests_for("QuickTestImage")
    assert len(quick) == 4 and all(r.query.get("store") == "false" for r in quick)
    assert not env.requests_for("PublishIteration") and not env.published


def test_nested_counts_out_of_order_and_plain_layout(env, store):
    fill_store(store)
    slices = cut(store, counts=(5, 8))
    training.train(store, [str(slices[1]["id"])], backend="azure")
    training.train(store, [str(slices[0]["id"])], backend="azure")
    [project_id] = env.projects
    first, second = env.iterations(project_id)
    assert (len(first.image_tags), len(second.image_tags)) == (16, 10)  # n=5 trained on its own 10 images

    training.train(store, ["sw"], backend="azure", params={"layout": "plain"})
    assert len(env.projects) == 3  # plain: one more project per slice
    assert {len(env.iterations(p)) for p in env.projects if p != project_id} == {1}


def test_more_than_64_images_are_sent_in_batches_of_at_most_64(env, store):
    fill_store(store, per_tag=40, test_per_tag=1)
    cut(store, counts=(40,))
    training.train(store, ["sw"], backend="azure")
    batches = [r.image_count for r in env.requests_for("CreateImagesFromFiles")]
    assert max(batches) <= 64 and sum(batches) == 80 and len(batches) == 2
    assert list(env.image_counts.values()) == [80]


def test_throttling_503s_and_dropped_connections_lose_and_duplicate_nothing(env, store, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_AZURE_BATCH", "4")
    fill_store(store)
    cut(store, counts=(5, 8))
    env.throttle(every=3, retry_after=0)
    env.unavailable(every=5)
    env.drop_connections(every=7)
    runs = training.train(store, ["sw"], backend="azure")
    assert [r["status"] for r in runs] == ["done", "done"]
    faults = {r.fault for r in env.requests if r.fault}
    assert faults == {"throttle", "unavailable", "drop"}
    assert {r.fault for r in env.requests_for("CreateImagesFromFiles") if r.fault} == faults
    assert list(env.image_counts.values()) == [16] and uploaded(env) == 16
    assert len(env.created_projects) == 1 and len(env.requests_for("CreateTag", method="POST")) >= 2
    [project_id] = env.projects
    assert sorted(env.tag_names(project_id)) == ["green", "red"]
    assert len(env.iterations(project_id)) == 2
    env.clear_faults()
    assert all(r["accuracy"] == 1.0 for r in evaluation.evaluate(store))


def test_retry_after_is_honoured_and_retries_are_bounded(env, store, monkeypatch):
    fill_store(store, per_tag=5)
    cut(store, counts=(5,))
    env.throttle(count=1, retry_after=0.4, match="CreateImagesFromFiles")
    training.train(store, ["sw"], backend="azure")
    first, second = env.requests_for("CreateImagesFromFiles")[:2]
    assert first.status == 429 and second.status == 200 and second.timestamp - first.timestamp >= 0.38

    monkeypatch.setenv("SYNTHLAB_AZURE_RETRY_SECONDS", "0.3")
    env.throttle(retry_after=0.1)
    started = time.monotonic()
    with pytest.raises(UserError, match=r"Azure kept throttling \(429\)"):
        azure_status.check_connection(load_settings(), retry_seconds=0.3)
    assert time.monotonic() - started < 3


def test_rate_limiter_spaces_calls():
    limiter = azure_api.RateLimiter(20)
    started = time.monotonic()
    for _ in range(5):
        limiter.wait()
    assert 0.18 <= time.monotonic() - started < 1.0


def test_failed_training_fails_the_run_with_its_message_then_retrains(env, store):
    fill_store(store, per_tag=5)
    cut(store, counts=(5,))
    env.fail_training = True
    with pytest.raises(UserError, match="Azure training failed") as excinfo:
        training.train(store, ["sw"], backend="azure")
    assert "fail_training" in str(excinfo.value)
    [run] = training.list_runs(store)
    assert run["status"] == "failed" and "Azure training failed" in run["error"]

    env.fail_training = False
    [again] = training.train(store, ["sw"], backend="azure")
    assert again["id"] == run["id"] and again["status"] == "done"
    [project_id] = env.projects
    assert [it.status for it in env.iterations(project_id)] == ["Failed", "Completed"]
    assert len(env.created_projects) == 1 and uploaded(env) == 10


def test_training_that_never_ends_is_bounded(env, store, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_AZURE_TRAIN_TIMEOUT", "0.3")
    fill_store(store, per_tag=5)
    cut(store, counts=(5,))
    env.hold_training = True
    with pytest.raises(UserError, match="did not finish within 0.3 s"):
        training.train(store, ["sw"], backend="azure")
    env.hold_training = False
    env.finish_training()
    [run] = training.train(store, ["sw"], backend="azure")
    [project_id] = env.projects
    assert run["status"] == "done" and len(env.iterations(project_id)) == 1  # picked up, not retrained


def test_a_killed_create_is_found_again_not_repeated(env, store):
    """Ids that never reached the store (killed right after Azure acted) are found by name / as orphans."""
    fill_store(store, per_tag=5)
    [s] = cut(store, counts=(5,))
    trainer = azure.AzureTrainer()
    settings = load_settings()
    key, spec = azure_projects.series_of(s)
    row = azure_projects.reserve_project(store, settings.training_endpoint, key, spec, "nested", 5)
    client = azure_api.training_client(settings)
    client.create_project(row["name"], classification_type="Multiclass")  # created, id never recorded
    params = trainer.validate(store, {})
    [run_id] = training.prepare_runs(store, ["sw"], "azure", params)
    run = training.get_run(store, run_id)
    project = trainer._ensure_project(store, azure_api.AzureApi(settings), key, spec, "nested", 5)
    tags = trainer._ensure_tags(store, azure_api.AzureApi(settings), project, ["green", "red"])
    trainer._upload(store, azure_api.AzureApi(settings), project, training.slice_for_run(store, run), tags,
                    lambda *a: None)
    with store.tx() as conn:  # the training was requested, its id never recorded
        conn.execute("INSERT INTO azure_iterations(project, slice_id, params_key, status, created) "
                     "VALUES (?, ?, ?, 'requested', 'now')", (project["id"], s["id"], azure_projects.training_params_key(params)))
    client.train_project(project["project_id"])
    [done] = training.train(store, ["sw"], backend="azure")
    assert done["status"] == "done"
    assert len(env.created_projects) == 1 and len(env.iterations(project["project_id"])) == 1
    assert len(env.requests_for("TrainProject")) == 1


# -- quotas, sizes, encoding, cleanup -------------------------------------------------------------------

def test_quota_plan_refuses_f0_with_more_than_two_series(env, store):
    fill_store(store)
    cut(store, counts=(5, 8), repeats=3)
    with pytest.raises(UserError, match="quota plan refused: this sweep needs 3 new project") as excinfo:
        training.train(store, ["sw"], backend="azure", params={"tier": "F0"})
    assert "tier F0 allows 2" in str(excinfo.value)
    assert store.query("SELECT * FROM runs") == [] and env.created_projects == []

    plan = azure_projects.plan_sweep(store, slicing.resolve_slices(store, ["sw"]), {"tier": "S0"}, online=True)
    assert plan.ok and plan.projects == 3 and plan.iterations == 6 and plan.images == 48
    assert plan.resource_projects == 0 and plan.as_dict()["series"][0]["to_upload"] == 16


def test_quota_plan_counts_the_resource_and_warns():
    series = [{"key": "a", "name": "a", "counts": [5, 8], "images": 16, "tags": ["g", "r"], "min_side": 256}]
    assert not quota_plan(series, "F0", resource_projects=2).ok
    warned = quota_plan(series, "F0", resource_projects=1)
    assert warned.ok and "2 of the 2 projects" in warned.warnings[0]
    too_many = quota_plan([{**series[0], "counts": list(range(5, 26))}], "S0")
    assert "21 iterations" in too_many.errors[0]
    advanced = quota_plan(series, "F0", "Advanced", 2)
    assert advanced.ok and "up to 4 hours" in advanced.warnings[0]
    assert isinstance(advanced, QuotaPlan)


def test_images_under_256_px_are_refused_before_any_call(env, store):
    fill_store(store, per_tag=5, side=200)
    cut(store, counts=(5,), size=256)
    cut(store, name="originals", counts=(5,), size=None)
    cut(store, name="small", counts=(5,), size=128)
    assert azure_images.min_side(store, slicing.get_slice(store, "sw")) == 256  # upscaled to the slice size
    for name, side in (("small", 128), ("originals", 200)):
        with pytest.raises(UserError, match=f"has images of {side} px on the shorter side.*at least 256 px"):
            training.train(store, [name], backend="azure")
    assert env.requests == [] and store.query("SELECT * FROM runs") == []


def test_big_images_are_reencoded_under_the_limit_deterministically():
    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    limit = 60_000
    data = azure_images.encode_within(noise, limit)
    assert len(data) <= limit and data[:2] == b"\xff\xd8"  # a JPEG
    assert azure_images.encode_within(noise, limit) == data
    with Image.open(__import__("io").BytesIO(data)) as small:
        assert min(small.size) >= 256
    flat = Image.new("RGB", (300, 300), (1, 2, 3))
    assert azure_images.encode_within(flat, limit)[:4] == b"\x89PNG"


def test_cleanup_unpublishes_and_deletes_the_sweeps_projects(env, store):
    fill_store(store, per_tag=5)
    cut(store, counts=(5,))
    cut(store, name="other", counts=(5,))
    training.train(store, ["sw", "other"], backend="azure")
    evaluation.evaluate(store)
    assert len(env.published) == 2
    (project_id, _), iteration_id = next(iter(env.published.items()))
    azure_api.training_client(load_settings()).unpublish_iteration(project_id, iteration_id)  # in the portal
    other = next(r for r in training.list_runs(store) if r["metrics"]["azure"]["iteration_id"] == iteration_id)
    [probs] = azure.AzureTrainer().predict(store, other, evaluation.test_images(store)[:1])
    assert sum(probs.values()) == pytest.approx(1.0) and len(env.published) == 2  # published again
    result = azure_projects.cleanup(store, "sw")
    assert len(result["deleted"]) == 1 and len(env.projects) == 1 and len(env.deleted_projects) == 1
    assert env.requests_for("UnpublishIteration")
    assert [p["sweep"] for p in azure_projects.projects(store)] == ["other"]
    run = training.list_runs(store, slice_name="sw")[0]
    with pytest.raises(UserError, match="no longer exists"):
        azure.AzureTrainer().predict(store, run, evaluation.test_images(store)[:1])
    assert len(azure_projects.cleanup(store)["deleted"]) == 1 and env.projects == {}
