"""A fake Azure Custom Vision service on 127.0.0.1 that the real SDK talks to over HTTP.

Why: the Azure backend must be tested offline, through the real
``azure-cognitiveservices-vision-customvision==3.1.1`` SDK (msrest 0.7.1), so the fake speaks the
wire protocol of the official REST specs that SDK was generated from:

* Training API 3.4-preview, ``{endpoint}/customvision/v3.4-preview/training``, key header ``Training-Key``;
* Prediction API 3.1, ``{endpoint}/customvision/v3.1/prediction``, key header ``Prediction-Key``.

Paths, query parameters, status codes (200 / 204 / 207), camelCase JSON shapes and
``CustomVisionError`` bodies (``{"code": ..., "message": ...}`` with codes from the spec's
``CustomVisionErrorCodes`` enum) follow ``shared/azure-customvision-spec``. Gateway-level answers
(401 for a bad or missing key, 429 throttling) have the Cognitive Services gateway's shape,
``{"error": {"code": "401", "message": ...}}`` with reason phrase ``Access Denied``, as the real
service sends them; the SDK then raises ``CustomVisionErrorException`` whose ``.error.code`` is None,
so callers must look at ``exc.response.status_code``.

The "model" is a deterministic nearest-prototype classifier on coarse colour features (mean RGB
and a 2x2 grid of mean colours): well-separated colours get their own tag's highest probability.
Multiclass projects get a softmax over the trained tags (sums to 1); Multilabel projects (the
service default when ``classificationType`` is not given) get independent per-tag scores.

Usage::

    with FakeCustomVision(training_key="k1", prediction_key="k2") as fake:
        client = CustomVisionTrainingClient(fake.endpoint, ApiKeyCredentials(in_headers={"Training-key": "k1"}))
        ...
        fake.inject("throttle", count=1, retry_after=0)   # next request -> 429 + Retry-After: 0
        fake.fail_training = True                          # next trainings end "Failed"
        assert fake.image_count(project_id) == 12
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np
from PIL import Image as PILImage

TRAINING_PREFIX = "/customvision/v3.4-preview/training"
PREDICTION_PREFIX = "/customvision/v3.1/prediction"
BLOB_PREFIX = "/fakeblob"

#: The ARM id of the prediction resource that ``publish_iteration`` must name by default.
FAKE_PREDICTION_RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/synthlab-test"
    "/providers/Microsoft.CognitiveServices/accounts/synthlab-prediction"
)

GENERAL_DOMAIN_ID = "ee85a74c-405e-4adc-bb47-ffa8ca0c9f31"

_ALL_PLATFORMS = ["VAIDK", "CoreML", "DockerFile", "ONNX", "OpenVino", "TensorFlow"]


def _domain(id_: str, name: str, type_: str, platforms: list[str] | None = None,
            size: int | None = None, description: str | None = None) -> dict[str, Any]:
    info = None if size is None else {"estimatedModelSizeInMegabytes": size, "description": description}
    return {"id": id_, "name": name, "type": type_, "exportable": bool(platforms), "enabled": True,
            "exportablePlatforms": list(platforms or []), "modelInformation": info}


#: The real GET /domains list (recordings/DomainsApiTests.json, Training 3.4-preview, Nov 2020).
DOMAINS: list[dict[str, Any]] = [
    _domain(GENERAL_DOMAIN_ID, "General", "Classification"),
    _domain("c151d5b5-dd07-472a-acc8-15d29dea8518", "Food", "Classification"),
    _domain("ca455789-012d-4b50-9fec-5bb63841c793", "Landmarks", "Classification"),
    _domain("b30a91ae-e3c1-4f73-a81e-c270bff27c39", "Retail", "Classification"),
    _domain("45badf75-3591-4f26-a705-45678d3e9f5f", "Adult", "Classification"),
    _domain("0732100f-1a38-4e49-a514-c9b44c697ab5", "General (compact)", "Classification", _ALL_PLATFORMS,
            5, "A ShuffleNet-like model for general classification problem."),
    _domain("8882951b-82cd-4c32-970b-d5f8cb8bf6d7", "Food (compact)", "Classification", _ALL_PLATFORMS,
            5, "A ShuffleNet-like model for food classification problem."),
    _domain("b5cfd229-2ac7-4b2b-8d0a-2b0661344894", "Landmarks (compact)", "Classification", _ALL_PLATFORMS,
            5, "A ShuffleNet-like model for landmarks classification problem."),
    _domain("6b4faeda-8396-481b-9f8b-177b9fa3097f", "Retail (compact)", "Classification", _ALL_PLATFORMS,
            5, "A ShuffleNet-like based model for food classification problem."),
    _domain("da2e3a8a-40a5-4171-82f4-58522f70fbc1", "General", "ObjectDetection"),
    _domain("1d8ffafe-ec40-4fb2-8f90-72b3b6cecea4", "Logo", "ObjectDetection"),
    _domain("3780a898-81c3-4516-81ae-3a139614e1f3", "Products on Shelves", "ObjectDetection"),
    _domain("a27d5ca5-bb19-49d8-a70a-fec086c47f5b", "General (compact)", "ObjectDetection",
            ["CoreML", "DockerFile", "ONNX", "TensorFlow"], 42, "A YOLO-like model for general detection problem."),
    _domain("7ec2ac80-887b-48a6-8df9-8b1357765430", "General (compact) [S1]", "ObjectDetection",
            _ALL_PLATFORMS + ["IVS"], 13, "A SSD-like model for general detection problem."),
]
_DOMAINS_BY_ID = {d["id"]: d for d in DOMAINS}

#: Per-tier quotas of the real service ("Limits and quotas" page); ``fake.limits`` is a mutable copy.
TIER_LIMITS: dict[str, dict[str, int]] = {
    "F0": {"projects": 2, "iterations_per_project": 20, "tags_per_project": 50,
           "images_per_project": 5000, "images_per_batch": 64, "tags_per_batch": 20,
           "min_images_per_tag": 5},
    "S0": {"projects": 100, "iterations_per_project": 20, "tags_per_project": 500,
           "images_per_project": 100_000, "images_per_batch": 64, "tags_per_batch": 20,
           "min_images_per_tag": 5},
}

MAX_TRAINING_IMAGE_BYTES = 6 * 1024 * 1024
MAX_PREDICTION_IMAGE_BYTES = 4 * 1024 * 1024
MAX_IMAGE_SIDE = 10_240
_IMAGE_FORMATS = {"JPEG", "PNG", "GIF", "BMP"}

_GATEWAY_401_INVALID = ("Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                        "provide a valid key for an active subscription and use a correct regional API "
                        "endpoint for your resource.")
_GATEWAY_401_MISSING = ("Access denied due to missing subscription key. Make sure to include subscription key "
                        "when making requests to an API.")

_REASONS = {401: "Access Denied", 207: "Multi-Status", 429: "Too Many Requests"}

_SOFTMAX_TEMPERATURE = 0.02


# --------------------------------------------------------------------------------------------------
# public records


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it (headers verbatim, keys included)."""

    method: str
    path: str                       # normalised path, no query, e.g. /customvision/v3.4-preview/training/domains
    query: dict[str, str]           # decoded query parameters, as sent (case kept)
    headers: dict[str, str]
    body_size: int
    status: int | None              # None when the fake dropped the connection
    api: str | None                 # "training" | "prediction" | None
    operation: str | None           # spec operationId, e.g. "CreateImagesFromFiles"
    image_count: int | None         # images in an upload batch (CreateImagesFromFiles / FromData)
    fault: str | None               # "throttle" | "unavailable" | "drop" when injected
    error_code: str | None          # CustomVisionError code (or gateway code) of an error answer
    timestamp: float                # time.time() when the request was answered


