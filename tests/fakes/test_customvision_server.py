"""The fake Custom Vision server, driven by the real SDK (3.1.1, msrest 0.7.1) over HTTP."""

from __future__ import annotations

import io
import time

import pytest
from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.prediction.models import (
    CustomVisionErrorException as PredictionError,
)
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    CustomVisionErrorException,
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    TrainingParameters,
)
from msrest.authentication import ApiKeyCredentials
from msrest.exceptions import ClientRequestError
from PIL import Image

from tests.fakes import FAKE_PREDICTION_RESOURCE_ID, FakeCustomVision
from tests.fakes.customvision_server import GENERAL_DOMAIN_ID, PREDICTION_PREFIX, TRAINING_PREFIX

TRAINING_KEY = "train-key-123"
PREDICTION_KEY = "predict-key-456"
RED, GREEN = (220, 30, 30), (30, 200, 40)


def png(color: tuple[int, int, int], variant: int = 0, size: int = 256) -> bytes:
    """A ``size``-px PNG of one colour; ``variant`` changes a few pixels so the bytes differ."""
    image = Image.new("RGB", (size, size), color)
    for i in range(variant):
        image.putpixel((i, 0), ((color[0] + 7 * (i + 1)) % 256, color[1], color[2]))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def trainer(fake: FakeCustomVision, key: str = TRAINING_KEY) -> CustomVisionTrainingClient:
    return CustomVisionTrainingClient(fake.endpoint, ApiKeyCredentials(in_headers={"Training-key": key}))