@dataclass
class FaultRule:
    """An injected fault. Matches a request when ``match`` is None, equals its operationId, or is a
    regex found in ``"METHOD /path"``. Fires on every ``every``-th matching request (every one when
    None) and at most ``count`` times (no limit when None)."""

    kind: str                       # "throttle" (429) | "unavailable" (503) | "drop" (close, no answer)
    every: int | None = None
    count: int | None = None
    match: str | None = None
    retry_after: float | None = None
    seen: int = 0
    fired: int = 0

    def applies(self, method: str, path: str, operation: str | None) -> bool:
        if self.count is not None and self.fired >= self.count:
            return False
        if self.match is not None and self.match != operation and not re.search(self.match, f"{method} {path}"):
            return False
        self.seen += 1
        if self.every and self.seen % self.every:
            return False
        self.fired += 1
        return True


@dataclass
class FakeTag:
    id: str
    name: str
    description: str | None
    type: str
    created: str


@dataclass
class FakeImage:
    id: str
    sha256: str
    data: bytes
    width: int
    height: int
    created: str
    tag_ids: list[str]
    metadata: dict[str, str] | None
    features: np.ndarray = field(repr=False)


@dataclass
class FakeIteration:
    id: str
    name: str
    project_id: str
    status: str                     # "Training" | "Completed" | "Failed"
    created: str
    last_modified: str
    trained_at: str | None
    domain_id: str
    classification_type: str | None
    training_type: str
    reserved_budget_in_hours: int
    exportable_to: list[str]
    tag_ids: list[str]              # trained tags, in project order
    tag_names: dict[str, str]
    image_tags: dict[str, list[str]]  # image id -> tag ids, as trained
    fingerprint: str
    will_fail: bool
    ready_at: float                 # time.monotonic() when training ends
    prototypes: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    loo_probabilities: list[tuple[list[str], dict[str, float]]] = field(repr=False, default_factory=list)
    publish_name: str | None = None
    publish_resource_id: str | None = None
    error_details: str | None = None


@dataclass
class FakeProject:
    id: str
    name: str
    description: str | None
    domain_id: str
    classification_type: str | None
    target_export_platforms: list[str]
    created: str
    last_modified: str
    tags: dict[str, FakeTag] = field(default_factory=dict)
    images: dict[str, FakeImage] = field(default_factory=dict)
    images_by_hash: dict[str, str] = field(default_factory=dict)
    iterations: dict[str, FakeIteration] = field(default_factory=dict)
    iteration_counter: int = 0
    stored_predictions: int = 0


# --------------------------------------------------------------------------------------------------
# helpers


class _ApiError(Exception):
    """A CustomVisionError answer; the HTTP status follows from the code's family."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or _status_for_code(code)


def _status_for_code(code: str) -> int:
    if code.startswith("BadRequest"):
        return 400
    if code.startswith("Forbidden"):
        return 403
    if code.startswith("NotFound"):
        return 404
    if code.startswith("Conflict"):
        return 409
    if code == "UnsupportedMediaType":
        return 415
    return 500


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _norm_id(value: str) -> str:
    return str(uuid.UUID(value)) if _is_uuid(value) else value


def _parse_bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise _ApiError("BadRequest", f"The value '{value}' is not a valid boolean.")


def _csv_ids(value: str | None) -> list[str]:
    return [_norm_id(v.strip()) for v in (value or "").split(",") if v.strip()]


def _decode_image(data: bytes) -> tuple[PILImage.Image, str]:
    try:
        image = PILImage.open(io.BytesIO(data))
        image.load()
    except Exception:  # noqa: BLE001 - any decoder failure is a bad image to the service
        raise ValueError("not an image") from None
    if image.format not in _IMAGE_FORMATS:
        raise ValueError(f"unsupported format {image.format}")
    return image, image.format


def _features(image: PILImage.Image) -> np.ndarray:
    """Mean RGB plus a 2x2 grid of mean colours, in [0, 1]: coarse, deterministic, colour-driven."""
    rgb = np.asarray(image.convert("RGB").resize((16, 16), PILImage.Resampling.BILINEAR), dtype=np.float64) / 255.0
    grid = [rgb[r:r + 8, c:c + 8].reshape(-1, 3).mean(axis=0) for r in (0, 8) for c in (0, 8)]
    return np.concatenate([rgb.reshape(-1, 3).mean(axis=0), *grid])


def _probabilities(features: np.ndarray, prototypes: dict[str, np.ndarray],
                   classification_type: str | None) -> dict[str, float]:
    ids = list(prototypes)
    d2 = np.array([float(np.mean((features - prototypes[t]) ** 2)) for t in ids])
    if classification_type == "Multiclass":
        logits = -d2 / _SOFTMAX_TEMPERATURE
        e = np.exp(logits - logits.max())
        p = e / e.sum()
    else:
        p = np.exp(-d2 / (2 * _SOFTMAX_TEMPERATURE))
    return {t: float(v) for t, v in zip(ids, p)}


def mean_average_precision(scores: list[float], positives: list[bool]) -> float:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits, total, acc = 0, sum(positives), 0.0
    if not total:
        return 0.0
    for rank, i in enumerate(order, start=1):
        if positives[i]:
            hits += 1
            acc += hits / rank
    return acc / total


def _parse_multipart(body: bytes, content_type: str) -> list[tuple[str | None, bytes]]:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise _ApiError("BadRequestImageStream", "Multipart body without a boundary.")
    delimiter = b"--" + match.group(1).encode("latin-1")
    parts: list[tuple[str | None, bytes]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
        head, _, payload = chunk.partition(b"\r\n\r\n")
        if payload.endswith(b"\r\n"):
            payload = payload[:-2]
        name = re.search(rb'name="([^"]*)"', head)
        parts.append((name.group(1).decode("utf-8", "replace") if name else None, payload))
    return parts


# --------------------------------------------------------------------------------------------------
# the fake


class FakeCustomVision:
    """A fake Custom Vision resource (training + prediction) listening on 127.0.0.1.

    Starts listening on construction; use as a context manager or call :meth:`stop`.
    All knobs are plain attributes and may be changed while it runs.
    """

    def __init__(self, training_key: str = "training-key", prediction_key: str = "prediction-key", *,
                 tier: str = "S0", training_delay: float = 0.2, port: int = 0,
                 prediction_resource_id: str | None = FAKE_PREDICTION_RESOURCE_ID):
        if tier not in TIER_LIMITS:
            raise ValueError(f"tier must be one of {sorted(TIER_LIMITS)}")
        self.training_key = training_key
        self.prediction_key = prediction_key
        self.tier = tier
        #: Quotas in force (copy of TIER_LIMITS[tier]); edit to tighten a test.
        self.limits: dict[str, int] = dict(TIER_LIMITS[tier])
        #: Seconds a training takes before its iteration leaves "Training".
        self.training_delay = training_delay
        #: When True, new iterations stay "Training" until :meth:`finish_training`.
        self.hold_training = False
        #: When True, trainings started from now on end with status "Failed".
        self.fail_training = False
        #: Seconds to sleep before answering every request.
        self.latency = 0.0
        #: ARM id that publish must name; None accepts any well-formed prediction resource id.
        self.prediction_resource_id = prediction_resource_id
        self.faults: list[FaultRule] = []
        self.lock = threading.RLock()
        self._requests: list[RecordedRequest] = []
        self.projects: dict[str, FakeProject] = {}
        self.created_projects: list[str] = []
        self.deleted_projects: list[str] = []
        self._connections: set[Any] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-customvision", daemon=True)
        self._thread.start()
        self._stopped = False

    # lifecycle ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the Endpoint to give both SDK clients."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def training_url(self) -> str:
        return self.endpoint + TRAINING_PREFIX

    @property
    def prediction_url(self) -> str:
        return self.endpoint + PREDICTION_PREFIX

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        with self.lock:  # keep-alive connections would otherwise go on answering
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeCustomVision:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget all projects, the request log and the faults; keep keys, limits and knobs."""
        with self.lock:
            self.projects.clear()
            self.created_projects.clear()
            self.deleted_projects.clear()
            self._requests.clear()
            self.faults.clear()

    # fault injection ------------------------------------------------------------------------------

    def inject(self, kind: str, *, every: int | None = None, count: int | None = None,
               match: str | None = None, retry_after: float | None = None) -> FaultRule:
        """Add a fault: ``"throttle"`` (429 + ``Retry-After``, default 1 s), ``"unavailable"`` (503,
        ``Retry-After`` only if given) or ``"drop"`` (read the request, close without answering)."""
        if kind not in ("throttle", "unavailable", "drop"):
            raise ValueError("kind must be 'throttle', 'unavailable' or 'drop'")
        if kind == "throttle" and retry_after is None:
            retry_after = 1
        rule = FaultRule(kind=kind, every=every, count=count, match=match, retry_after=retry_after)
        with self.lock:
            self.faults.append(rule)
        return rule

    def throttle(self, *, every: int | None = None, count: int | None = None, match: str | None = None,
                 retry_after: float = 1) -> FaultRule:
        return self.inject("throttle", every=every, count=count, match=match, retry_after=retry_after)

    def unavailable(self, *, every: int | None = None, count: int | None = None, match: str | None = None,
                    retry_after: float | None = None) -> FaultRule:
        return self.inject("unavailable", every=every, count=count, match=match, retry_after=retry_after)

    def drop_connections(self, *, every: int | None = None, count: int | None = None,
                         match: str | None = None) -> FaultRule:
        return self.inject("drop", every=every, count=count, match=match)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def finish_training(self, iteration_id: str | None = None, *, failed: bool = False) -> None:
        """End the given (or every) running training now, "Completed" or "Failed"."""
        with self.lock:
            for project in self.projects.values():
                for it in project.iterations.values():
                    if it.status == "Training" and iteration_id in (None, it.id):
                        it.will_fail = it.will_fail or failed
                        it.ready_at = 0.0
                        self._refresh(it, force=True)

    # introspection --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        with self.lock:
            return list(self._requests)

    def requests_for(self, operation: str | None = None, *, method: str | None = None,
                     path_contains: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests
                if (operation is None or r.operation == operation)
                and (method is None or r.method == method.upper())
                and (path_contains is None or path_contains in r.path)]

    def clear_requests(self) -> None:
        with self.lock:
            self._requests.clear()

    def image_count(self, project_id: str, tag_id: str | None = None) -> int:
        with self.lock:
            project = self.projects[_norm_id(project_id)]
            return sum(1 for im in project.images.values() if tag_id is None or _norm_id(tag_id) in im.tag_ids)

    @property
    def image_counts(self) -> dict[str, int]:
        with self.lock:
            return {pid: len(p.images) for pid, p in self.projects.items()}

    def tag_names(self, project_id: str) -> list[str]:
        with self.lock:
            return [t.name for t in self.projects[_norm_id(project_id)].tags.values()]

    def iterations(self, project_id: str) -> list[FakeIteration]:
        with self.lock:
            project = self.projects[_norm_id(project_id)]
            for it in project.iterations.values():
                self._refresh(it)
            return list(project.iterations.values())

    @property
    def published(self) -> dict[tuple[str, str], str]:
        """(project id, publish name) -> iteration id."""
        with self.lock:
            return {(p.id, it.publish_name): it.id for p in self.projects.values()
                    for it in p.iterations.values() if it.publish_name}

    # state machine --------------------------------------------------------------------------------

    def _refresh(self, it: FakeIteration, force: bool = False) -> None:
        if it.status != "Training":
            return
        if not force and (self.hold_training or time.monotonic() < it.ready_at):
            return
        stamp = _now()
        it.last_modified = stamp
        if it.will_fail:
            it.status = "Failed"
            it.error_details = "Training failed: the fake service was told to fail this training (fail_training)."
        else:
            it.status = "Completed"
            it.trained_at = stamp

    def _project(self, project_id: str) -> FakeProject:
        project = self.projects.get(_norm_id(project_id))
        if project is None:
            raise _ApiError("NotFoundProject", f"Project with id {project_id} was not found.")
        return project

    def _iteration(self, project: FakeProject, iteration_id: str) -> FakeIteration:
        it = project.iterations.get(_norm_id(iteration_id))
        if it is None:
            raise _ApiError("NotFoundIteration", f"Iteration with id {iteration_id} was not found.")
        self._refresh(it)
        return it

    def _record(self, record: RecordedRequest) -> None:
        with self.lock:
            self._requests.append(record)

    def _pick_fault(self, method: str, path: str, operation: str | None) -> FaultRule | None:
        with self.lock:
            for rule in self.faults:
                if rule.applies(method, path, operation):
                    return rule
        return None

    # JSON shapes ----------------------------------------------------------------------------------

    def _project_json(self, p: FakeProject) -> dict[str, Any]:
        return {
            "id": p.id, "name": p.name, "description": p.description,
            "settings": {
                "domainId": p.domain_id, "classificationType": p.classification_type,
                "targetExportPlatforms": list(p.target_export_platforms),
                "useNegativeSet": True, "detectionParameters": None, "imageProcessingSettings": None,
                "exportModelContainerUri": None, "notificationQueueUri": None,
            },
            "created": p.created, "lastModified": p.last_modified, "thumbnailUri": None,
            "drModeEnabled": False, "status": "Succeeded",
        }

    def _tag_json(self, p: FakeProject, t: FakeTag, iteration: FakeIteration | None = None) -> dict[str, Any]:
        if iteration is None:
            count = sum(1 for im in p.images.values() if t.id in im.tag_ids)
        else:
            count = sum(1 for tags in iteration.image_tags.values() if t.id in tags)
        return {"id": t.id, "name": t.name, "description": t.description, "type": t.type, "imageCount": count}

    def _image_json(self, p: FakeProject, im: FakeImage, with_tag_names: bool = True) -> dict[str, Any]:
        uri = f"{self.endpoint}{BLOB_PREFIX}/{p.id}/{im.id}"
        return {
            "id": im.id, "created": im.created, "width": im.width, "height": im.height,
            "resizedImageUri": uri, "thumbnailUri": uri + "?thumbnail=true", "originalImageUri": uri,
            "tags": [{"tagId": tid, "tagName": (p.tags[tid].name if with_tag_names and tid in p.tags else None),
                      "created": im.created} for tid in im.tag_ids],
            "regions": None, "metadata": im.metadata,
        }

    def _iteration_json(self, it: FakeIteration) -> dict[str, Any]:
        out = {
            "id": it.id, "name": it.name, "status": it.status, "created": it.created,
            "lastModified": it.last_modified, "trainedAt": it.trained_at, "projectId": it.project_id,
            "exportable": bool(it.exportable_to) and it.status == "Completed", "exportableTo": it.exportable_to,
            "domainId": it.domain_id, "classificationType": it.classification_type,
            "trainingType": it.training_type, "reservedBudgetInHours": it.reserved_budget_in_hours,
            "trainingTimeInMinutes": 1 if it.status != "Training" else 0,
            "publishName": it.publish_name, "originalPublishResourceId": it.publish_resource_id,
            "customBaseModelInfo": None, "trainingErrorDetails": it.error_details,
        }
        if it.trained_at is None:
            del out["trainedAt"]  # the real service leaves the key out until training ends
        return out

    def _prediction_json(self, p: FakeProject, it: FakeIteration, data: bytes, max_bytes: int) -> dict[str, Any]:
        if not data:
            raise _ApiError("BadRequestImageStream", "The request body holds no image.")
        if len(data) > max_bytes:
            raise _ApiError("BadRequestImageSizeBytes", f"Image size exceeds the limit of {max_bytes} bytes.")
        try:
            image, _ = _decode_image(data)
        except ValueError:
            raise _ApiError("BadRequestImageFormat", "Bad image format: JPEG, PNG, GIF or BMP expected.") from None
        probs = _probabilities(_features(image), it.prototypes, it.classification_type)
        preds = [{"probability": prob, "tagId": tid, "tagName": it.tag_names[tid], "tagType": "Regular"}
                 for tid, prob in probs.items()]
        preds.sort(key=lambda d: (-d["probability"], d["tagName"]))
        return {"id": str(uuid.uuid4()), "project": p.id, "iteration": it.id, "created": _now(),
                "predictions": preds}

    # image intake ---------------------------------------------------------------------------------

    def _add_images(self, p: FakeProject, entries: list[tuple[str | None, bytes | None, list[str]]],
                    metadata: dict[str, str] | None) -> tuple[int, dict[str, Any]]:
        """Create images; returns (HTTP status, ImageCreateSummary)."""
        results = []
        for name, data, tag_ids in entries:
            status, image = self._add_image(p, data, tag_ids, metadata)
            results.append({"sourceUrl": name, "status": status,
                            "image": None if image is None else self._image_json(p, image, with_tag_names=False)})
        ok = all(r["status"] == "OK" for r in results)
        if any(r["status"] == "OK" for r in results):
            p.last_modified = _now()
        return (200 if ok else 207), {"isBatchSuccessful": ok, "images": results}

    def _add_image(self, p: FakeProject, data: bytes | None, tag_ids: list[str],
                   metadata: dict[str, str] | None) -> tuple[str, FakeImage | None]:
        if not data:
            return "ErrorSource", None
        if len(data) > MAX_TRAINING_IMAGE_BYTES:
            return "ErrorImageSize", None
        try:
            image, _ = _decode_image(data)
        except ValueError:
            return "ErrorImageFormat", None
        if max(image.size) > MAX_IMAGE_SIDE:
            return "ErrorImageDimensions", None
        if any(t not in p.tags for t in tag_ids):
            return "ErrorInvalidTag", None
        types = {p.tags[t].type for t in tag_ids}
        if "Negative" in types and len(types) > 1:
            return "ErrorNegativeAndRegularTagOnSameImage", None
        digest = hashlib.sha256(data).hexdigest()
        if digest in p.images_by_hash:
            return "OKDuplicate", p.images[p.images_by_hash[digest]]
        if len(p.images) >= self.limits["images_per_project"]:
            return "ErrorLimitExceed", None
        record = FakeImage(id=str(uuid.uuid4()), sha256=digest, data=data, width=image.width, height=image.height,
                           created=_now(), tag_ids=list(dict.fromkeys(tag_ids)), metadata=metadata,
                           features=_features(image))
        p.images[record.id] = record
        p.images_by_hash[digest] = record.id
        return "OK", record

    # training -------------------------------------------------------------------------------------

    def _train(self, p: FakeProject, training_type: str, budget: int, force: bool,
               selected_tags: list[str] | None) -> FakeIteration:
        for it in p.iterations.values():
            self._refresh(it)
            if it.status == "Training":
                raise _ApiError("BadRequestTrainingAlreadyInProgress", "Training already in progress.")
        if training_type not in ("Regular", "Advanced"):
            raise _ApiError("BadRequest", f"Unknown trainingType '{training_type}'.")
        if training_type == "Advanced" and budget < 1:
            raise _ApiError("BadRequestReservedBudgetInHoursNotEnoughForAdvancedTraining",
                            "Advanced training needs a reserved budget of at least 1 hour.")
        if len(p.iterations) >= self.limits["iterations_per_project"]:
            raise _ApiError("BadRequestExceedIterationPerProjectLimit",
                            f"Iteration limit of {self.limits['iterations_per_project']} per project reached.")
        if selected_tags is not None:
            unknown = [t for t in selected_tags if t not in p.tags]
            if unknown:
                raise _ApiError("BadRequestInvalidIds", f"Unknown tag ids: {', '.join(unknown)}.")
        tag_ids = [t.id for t in p.tags.values() if t.type != "Negative"
                   and (selected_tags is None or t.id in selected_tags)]
        counts = {t: sum(1 for im in p.images.values() if t in im.tag_ids) for t in tag_ids}
        trained = [t for t in tag_ids if counts[t] > 0]
        minimum = self.limits["min_images_per_tag"]
        if p.classification_type == "Multiclass" and len(trained) < 2:
            raise _ApiError("BadRequestMultiClassClassificationTrainingValidationFailed",
                            "Not enough tags for training: a multiclass project needs at least 2 tags with images.")
        if not trained:
            raise _ApiError("BadRequestTrainingValidationFailed", "Not enough tags for training.")
        short = [p.tags[t].name for t in tag_ids if counts[t] < minimum]
        if short:
            raise _ApiError("BadRequestClassificationTrainingValidationFailed",
                            f"Not enough images for training: every tag needs at least {minimum} images "
                            f"(short: {', '.join(short)}).")
        image_tags = {im.id: [t for t in im.tag_ids if t in tag_ids] for im in p.images.values()}
        image_tags = {k: v for k, v in image_tags.items() if v}
        fingerprint = hashlib.sha256(json.dumps(
            [p.classification_type, sorted(tag_ids),
             sorted((p.images[i].sha256, sorted(v)) for i, v in image_tags.items())]).encode()).hexdigest()
        previous = [it for it in p.iterations.values() if it.status != "Failed"]
        if not force and previous and previous[-1].fingerprint == fingerprint:
            raise _ApiError("BadRequestTrainingNotNeeded", "Nothing changed since last training.")

        prototypes = {t: np.mean([p.images[i].features for i, v in image_tags.items() if t in v], axis=0)
                      for t in tag_ids}
        loo = []
        for image_id, tags in image_tags.items():
            x = p.images[image_id].features
            protos = dict(prototypes)
            for t in tags:
                n = counts[t]
                if n > 1:
                    protos[t] = (prototypes[t] * n - x) / (n - 1)
            loo.append((tags, _probabilities(x, protos, p.classification_type)))

        domain = _DOMAINS_BY_ID.get(p.domain_id, {})
        exportable_to = [x for x in p.target_export_platforms if x in domain.get("exportablePlatforms", [])]
        if domain.get("exportable") and not exportable_to:
            exportable_to = list(domain["exportablePlatforms"])
        p.iteration_counter += 1
        stamp = _now()
        it = FakeIteration(
            id=str(uuid.uuid4()), name=f"Iteration {p.iteration_counter}", project_id=p.id, status="Training",
            created=stamp, last_modified=stamp, trained_at=None, domain_id=p.domain_id,
            classification_type=p.classification_type, training_type=training_type,
            reserved_budget_in_hours=budget, exportable_to=exportable_to, tag_ids=tag_ids,
            tag_names={t: p.tags[t].name for t in tag_ids}, image_tags=image_tags, fingerprint=fingerprint,
            will_fail=self.fail_training, ready_at=time.monotonic() + self.training_delay,
            prototypes=prototypes, loo_probabilities=loo)
        p.iterations[it.id] = it
        return it

    def _performance(self, it: FakeIteration, threshold: float) -> dict[str, Any]:
        per_tag, tp_all, fp_all, fn_all, aps = [], 0, 0, 0, []
        for t in it.tag_ids:
            scores = [probs[t] for _, probs in it.loo_probabilities]
            truth = [t in tags for tags, _ in it.loo_probabilities]
            tp = sum(1 for s, y in zip(scores, truth) if s >= threshold and y)
            fp = sum(1 for s, y in zip(scores, truth) if s >= threshold and not y)
            fn = sum(1 for s, y in zip(scores, truth) if s < threshold and y)
            ap = mean_average_precision(scores, truth)
            tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
            aps.append(ap)
            per_tag.append({"id": t, "name": it.tag_names[t],
                            "precision": tp / (tp + fp) if tp + fp else 0.0, "precisionStdDeviation": 0.0,
                            "recall": tp / (tp + fn) if tp + fn else 0.0, "recallStdDeviation": 0.0,
                            "averagePrecision": ap})
        return {"perTagPerformance": per_tag,
                "precision": tp_all / (tp_all + fp_all) if tp_all + fp_all else 0.0, "precisionStdDeviation": 0.0,
                "recall": tp_all / (tp_all + fn_all) if tp_all + fn_all else 0.0, "recallStdDeviation": 0.0,
                "averagePrecision": float(np.mean(aps)) if aps else 0.0}