def predictor(fake: FakeCustomVision, key: str = PREDICTION_KEY) -> CustomVisionPredictionClient:
    return CustomVisionPredictionClient(fake.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": key}))


def entries(tag_id: str, color: tuple[int, int, int], n: int, start: int = 0) -> list[ImageFileCreateEntry]:
    return [ImageFileCreateEntry(name=f"{tag_id[:4]}-{i}.png", contents=png(color, i), tag_ids=[tag_id])
            for i in range(start, start + n)]


def wait_for(client: CustomVisionTrainingClient, project_id: str, iteration_id: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    iteration = client.get_iteration(project_id, iteration_id)
    while iteration.status == "Training" and time.monotonic() < deadline:
        time.sleep(0.03)
        iteration = client.get_iteration(project_id, iteration_id)
    return iteration


def error_of(excinfo: pytest.ExceptionInfo) -> tuple[int, str | None]:
    exc = excinfo.value
    return exc.response.status_code, exc.error.code


@pytest.fixture
def fake():
    with FakeCustomVision(training_key=TRAINING_KEY, prediction_key=PREDICTION_KEY, training_delay=0.05) as f:
        yield f


@pytest.fixture
def client(fake):
    return trainer(fake)


@pytest.fixture
def two_tags(client):
    """A Multiclass project with tags red and green, six images each."""
    project = client.create_project("colours", classification_type="Multiclass")
    red = client.create_tag(project.id, "red")
    green = client.create_tag(project.id, "green")
    batch = ImageFileCreateBatch(images=entries(red.id, RED, 6) + entries(green.id, GREEN, 6))
    assert client.create_images_from_files(project.id, batch).is_batch_successful
    return project, red, green


def test_listens_on_loopback_only_and_stops(fake):
    assert fake.endpoint.startswith("http://127.0.0.1:")
    assert fake._server.server_address[0] == "127.0.0.1"
    other = FakeCustomVision()
    other.stop()
    other.stop()  # idempotent


def test_domains_are_the_real_list(client):
    domains = client.get_domains()
    general = [d for d in domains if d.type == "Classification" and d.name == "General"]
    assert [d.id for d in general] == [GENERAL_DOMAIN_ID]
    compact = next(d for d in domains if d.name == "General (compact)" and d.type == "Classification")
    assert compact.exportable and "ONNX" in compact.exportable_platforms
    assert client.get_domain(GENERAL_DOMAIN_ID).name == "General"


def test_full_flow_upload_train_quicktest_publish_classify(fake):
    fake.training_delay = 0.2
    client = trainer(fake)
    project = client.create_project("synthlab", description="d", domain_id=GENERAL_DOMAIN_ID,
                                    classification_type="Multiclass")
    assert project.settings.classification_type == "Multiclass"
    assert [p.id for p in client.get_projects()] == [project.id] == fake.created_projects
    assert client.get_project(project.id).name == "synthlab"

    red = client.create_tag(project.id, "red")
    green = client.create_tag(project.id, "green")
    assert {t.name for t in client.get_tags(project.id)} == {"red", "green"}

    summary = client.create_images_from_files(
        project.id, ImageFileCreateBatch(images=entries(red.id, RED, 6) + entries(green.id, GREEN, 6)))
    assert summary.is_batch_successful
    assert [r.status for r in summary.images] == ["OK"] * 12
    assert summary.images[0].image.width == 256
    assert fake.image_count(project.id) == 12 and fake.image_count(project.id, red.id) == 6
    assert client.get_tagged_image_count(project.id) == 12
    assert client.get_tagged_image_count(project.id, tag_ids=[red.id]) == 6
    assert client.get_image_count(project.id) == 12
    assert {t.name: t.image_count for t in client.get_tags(project.id)} == {"red": 6, "green": 6}

    started = client.train_project(project.id, training_type="Regular", reserved_budget_in_hours=0)
    assert started.status == "Training"
    assert client.get_iteration(project.id, started.id).status == "Training"
    iteration = wait_for(client, project.id, started.id)
    assert iteration.status == "Completed" and iteration.trained_at is not None
    assert [i.id for i in client.get_iterations(project.id)] == [iteration.id]

    perf = client.get_iteration_performance(project.id, iteration.id, threshold=0.5)
    assert perf.precision == pytest.approx(1.0) and perf.recall == pytest.approx(1.0)
    assert perf.average_precision == pytest.approx(1.0)
    assert {t.name for t in perf.per_tag_performance} == {"red", "green"}

    result = client.quick_test_image(project.id, png((200, 50, 40)), iteration_id=iteration.id)
    probs = {p.tag_name: p.probability for p in result.predictions}
    assert set(probs) == {"red", "green"}
    assert sum(probs.values()) == pytest.approx(1.0)
    assert probs["red"] > probs["green"]
    assert result.iteration == iteration.id and result.project == project.id

    assert client.publish_iteration(project.id, iteration.id, "slice-10", FAKE_PREDICTION_RESOURCE_ID) is True
    assert client.get_iteration(project.id, iteration.id).publish_name == "slice-10"
    prediction = predictor(fake)
    for classify in (prediction.classify_image, prediction.classify_image_with_no_store):
        out = classify(project.id, "slice-10", png((40, 210, 50)))
        assert out.predictions[0].tag_name == "green"
        assert sum(p.probability for p in out.predictions) == pytest.approx(1.0)

    client.unpublish_iteration(project.id, iteration.id)
    raw = client.delete_project(project.id, raw=True)
    assert raw.response.status_code == 204 and raw.response.content == b""
    assert fake.deleted_projects == [project.id] and project.id not in fake.projects

    upload = fake.requests_for("CreateImagesFromFiles")
    assert [(r.method, r.status, r.image_count) for r in upload] == [("POST", 200, 12)]
    assert upload[0].path == f"{TRAINING_PREFIX}/projects/{project.id}/images/files"
    train = fake.requests_for("TrainProject")[0]
    assert train.query == {"trainingType": "Regular", "reservedBudgetInHours": "0", "forceTrain": "false"}
    assert all(r.headers.get("Training-key") == TRAINING_KEY for r in fake.requests if r.api == "training")
    assert all(r.headers.get("Prediction-key") == PREDICTION_KEY for r in fake.requests if r.api == "prediction")
    assert fake.requests_for("ClassifyImage")[0].path.startswith(PREDICTION_PREFIX)


def test_wrong_or_missing_key_is_401_access_denied(fake, client):
    with pytest.raises(CustomVisionErrorException) as excinfo:
        trainer(fake, "wrong").get_projects()
    assert error_of(excinfo) == (401, None)  # gateway body {"error": {...}}, not a CustomVisionError
    assert excinfo.value.response.reason == "Access Denied"
    assert excinfo.value.response.json()["error"]["code"] == "401"
    assert "invalid subscription key" in excinfo.value.response.json()["error"]["message"]

    bare = CustomVisionTrainingClient(fake.endpoint, ApiKeyCredentials(in_headers={"X-Other": "x"}))
    with pytest.raises(CustomVisionErrorException) as excinfo:
        bare.get_domains()
    assert "missing subscription key" in excinfo.value.response.json()["error"]["message"]

    with pytest.raises(PredictionError) as excinfo:  # the training key is not a prediction key
        predictor(fake, TRAINING_KEY).classify_image(client.create_project("p").id, "x", png(RED))
    assert excinfo.value.response.status_code == 401
    assert [r.status for r in fake.requests] == [401, 401, 200, 401]


def test_batch_over_64_images_is_refused(fake, client):
    project = client.create_project("big")
    tag = client.create_tag(project.id, "t")
    batch = ImageFileCreateBatch(images=entries(tag.id, RED, 65, start=0))
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.create_images_from_files(project.id, batch)
    assert error_of(excinfo) == (400, "BadRequestImageBatch")
    assert fake.image_count(project.id) == 0
    assert fake.requests_for("CreateImagesFromFiles")[0].image_count == 65
    ok = client.create_images_from_files(project.id, ImageFileCreateBatch(images=batch.images[:64]))
    assert ok.is_batch_successful and fake.image_count(project.id) == 64


def test_reupload_is_okduplicate_with_207(fake, two_tags, client):
    project, red, _ = two_tags
    first = client.get_tagged_images(project.id, tag_ids=[red.id], take=50)
    again = client.create_images_from_files(project.id, ImageFileCreateBatch(images=entries(red.id, RED, 2)),
                                            raw=True)
    assert again.response.status_code == 207
    assert not again.output.is_batch_successful
    assert [r.status for r in again.output.images] == ["OKDuplicate", "OKDuplicate"]
    assert {r.image.id for r in again.output.images} <= {im.id for im in first}
    assert fake.image_count(project.id) == 12


def test_partial_batch_is_207_with_per_image_status(fake, client):
    project = client.create_project("partial")
    tag = client.create_tag(project.id, "t")
    images = entries(tag.id, RED, 2) + [
        ImageFileCreateEntry(name="not-an-image.png", contents=b"definitely not a png", tag_ids=[tag.id]),
        ImageFileCreateEntry(name="bad-tag.png", contents=png(GREEN), tag_ids=["00000000-0000-0000-0000-000000000001"]),
    ]
    raw = client.create_images_from_files(project.id, ImageFileCreateBatch(images=images), raw=True)
    assert raw.response.status_code == 207
    summary = raw.output
    assert summary.is_batch_successful is False
    assert [r.status for r in summary.images] == ["OK", "OK", "ErrorImageFormat", "ErrorInvalidTag"]
    assert summary.images[2].image is None and summary.images[0].source_url == images[0].name
    assert fake.image_count(project.id) == 2


def test_failed_training(fake, two_tags, client):
    project, _, _ = two_tags
    fake.fail_training = True
    iteration = wait_for(client, project.id, client.train_project(project.id).id)
    assert iteration.status == "Failed"
    assert iteration.training_error_details
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.publish_iteration(project.id, iteration.id, "m", FAKE_PREDICTION_RESOURCE_ID)
    assert error_of(excinfo) == (400, "BadRequestIterationIsNotTrained")
    fake.fail_training = False  # a failed iteration does not count as "nothing changed"
    assert wait_for(client, project.id, client.train_project(project.id).id).status == "Completed"


def test_training_validation_errors(fake, client):
    project = client.create_project("v", classification_type="Multiclass")
    red = client.create_tag(project.id, "red")
    client.create_images_from_files(project.id, ImageFileCreateBatch(images=entries(red.id, RED, 6)))
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.train_project(project.id)
    assert error_of(excinfo) == (400, "BadRequestMultiClassClassificationTrainingValidationFailed")

    green = client.create_tag(project.id, "green")
    client.create_images_from_files(project.id, ImageFileCreateBatch(images=entries(green.id, GREEN, 4)))
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.train_project(project.id)
    assert error_of(excinfo) == (400, "BadRequestClassificationTrainingValidationFailed")
    assert "Not enough images" in excinfo.value.message

    client.create_images_from_files(project.id, ImageFileCreateBatch(images=entries(green.id, GREEN, 1, start=4)))
    fake.hold_training = True
    first = client.train_project(project.id)
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.train_project(project.id)
    assert error_of(excinfo) == (400, "BadRequestTrainingAlreadyInProgress")
    fake.finish_training(first.id)
    assert client.get_iteration(project.id, first.id).status == "Completed"
    fake.hold_training = False

    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.train_project(project.id)
    assert error_of(excinfo) == (400, "BadRequestTrainingNotNeeded")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.train_project(project.id, training_type="Advanced", reserved_budget_in_hours=0, force_train=True)
    assert error_of(excinfo) == (400, "BadRequestReservedBudgetInHoursNotEnoughForAdvancedTraining")
    forced = client.train_project(project.id, force_train=True,
                                  training_parameters=TrainingParameters(selected_tags=[red.id, green.id]))
    assert forced.name == "Iteration 2"
    assert wait_for(client, project.id, forced.id).status == "Completed"


def test_quotas_per_tier():
    with FakeCustomVision(training_key=TRAINING_KEY, tier="F0", training_delay=0.01) as fake:
        client = trainer(fake)
        client.create_project("a")
        client.create_project("b")
        with pytest.raises(CustomVisionErrorException) as excinfo:
            client.create_project("c")
        assert error_of(excinfo) == (400, "BadRequestExceedProjectLimit")

        fake.reset()
        fake.limits["iterations_per_project"] = 1
        project = client.create_project("p", classification_type="Multiclass")
        red, green = client.create_tag(project.id, "red"), client.create_tag(project.id, "green")
        client.create_images_from_files(
            project.id, ImageFileCreateBatch(images=entries(red.id, RED, 5) + entries(green.id, GREEN, 5)))
        wait_for(client, project.id, client.train_project(project.id).id)
        with pytest.raises(CustomVisionErrorException) as excinfo:
            client.train_project(project.id, force_train=True)
        assert error_of(excinfo) == (400, "BadRequestExceedIterationPerProjectLimit")


def test_throttle_429_retry_after_is_surfaced_on_post_and_retried_on_get(fake, client):
    project = client.create_project("t")
    fake.throttle(count=1, retry_after=2, match="CreateTag")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.create_tag(project.id, "red")
    response = excinfo.value.response
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert client.create_tag(project.id, "red").name == "red"

    fake.throttle(count=1, retry_after=0)  # the SDK's urllib3 retry honours Retry-After on GET
    assert client.get_project(project.id).id == project.id
    assert [r.status for r in fake.requests_for("GetProject")] == [429, 200]
    assert [r.fault for r in fake.requests_for("GetProject")] == ["throttle", None]


def test_every_nth_request_throttled(fake, client):
    rule = fake.throttle(every=3, retry_after=0, match=r"POST .*/tags$")
    project = client.create_project("n")
    outcomes = []
    for i in range(6):
        try:
            client.create_tag(project.id, f"t{i}")
            outcomes.append("ok")
        except CustomVisionErrorException as exc:
            outcomes.append(exc.response.status_code)
    assert outcomes == ["ok", "ok", 429, "ok", "ok", 429]
    assert rule.fired == 2 and rule.seen == 6
    fake.clear_faults()
    assert client.create_tag(project.id, "last").name == "last"


def test_503_burst_and_dropped_connections(fake, client):
    project = client.create_project("u")
    fake.unavailable(count=1)
    assert client.get_project(project.id).id == project.id  # retried by the SDK
    fake.unavailable(count=1, match="CreateTag")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.create_tag(project.id, "x")
    assert error_of(excinfo) == (503, "ErrorUnknown")

    fake.drop_connections(count=1, match="CreateTag")
    with pytest.raises(ClientRequestError):
        client.create_tag(project.id, "x")
    dropped = fake.requests_for("CreateTag")[-1]
    assert dropped.status is None and dropped.fault == "drop"
    fake.drop_connections(count=1, match="GetProject")
    assert client.get_project(project.id).id == project.id  # idempotent GET retried
    assert client.create_tag(project.id, "x").name == "x"


def test_latency_knob(fake, client):
    fake.latency = 0.15
    start = time.monotonic()
    client.get_domains()
    assert time.monotonic() - start >= 0.15


def test_publish_rules_and_prediction_errors(fake, two_tags, client):
    project, _, _ = two_tags
    iteration = wait_for(client, project.id, client.train_project(project.id).id)
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.publish_iteration(project.id, iteration.id, "m", "https://example.invalid/")
    assert error_of(excinfo) == (400, "BadRequestInvalidPublishTarget")
    client.publish_iteration(project.id, iteration.id, "m", FAKE_PREDICTION_RESOURCE_ID)
    assert fake.published == {(project.id, "m"): iteration.id}

    with pytest.raises(PredictionError) as excinfo:
        predictor(fake).classify_image(project.id, "no-such-name", png(RED))
    assert excinfo.value.response.status_code == 404
    with pytest.raises(PredictionError) as excinfo:
        predictor(fake).classify_image(project.id, "m", b"not an image")
    assert error_of(excinfo) == (400, "BadRequestImageFormat")

    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.delete_project(project.id)
    assert error_of(excinfo) == (400, "BadRequestIterationIsPublished")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.delete_iteration(project.id, iteration.id)
    assert error_of(excinfo) == (400, "BadRequestIterationIsPublished")
    client.unpublish_iteration(project.id, iteration.id)
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.unpublish_iteration(project.id, iteration.id)
    assert error_of(excinfo) == (400, "BadRequestIterationNotPublished")
    client.delete_iteration(project.id, iteration.id)
    assert client.get_iterations(project.id) == []
    client.delete_project(project.id)
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.get_project(project.id)
    assert error_of(excinfo) == (404, "NotFoundProject")


def test_multilabel_default_and_unimplemented_operation(fake, client):
    project = client.create_project("default-type")
    assert project.settings.classification_type == "Multilabel"
    red, green = client.create_tag(project.id, "red"), client.create_tag(project.id, "green")
    client.create_images_from_files(
        project.id, ImageFileCreateBatch(images=entries(red.id, RED, 5) + entries(green.id, GREEN, 5)))
    iteration = wait_for(client, project.id, client.train_project(project.id).id)
    probs = {p.tag_name: p.probability for p in client.quick_test_image(project.id, png(RED)).predictions}
    assert probs["red"] > 0.9 and probs["green"] < 0.1  # independent scores, not a softmax
    assert iteration.classification_type == "Multilabel"

    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.export_project(project.id)
    assert error_of(excinfo) == (501, "BadRequestNotSupported")
    with pytest.raises(CustomVisionErrorException) as excinfo:
        client.create_tag(project.id, "RED")
    assert error_of(excinfo) == (400, "BadRequestTagNameNotUnique")


def test_stop_closes_keepalive_connections():
    fake = FakeCustomVision(training_key=TRAINING_KEY)
    client = trainer(fake)
    client.get_domains()  # leaves a pooled keep-alive connection open
    fake.stop()
    client.config.retry_policy.retries = 0  # refused connects would otherwise back off for ~5 s
    with pytest.raises(ClientRequestError):
        client.get_domains()