# --------------------------------------------------------------------------------------------------
# routing

_ID = r"(?P<{}>[^/]+)"
_TRAINING_ROUTES: list[tuple[str, str, str]] = [
    ("GET", r"/domains", "GetDomains"),
    ("GET", r"/domains/{domainId}", "GetDomain"),
    ("GET", r"/projects", "GetProjects"),
    ("POST", r"/projects", "CreateProject"),
    ("POST", r"/projects/import", "ImportProject"),
    ("GET", r"/projects/{projectId}", "GetProject"),
    ("DELETE", r"/projects/{projectId}", "DeleteProject"),
    ("PATCH", r"/projects/{projectId}", "UpdateProject"),
    ("GET", r"/projects/{projectId}/artifacts", "GetArtifact"),
    ("GET", r"/projects/{projectId}/export", "ExportProject"),
    ("GET", r"/projects/{projectId}/images", "GetImages"),
    ("POST", r"/projects/{projectId}/images", "CreateImagesFromData"),
    ("DELETE", r"/projects/{projectId}/images", "DeleteImages"),
    ("GET", r"/projects/{projectId}/images/count", "GetImageCount"),
    ("POST", r"/projects/{projectId}/images/files", "CreateImagesFromFiles"),
    ("GET", r"/projects/{projectId}/images/id", "GetImagesByIds"),
    ("POST", r"/projects/{projectId}/images/metadata", "UpdateImageMetadata"),
    ("POST", r"/projects/{projectId}/images/predictions", "CreateImagesFromPredictions"),
    ("POST", r"/projects/{projectId}/images/regions", "CreateImageRegions"),
    ("DELETE", r"/projects/{projectId}/images/regions", "DeleteImageRegions"),
    ("POST", r"/projects/{projectId}/images/suggested", "QuerySuggestedImages"),
    ("POST", r"/projects/{projectId}/images/suggested/count", "QuerySuggestedImageCount"),
    ("GET", r"/projects/{projectId}/images/tagged", "GetTaggedImages"),
    ("GET", r"/projects/{projectId}/images/tagged/count", "GetTaggedImageCount"),
    ("POST", r"/projects/{projectId}/images/tags", "CreateImageTags"),
    ("DELETE", r"/projects/{projectId}/images/tags", "DeleteImageTags"),
    ("GET", r"/projects/{projectId}/images/untagged", "GetUntaggedImages"),
    ("GET", r"/projects/{projectId}/images/untagged/count", "GetUntaggedImageCount"),
    ("POST", r"/projects/{projectId}/images/urls", "CreateImagesFromUrls"),
    ("POST", r"/projects/{projectId}/images/{imageId}/regionproposals", "GetImageRegionProposals"),
    ("GET", r"/projects/{projectId}/iterations", "GetIterations"),
    ("GET", r"/projects/{projectId}/iterations/{iterationId}", "GetIteration"),
    ("DELETE", r"/projects/{projectId}/iterations/{iterationId}", "DeleteIteration"),
    ("PATCH", r"/projects/{projectId}/iterations/{iterationId}", "UpdateIteration"),
    ("GET", r"/projects/{projectId}/iterations/{iterationId}/export", "GetExports"),
    ("POST", r"/projects/{projectId}/iterations/{iterationId}/export", "ExportIteration"),
    ("GET", r"/projects/{projectId}/iterations/{iterationId}/performance", "GetIterationPerformance"),
    ("GET", r"/projects/{projectId}/iterations/{iterationId}/performance/images", "GetImagePerformances"),
    ("GET", r"/projects/{projectId}/iterations/{iterationId}/performance/images/count",
     "GetImagePerformanceCount"),
    ("POST", r"/projects/{projectId}/iterations/{iterationId}/publish", "PublishIteration"),
    ("DELETE", r"/projects/{projectId}/iterations/{iterationId}/publish", "UnpublishIteration"),
    ("DELETE", r"/projects/{projectId}/predictions", "DeletePrediction"),
    ("POST", r"/projects/{projectId}/predictions/query", "QueryPredictions"),
    ("POST", r"/projects/{projectId}/quicktest/image", "QuickTestImage"),
    ("POST", r"/projects/{projectId}/quicktest/url", "QuickTestImageUrl"),
    ("GET", r"/projects/{projectId}/tags", "GetTags"),
    ("POST", r"/projects/{projectId}/tags", "CreateTag"),
    ("GET", r"/projects/{projectId}/tags/{tagId}", "GetTag"),
    ("DELETE", r"/projects/{projectId}/tags/{tagId}", "DeleteTag"),
    ("PATCH", r"/projects/{projectId}/tags/{tagId}", "UpdateTag"),
    ("POST", r"/projects/{projectId}/tagsandregions/suggestions", "SuggestTagsAndRegions"),
    ("POST", r"/projects/{projectId}/train", "TrainProject"),
]
_PREDICTION_ROUTES: list[tuple[str, str, str]] = [
    ("POST", r"/{projectId}/classify/iterations/{publishedName}/image", "ClassifyImage"),
    ("POST", r"/{projectId}/classify/iterations/{publishedName}/image/nostore", "ClassifyImageWithNoStore"),
    ("POST", r"/{projectId}/classify/iterations/{publishedName}/url", "ClassifyImageUrl"),
    ("POST", r"/{projectId}/classify/iterations/{publishedName}/url/nostore", "ClassifyImageUrlWithNoStore"),
    ("POST", r"/{projectId}/detect/iterations/{publishedName}/image", "DetectImage"),
    ("POST", r"/{projectId}/detect/iterations/{publishedName}/image/nostore", "DetectImageWithNoStore"),
    ("POST", r"/{projectId}/detect/iterations/{publishedName}/url", "DetectImageUrl"),
    ("POST", r"/{projectId}/detect/iterations/{publishedName}/url/nostore", "DetectImageUrlWithNoStore"),
]


def _compile(routes: list[tuple[str, str, str]]) -> list[tuple[str, re.Pattern[str], str]]:
    out = []
    for method, template, op in routes:
        pattern = re.sub(r"\{(\w+)\}", lambda m: _ID.format(m.group(1)), template)
        out.append((method, re.compile(f"^{pattern}/?$"), op))
    return out


_COMPILED = {"training": _compile(_TRAINING_ROUTES), "prediction": _compile(_PREDICTION_ROUTES)}


def _resolve(method: str, path: str) -> tuple[str | None, str | None, dict[str, str], bool]:
    """-> (api, operationId, path params, method_allowed)."""
    for api, prefix in (("training", TRAINING_PREFIX), ("prediction", PREDICTION_PREFIX)):
        if path == prefix or path.startswith(prefix + "/"):
            rest = path[len(prefix):] or "/"
            path_known = False
            for m, pattern, op in _COMPILED[api]:
                match = pattern.match(rest)
                if match:
                    path_known = True
                    if m == method:
                        return api, op, {k: unquote(v) for k, v in match.groupdict().items()}, True
            return api, None, {}, not path_known
    return None, None, {}, True


@dataclass
class _Call:
    method: str
    path: str
    op: str
    params: dict[str, str]
    query: dict[str, str]           # lower-cased keys (ASP.NET binds query names case-insensitively)
    headers: Any
    body: bytes

    def q(self, name: str) -> str | None:
        return self.query.get(name.lower())

    def required(self, name: str) -> str:
        value = self.q(name)
        if value is None or value == "":
            raise _ApiError("BadRequestRequiredParamIsNull", f"The parameter '{name}' is required.")
        return value

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise _ApiError("BadRequest", "The request body is not valid JSON.") from None

    def image_bytes(self) -> list[tuple[str | None, bytes]]:
        ctype = self.headers.get("Content-Type", "") or ""
        if ctype.lower().startswith("multipart/form-data"):
            return _parse_multipart(self.body, ctype)
        return [(None, self.body)]


class _Ops:
    """Operation handlers: each returns (status, JSON-able body or None); raises _ApiError."""

    def __init__(self, fake: FakeCustomVision):
        self.fake = fake

    # domains / projects

    def GetDomains(self, c: _Call):
        return 200, DOMAINS

    def GetDomain(self, c: _Call):
        domain = _DOMAINS_BY_ID.get(_norm_id(c.params["domainId"]))
        if domain is None:
            raise _ApiError("NotFoundDomain", f"Domain {c.params['domainId']} was not found.")
        return 200, domain

    def GetProjects(self, c: _Call):
        return 200, [self.fake._project_json(p) for p in self.fake.projects.values()]

    def CreateProject(self, c: _Call):
        fake = self.fake
        name = c.required("name")
        if not name.strip():
            raise _ApiError("BadRequestProjectName", "Project name is empty.")
        domain_id = _norm_id(c.q("domainId") or GENERAL_DOMAIN_ID)
        domain = _DOMAINS_BY_ID.get(domain_id)
        if domain is None:
            raise _ApiError("BadRequestProjectUnknownDomain", f"Unknown domain {domain_id}.")
        classification = c.q("classificationType")
        if domain["type"] == "Classification":
            classification = classification or "Multilabel"
            if classification not in ("Multiclass", "Multilabel"):
                raise _ApiError("BadRequestProjectUnknownClassification",
                                f"Unknown classification type '{classification}'.")
        else:
            classification = None
        platforms = [x for x in (c.q("targetExportPlatforms") or "").split(",") if x]
        bad = [x for x in platforms if x not in domain["exportablePlatforms"]]
        if bad:
            raise _ApiError("BadRequestProjectUnsupportedExportPlatform",
                            f"Domain '{domain['name']}' cannot export to {', '.join(bad)}.")
        c.json()  # CreateProjectOptions: accepted, not used
        if len(fake.projects) >= fake.limits["projects"]:
            raise _ApiError("BadRequestExceedProjectLimit",
                            f"Project limit of {fake.limits['projects']} reached for tier {fake.tier}.")
        stamp = _now()
        project = FakeProject(id=str(uuid.uuid4()), name=name, description=c.q("description"),
                              domain_id=domain_id, classification_type=classification,
                              target_export_platforms=platforms, created=stamp, last_modified=stamp)
        fake.projects[project.id] = project
        fake.created_projects.append(project.id)
        return 200, fake._project_json(project)

    def GetProject(self, c: _Call):
        return 200, self.fake._project_json(self.fake._project(c.params["projectId"]))

    def DeleteProject(self, c: _Call):
        fake = self.fake
        project = fake._project(c.params["projectId"])
        if any(it.publish_name for it in project.iterations.values()):
            raise _ApiError("BadRequestIterationIsPublished",
                            "The project has published iterations; unpublish them before deleting the project.")
        del fake.projects[project.id]
        fake.deleted_projects.append(project.id)
        return 204, None

    # tags

    def GetTags(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        it = self.fake._iteration(p, c.q("iterationId")) if c.q("iterationId") else None
        tags = [p.tags[t] for t in it.tag_ids if t in p.tags] if it else list(p.tags.values())
        return 200, [self.fake._tag_json(p, t, it) for t in tags]

    def GetTag(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        tag = p.tags.get(_norm_id(c.params["tagId"]))
        if tag is None:
            raise _ApiError("NotFoundTag", f"Tag {c.params['tagId']} was not found.")
        it = self.fake._iteration(p, c.q("iterationId")) if c.q("iterationId") else None
        return 200, self.fake._tag_json(p, tag, it)

    def CreateTag(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        name = c.required("name").strip()
        if not name:
            raise _ApiError("BadRequestTagName", "Tag name is empty.")
        tag_type = c.q("type") or "Regular"
        if tag_type not in ("Regular", "Negative", "GeneralProduct"):
            raise _ApiError("BadRequestTagType", f"Unknown tag type '{tag_type}'.")
        if any(t.name.lower() == name.lower() for t in p.tags.values()):
            raise _ApiError("BadRequestTagNameNotUnique", f"A tag named '{name}' already exists.")
        if tag_type == "Negative" and any(t.type == "Negative" for t in p.tags.values()):
            raise _ApiError("BadRequestMultipleNegativeTag", "A project can have only one negative tag.")
        if len(p.tags) >= self.fake.limits["tags_per_project"]:
            raise _ApiError("BadRequestExceedTagPerProjectLimit",
                            f"Tag limit of {self.fake.limits['tags_per_project']} per project reached.")
        tag = FakeTag(id=str(uuid.uuid4()), name=name, description=c.q("description"), type=tag_type,
                      created=_now())
        p.tags[tag.id] = tag
        p.last_modified = _now()
        return 200, self.fake._tag_json(p, tag)

    def DeleteTag(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        tag_id = _norm_id(c.params["tagId"])
        if tag_id not in p.tags:
            raise _ApiError("NotFoundTag", f"Tag {c.params['tagId']} was not found.")
        del p.tags[tag_id]
        for im in p.images.values():
            if tag_id in im.tag_ids:
                im.tag_ids.remove(tag_id)
        return 204, None

    # images

    def CreateImagesFromFiles(self, c: _Call):
        fake = self.fake
        p = fake._project(c.params["projectId"])
        batch = c.json()
        if not isinstance(batch, dict):
            raise _ApiError("BadRequestImageBatch", "The body must be an ImageFileCreateBatch.")
        images = batch.get("images") or []
        if not images:
            raise _ApiError("BadRequestImageBatch", "The batch holds no images.")
        if len(images) > fake.limits["images_per_batch"]:
            raise _ApiError("BadRequestImageBatch",
                            f"Too many images in the batch: {len(images)}; at most "
                            f"{fake.limits['images_per_batch']} are allowed.")
        batch_tags = [_norm_id(t) for t in batch.get("tagIds") or []]
        if len(batch_tags) > fake.limits["tags_per_batch"]:
            raise _ApiError("BadRequestExceedTagPerImageLimit",
                            f"At most {fake.limits['tags_per_batch']} tags per batch are allowed.")
        entries = []
        for entry in images:
            try:
                data = base64.b64decode(entry.get("contents") or "", validate=True)
            except (binascii.Error, ValueError):
                data = None
            tags = batch_tags + [_norm_id(t) for t in entry.get("tagIds") or []]
            entries.append((entry.get("name"), data, list(dict.fromkeys(tags))))
        return fake._add_images(p, entries, batch.get("metadata"))

    def CreateImagesFromData(self, c: _Call):
        fake = self.fake
        p = fake._project(c.params["projectId"])
        files = c.image_bytes()
        if len(files) > fake.limits["images_per_batch"]:
            raise _ApiError("BadRequestImageBatch", f"At most {fake.limits['images_per_batch']} images per batch.")
        tags = _csv_ids(c.q("tagIds"))
        if len(tags) > fake.limits["tags_per_batch"]:
            raise _ApiError("BadRequestExceedTagPerImageLimit", "At most 20 tags per batch are allowed.")
        return fake._add_images(p, [(name, data, tags) for name, data in files], None)

    def _select_images(self, c: _Call, status_filter: str | None) -> tuple[FakeProject, list[FakeImage]]:
        p = self.fake._project(c.params["projectId"])
        if c.q("iterationId"):
            it = self.fake._iteration(p, c.q("iterationId"))
            images = [p.images[i] for i in it.image_tags if i in p.images]
        else:
            images = list(p.images.values())
        tag_filter = set(_csv_ids(c.q("tagIds")))
        status = status_filter or c.q("taggingStatus") or "All"
        if status == "Tagged":
            images = [im for im in images if im.tag_ids]
        elif status == "Untagged":
            images = [im for im in images if not im.tag_ids]
        if tag_filter:
            images = [im for im in images if tag_filter & set(im.tag_ids)]
        return p, images

    def _list_images(self, c: _Call, status: str | None):
        p, images = self._select_images(c, status)
        images.sort(key=lambda im: im.created, reverse=(c.q("orderBy") or "Newest") != "Oldest")
        skip = int(c.q("skip") or 0)
        take = int(c.q("take") or 50)
        return 200, [self.fake._image_json(p, im) for im in images[skip:skip + take]]

    def GetImages(self, c: _Call):
        return self._list_images(c, None)

    def GetTaggedImages(self, c: _Call):
        return self._list_images(c, "Tagged")

    def GetUntaggedImages(self, c: _Call):
        return self._list_images(c, "Untagged")

    def GetImageCount(self, c: _Call):
        return 200, len(self._select_images(c, None)[1])

    def GetTaggedImageCount(self, c: _Call):
        return 200, len(self._select_images(c, "Tagged")[1])

    def GetUntaggedImageCount(self, c: _Call):
        return 200, len(self._select_images(c, "Untagged")[1])

    def DeleteImages(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        if _parse_bool(c.q("allImages")):
            ids = list(p.images)
        else:
            ids = _csv_ids(c.q("imageIds"))
            if len(ids) > 256:
                raise _ApiError("BadRequestExceededBatchSize", "At most 256 image ids per call.")
        for image_id in ids:
            image = p.images.pop(image_id, None)
            if image is not None:
                p.images_by_hash.pop(image.sha256, None)
        return 204, None

    # iterations

    def GetIterations(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        for it in p.iterations.values():
            self.fake._refresh(it)
        return 200, [self.fake._iteration_json(it) for it in p.iterations.values()]

    def GetIteration(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        return 200, self.fake._iteration_json(self.fake._iteration(p, c.params["iterationId"]))

    def UpdateIteration(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        it = self.fake._iteration(p, c.params["iterationId"])
        body = c.json() or {}
        name = (body.get("name") or "").strip()
        if not name:
            raise _ApiError("BadRequestIterationName", "Iteration name is empty.")
        if any(o.name == name and o.id != it.id for o in p.iterations.values()):
            raise _ApiError("BadRequestIterationNameNotUnique", f"An iteration named '{name}' already exists.")
        it.name, it.last_modified = name, _now()
        return 200, self.fake._iteration_json(it)

    def DeleteIteration(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        it = self.fake._iteration(p, c.params["iterationId"])
        if it.publish_name:
            raise _ApiError("BadRequestIterationIsPublished", "Unpublish the iteration before deleting it.")
        del p.iterations[it.id]
        return 204, None

    def TrainProject(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        training_type = c.q("trainingType") or "Regular"
        try:
            budget = int(c.q("reservedBudgetInHours") or 0)
        except ValueError:
            raise _ApiError("BadRequest", "reservedBudgetInHours must be an integer.") from None
        force = _parse_bool(c.q("forceTrain"))
        email = c.q("notificationEmailAddress")
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise _ApiError("BadRequestInvalidEmailAddress", f"Invalid email address '{email}'.")
        params = c.json() or {}
        selected = params.get("selectedTags")
        selected = [_norm_id(t) for t in selected] if selected else None
        it = self.fake._train(p, training_type, budget, force, selected)
        return 200, self.fake._iteration_json(it)

    def GetIterationPerformance(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        it = self.fake._iteration(p, c.params["iterationId"])
        if it.status != "Completed":
            raise _ApiError("BadRequestIterationIsNotTrained", f"Iteration {it.id} is not trained ({it.status}).")
        try:
            threshold = float(c.q("threshold") or 0.5)
        except ValueError:
            raise _ApiError("BadRequest", "threshold must be a number.") from None
        return 200, self.fake._performance(it, threshold)

    def PublishIteration(self, c: _Call):
        fake = self.fake
        p = fake._project(c.params["projectId"])
        it = fake._iteration(p, c.params["iterationId"])
        name = c.required("publishName")
        target = c.required("predictionId")
        overwrite = _parse_bool(c.q("overwrite"))
        if it.status != "Completed":
            raise _ApiError("BadRequestIterationIsNotTrained", f"Iteration {it.id} is not trained ({it.status}).")
        well_formed = re.fullmatch(r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                   r"Microsoft\.CognitiveServices/accounts/[^/]+", target, re.IGNORECASE)
        if not well_formed or (fake.prediction_resource_id is not None
                               and target.lower() != fake.prediction_resource_id.lower()):
            raise _ApiError("BadRequestInvalidPublishTarget", f"Invalid prediction resource id '{target}'.")
        if not re.fullmatch(r"[A-Za-z0-9 _.\-]{1,256}", name):
            raise _ApiError("BadRequestInvalidPublishName", f"Invalid publish name '{name}'.")
        if it.publish_name:
            raise _ApiError("BadRequestIterationIsPublished", f"Iteration {it.id} is already published.")
        holder = next((o for o in p.iterations.values() if o.publish_name == name), None)
        if holder is not None:
            if not overwrite:
                raise _ApiError("BadRequestInvalidPublishName",
                                f"The publish name '{name}' is already used by iteration {holder.id}.")
            holder.publish_name = holder.publish_resource_id = None
        it.publish_name, it.publish_resource_id, it.last_modified = name, target, _now()
        return 200, True

    def UnpublishIteration(self, c: _Call):
        p = self.fake._project(c.params["projectId"])
        it = self.fake._iteration(p, c.params["iterationId"])
        if not it.publish_name:
            raise _ApiError("BadRequestIterationNotPublished", f"Iteration {it.id} is not published.")
        it.publish_name = None  # originalPublishResourceId stays, as its name says
        it.last_modified = _now()
        return 204, None

    def QuickTestImage(self, c: _Call):
        fake = self.fake
        p = fake._project(c.params["projectId"])
        if c.q("iterationId"):
            it = fake._iteration(p, c.q("iterationId"))
            if it.status != "Completed":
                raise _ApiError("BadRequestIterationIsNotTrained", f"Iteration {it.id} is not trained.")
        else:
            for o in p.iterations.values():
                fake._refresh(o)
            done = [o for o in p.iterations.values() if o.status == "Completed"]
            if not done:
                raise _ApiError("NotFoundProjectDefaultIteration", "The project has no trained iteration.")
            it = done[-1]
        files = c.image_bytes()
        result = fake._prediction_json(p, it, files[0][1] if files else b"", MAX_TRAINING_IMAGE_BYTES)
        if _parse_bool(c.q("store"), default=True):
            p.stored_predictions += 1
        return 200, result

    # prediction

    def _classify(self, c: _Call, store: bool):
        fake = self.fake
        p = fake.projects.get(_norm_id(c.params["projectId"]))
        if p is None:
            raise _ApiError("NotFound", "Invalid project.", status=404)
        name = c.params["publishedName"]
        it = next((o for o in p.iterations.values() if o.publish_name == name), None)
        if it is None:
            raise _ApiError("NotFound", "Invalid iteration.", status=404)
        files = c.image_bytes()
        result = fake._prediction_json(p, it, files[0][1] if files else b"", MAX_PREDICTION_IMAGE_BYTES)
        if store:
            p.stored_predictions += 1
        return 200, result

    def ClassifyImage(self, c: _Call):
        return self._classify(c, store=True)

    def ClassifyImageWithNoStore(self, c: _Call):
        return self._classify(c, store=False)


def _make_handler(fake: FakeCustomVision) -> type[BaseHTTPRequestHandler]:
    ops = _Ops(fake)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeCustomVision/1.0"
        timeout = 30

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
            pass

        def setup(self) -> None:
            super().setup()
            with fake.lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake.lock:
                fake._connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def _read_body(self) -> bytes:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            method = self.command
            split = urlsplit(self.path)
            path = "/" + split.path.lstrip("/")
            raw_query = dict(parse_qsl(split.query, keep_blank_values=True))
            body = self._read_body()
            api, op, params, method_allowed = _resolve(method, path)
            if fake.latency:
                time.sleep(fake.latency)

            status: int | None = None
            payload: Any = None
            extra: dict[str, str] = {}
            error_code: str | None = None
            image_count: int | None = None
            fault = fake._pick_fault(method, path, op)

            if fault is not None and fault.kind == "drop":
                self._log(method, path, raw_query, body, None, api, op, None, "drop", None)
                self.close_connection = True
                return
            if fault is not None:
                retry = fault.retry_after
                if retry is not None:
                    extra["Retry-After"] = str(int(retry) if float(retry).is_integer() else retry)
                if fault.kind == "throttle":
                    status, error_code = 429, "429"
                    payload = {"error": {"code": "429", "message": (
                        f"Rate limit is exceeded. Try again in {extra['Retry-After']} seconds.")}}
                else:
                    status = 503
                    error_code = "ErrorPredictionServiceUnavailable" if api == "prediction" else "ErrorUnknown"
                    payload = {"code": error_code, "message": "The service is temporarily unavailable."}
            elif path.startswith(BLOB_PREFIX + "/"):
                status, payload = self._blob(path)
                if status == 200:
                    self._log(method, path, raw_query, body, 200, None, None, None, None, None)
                    self._send_bytes(200, payload, "image/octet-stream")
                    return
            elif api is None:
                status, error_code = 404, "404"
                payload = {"error": {"code": "404", "message": "Resource not found"}}
            elif not self._authorized(api):
                status, error_code = 401, "401"
                key_header = "Training-Key" if api == "training" else "Prediction-Key"
                message = _GATEWAY_401_INVALID if self.headers.get(key_header) else _GATEWAY_401_MISSING
                payload = {"error": {"code": "401", "message": message}}
            elif op is None:
                status = 404 if method_allowed else 405
                error_code = "NotFound"
                payload = {"code": "NotFound", "message": f"No operation for {method} {path}."}
            elif not hasattr(ops, op):
                status, error_code = 501, "BadRequestNotSupported"
                payload = {"code": error_code, "message": f"{op} is not implemented by the fake Custom Vision server."}
            else:
                call = _Call(method=method, path=path, op=op, params=params,
                             query={k.lower(): v for k, v in raw_query.items()}, headers=self.headers, body=body)
                try:
                    with fake.lock:
                        if op == "CreateImagesFromFiles":
                            try:
                                image_count = len((json.loads(body) or {}).get("images") or [])
                            except (ValueError, AttributeError):
                                image_count = None
                        elif op == "CreateImagesFromData":
                            image_count = len(call.image_bytes())
                        status, payload = getattr(ops, op)(call)
                except _ApiError as err:
                    status, error_code = err.status, err.code
                    payload = {"code": err.code, "message": err.message}
                except Exception as err:  # noqa: BLE001 - a fake bug must still answer like the service
                    status, error_code = 500, "ErrorUnknown"
                    payload = {"code": "ErrorUnknown", "message": f"{type(err).__name__}: {err}"}

            self._log(method, path, raw_query, body, status, api, op, image_count,
                      fault.kind if fault else None, error_code)
            self._send_json(status, payload, extra)

        def _authorized(self, api: str) -> bool:
            header, key = (("Training-Key", fake.training_key) if api == "training"
                           else ("Prediction-Key", fake.prediction_key))
            sent = self.headers.get(header)
            return sent is not None and hmac.compare_digest(sent.encode(), key.encode())

        def _blob(self, path: str) -> tuple[int, Any]:
            parts = path[len(BLOB_PREFIX) + 1:].split("/")
            with fake.lock:
                p = fake.projects.get(parts[0]) if parts else None
                im = p.images.get(parts[1]) if p is not None and len(parts) > 1 else None
            if im is None:
                return 404, {"error": {"code": "BlobNotFound", "message": "The specified blob does not exist."}}
            return 200, im.data

        def _log(self, method, path, query, body, status, api, op, image_count, fault_kind, error_code) -> None:
            fake._record(RecordedRequest(
                method=method, path=path, query=dict(query), headers=dict(self.headers.items()),
                body_size=len(body), status=status, api=api, operation=op, image_count=image_count,
                fault=fault_kind, error_code=error_code, timestamp=time.time()))

        def _send_json(self, status: int, payload: Any, extra: dict[str, str]) -> None:
            data = b"" if status == 204 or payload is None else json.dumps(payload, separators=(",", ":")).encode()
            request_id = str(uuid.uuid4())
            self.send_response(status, _REASONS.get(status) or HTTPStatus(status).phrase)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", request_id)
            self.send_header("apim-request-id", request_id)
            self.send_header("X-Content-Type-Options", "nosniff")
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)

        def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = do_HEAD = _handle

    return Handler


__all__ = [
    "DOMAINS", "FAKE_PREDICTION_RESOURCE_ID", "GENERAL_DOMAIN_ID", "PREDICTION_PREFIX", "TIER_LIMITS",
    "TRAINING_PREFIX", "FakeCustomVision", "FakeImage", "FakeIteration", "FakeProject", "FakeTag", "FaultRule",
    "RecordedRequest",
]
