"""The Azure Custom Vision backend, through the official SDK (``azure-cognitiveservices-vision-customvision``
3.1.1: Training API 3.4-preview, Prediction API 3.1).

How a sweep maps to Azure. The slices of one *series* — same name, size, fit, resample, real fraction,
repeat, seed and tags; only the count differs, so they nest (10 ⊂ 30 ⊂ …) — share **one project** and
get **one iteration per count**: training a count uploads only the images the project does not hold
yet, then trains. A 6-count sweep is 6 iterations in 1 project (the free tier allows 2 projects).
``layout="plain"`` gives each slice its own project instead.

Resumable. Every id Azure hands out is written to the store the moment it arrives (migration 4:
``azure_projects``, ``azure_tags``, ``azure_images``, ``azure_iterations``); a project's name is chosen
and recorded *before* it is created, and an iteration is marked "requested" before training starts,
so a run killed at any point continues with the same project, without duplicate images (Azure answers
``OKDuplicate`` for bytes it already holds, and our encoding is deterministic) and without a second
project or iteration.

Robust. The SDK does not retry POSTs and retries GETs only a little; every call here goes through
:class:`~core.train.backends.azure_api.AzureApi`, which retries 429, 5xx and dropped connections with
exponential back-off honouring ``Retry-After``, bounded in total time, behind a client-side rate limit
(the free tier allows about 2 requests/s). Creations that may have reached the service before a
connection dropped are looked up before they are retried.

Secret. Keys are read from settings at call time and never leave memory: every message this module
raises is passed through :func:`core.train.backends.azure_settings.scrub`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Optional

from azure.cognitiveservices.vision.customvision.training.models import ImageFileCreateBatch, ImageFileCreateEntry
from PIL import Image

from core.errors import BackendError, InvalidInput, NotFound, UserError
from core.store.database import Store, png_bytes
from core.store.records import now
from core.train.backends import azure_settings as az
from core.train.backends.azure_api import AzureApi, AzureRequestError, fingerprint
from core.train.backends.azure_settings import AzureSettings, QuotaPlan, load_settings, quota_plan, scrub
from core.train.backends.base import Progress

log = logging.getLogger("synthlab.azure")

LAYOUTS = ("nested", "plain")
JPEG_QUALITIES = (95, 90, 85, 80, 70, 60, 50, 40)
MAX_BATCH_BYTES = 48 * 1024 * 1024   # raw bytes per upload call (the JSON body is base64, a third larger)
DELETE_CHUNK = 256


class TrainingFailed(BackendError):
    """An iteration ended "Failed" (or never finished in time)."""


# -- settings, connection --------------------------------------------------------------------------

def check_connection(settings: Optional[AzureSettings] = None, *, retry_seconds: float = 10.0) -> dict:
    """List the domains with the training key (and, when configured, try the prediction key).

    Returns ``{"ok": True, "message", "domains", "projects", "prediction"}``; raises
    :class:`MissingSetting` naming a missing variable, :class:`AzureAuthError` for a refused key,
    :class:`AzureUnreachable` for an endpoint that does not answer.
    """
    settings = settings or load_settings()
    api = AzureApi(settings, retry_seconds=retry_seconds)
    domains = api.training("listing domains", "get_domains")
    projects = api.training("listing projects", "get_projects")
    prediction = "not configured: probabilities come from quick tests of the trained iteration"
    if settings.prediction_endpoint and settings.prediction_key:
        try:  # an unknown project: a valid key gets 404 (any refusal but 401/403 means the key passed)
            api.prediction("checking the prediction key", "classify_image_with_no_store",
                           "00000000-0000-0000-0000-000000000000", "synthlab-check", _tiny_png())
        except AzureRequestError:
            pass
        prediction = ("ok: runs are published to the prediction resource and classified there"
                      if settings.can_publish else
                      "key ok, but VISION_PREDICTION_RESOURCE_ID is not set: quick tests are used")
    return {"ok": True, "endpoint": settings.training_endpoint,
            "message": f"connected to {settings.training_endpoint}: {len(projects)} project(s) on the resource",
            "domains": len(domains), "projects": len(projects), "prediction": prediction}


_status_cache: dict[tuple, tuple[float, dict]] = {}


def connection_status(max_age: float = 0.0) -> dict:
    """:func:`check_connection` as data for a page — ``{"ok": False, "message"}`` instead of raising —
    reused for ``max_age`` seconds while the settings stay the same (pages rerun on every click)."""
    try:
        settings = load_settings()
    except UserError as exc:
        return {"ok": False, "configured": False, "message": str(exc), "settings": _masked_settings()}
    key = (settings.training_endpoint, fingerprint(settings.training_key), settings.prediction_endpoint,
           fingerprint(settings.prediction_key or ""), settings.prediction_resource_id)
    cached = _status_cache.get(key)
    if cached and time.monotonic() - cached[0] < max_age:
        return dict(cached[1])
    try:
        result = {**check_connection(settings), "configured": True, "settings": settings.masked()}
    except UserError as exc:
        result = {"ok": False, "configured": True, "message": str(exc), "settings": settings.masked()}
    _status_cache.clear()
    _status_cache[key] = (time.monotonic(), result)
    return dict(result)


def _masked_settings() -> dict:
    from core import config

    return {n: (config.mask(config.setting(n)) if n in config.SECRET_SETTINGS else (config.setting(n) or "(not set)"))
            for n in config.AZURE_SETTINGS}


def _tiny_png() -> bytes:
    return png_bytes(Image.new("RGB", (az.MIN_SIDE, az.MIN_SIDE), (128, 128, 128)))


# -- images ------------------------------------------------------------------------------------------

def encode_within(image: Image.Image, limit: int, png: Optional[bytes] = None) -> bytes:
    """The image as PNG, or — when that is over ``limit`` bytes — as JPEG at the highest quality
    that fits (then smaller, keeping the shorter side ≥ 256 px). Deterministic: the same image gives
    the same bytes, so a retried upload is an ``OKDuplicate``, never a second image."""
    data = png if png is not None else png_bytes(image)
    if len(data) <= limit:
        return data
    rgb = image.convert("RGB")
    while True:
        for quality in JPEG_QUALITIES:
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=quality, optimize=True)
            if buf.tell() <= limit:
                return buf.getvalue()
        short = min(rgb.size)
        if short <= az.MIN_SIDE:
            raise BackendError(f"an image of {rgb.width}×{rgb.height} px cannot be brought under "
                               f"{limit // (1024 * 1024)} MB")
        scale = max(az.MIN_SIDE / short, 0.75)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.LANCZOS)


def _view(slice_: dict) -> tuple[Optional[int], str, str]:
    spec = slice_.get("spec") or {}
    return slice_.get("size", spec.get("size")), spec.get("fit", "crop"), spec.get("resample", "lanczos")


def _training_bytes(store: Store, image_id: str, view: tuple) -> bytes:
    from core.store import imaging

    size, fit, resample = view
    png = imaging.resized_png(store, image_id, size, fit, resample)
    if len(png) <= az.MAX_TRAINING_BYTES:
        return png
    return encode_within(imaging.resized(store, image_id, size, fit, resample), az.MAX_TRAINING_BYTES, png)


def _prediction_bytes(store: Store, image: dict, view: tuple, limit: int) -> bytes:
    from core.store import imaging

    size, fit, resample = view
    stored = store.query_one("SELECT id FROM images WHERE id = ?", (image["id"],)) is not None
    if stored:
        png = imaging.resized_png(store, image["id"], size, fit, resample)
        if len(png) <= limit:
            return png
        return encode_within(imaging.resized(store, image["id"], size, fit, resample), limit, png)
    with Image.open(image["path"]) as opened:
        picture = imaging.to_rgb(opened)
        picture.load()
    if size is not None:
        picture = imaging.resize(picture, size, fit, resample)
    return encode_within(picture, limit)


def min_side(store: Store, slice_: dict) -> int:
    """The shorter side, in px, of the smallest image the slice would upload."""
    size = _view(slice_)[0]
    if size is not None:
        return int(size)
    ids = list(slice_.get("images") or [m["id"] for m in slice_.get("members", [])])
    if not ids:
        return 0
    smallest = None
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        row = store.query_one(f"SELECT MIN(MIN(width, height)) AS s FROM images WHERE id IN "
                              f"({','.join('?' * len(chunk))})", tuple(chunk))
        if row and row["s"] is not None:
            smallest = row["s"] if smallest is None else min(smallest, row["s"])
    return int(smallest or 0)


def check_min_side(store: Store, slice_: dict) -> None:
    """Refuse, before any network call, a slice whose images are under Azure's 256 px floor."""
    side = min_side(store, slice_)
    if side < az.MIN_SIDE:
        raise InvalidInput(f"slice {slice_.get('name')!r} (n={slice_.get('count_per_tag')}) has images of {side} px "
                           f"on the shorter side; Azure Custom Vision needs at least {az.MIN_SIDE} px — cut the "
                           f"slice at --size {az.MIN_SIDE} or more")


# -- series and records --------------------------------------------------------------------------------

def series_of(slice_: dict, layout: str = "nested") -> tuple[str, dict]:
    """``(key, spec)`` of the project a slice trains in: its spec without the count (nested), or the
    slice itself (plain)."""
    spec = dict(slice_.get("spec") or {})
    if not spec:
        spec = {k: slice_.get(k) for k in ("name", "count_per_tag", "size", "real_fraction", "repeat")}
    if layout == "plain":
        return "slice:" + slice_["hash"], spec
    spec.pop("count_per_tag", None)
    return "series:" + hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest(), spec


def _series_label(spec: dict, layout: str, count: Optional[int] = None) -> str:
    size = spec.get("size")
    label = (f"{spec.get('name')} · {size or 'original'} px · real {float(spec.get('real_fraction') or 0):g} · "
             f"repeat {spec.get('repeat', 0)}")
    return label + (f" · n={count}" if layout == "plain" and count is not None else "")


def _project_row(store: Store, endpoint: str, key: str) -> Optional[dict]:
    return store.query_one("SELECT * FROM azure_projects WHERE endpoint = ? AND series_key = ?", (endpoint, key))


def _reserve_project(store: Store, endpoint: str, key: str, spec: dict, layout: str,
                     count: Optional[int]) -> dict:
    """The project's record, created with its final name before Azure is asked (so a killed create
    is found again by name)."""
    label = _series_label(spec, layout, count)
    name = re.sub(r"\s+", " ", f"synthlab {label} {secrets.token_hex(4)}")[-256:]
    with store.tx() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO azure_projects(endpoint, series_key, sweep, name, spec, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (endpoint, key, str(spec.get("name") or ""), name, json.dumps({**spec, "layout": layout}, default=str),
             now()),
        )
    return _project_row(store, endpoint, key)


def _params_key(params: dict) -> str:
    return json.dumps({"training_type": params.get("training_type", "Regular"),
                       "budget_hours": int(params.get("budget_hours") or 0)}, sort_keys=True)


def normalise_params(params: dict) -> dict:
    """``training_type`` (Regular | Advanced), ``budget_hours`` (int ≥ 0, ≥ 1 for Advanced), ``tier``
    (F0 | S0, default ``SYNTHLAB_AZURE_TIER`` or S0), ``layout`` (nested | plain); other keys dropped."""
    from core import config

    params = {k: v for k, v in (params or {}).items() if v is not None}
    training_type = str(params.get("training_type") or "Regular")
    if training_type not in az.TRAINING_TYPES:
        raise InvalidInput(f"training type must be Regular or Advanced, not {training_type!r}")
    try:
        budget = int(params.get("budget_hours") or 0)
    except (TypeError, ValueError):
        raise InvalidInput(f"budget hours must be a whole number, not {params.get('budget_hours')!r}") from None
    if not 0 <= budget <= 1000:
        raise InvalidInput(f"budget hours must be between 0 and 1000, not {budget}")
    if training_type == "Advanced" and budget < 1:
        raise InvalidInput("Advanced training needs a budget of at least 1 hour (--budget-hours)")
    tier = str(params.get("tier") or config.setting("SYNTHLAB_AZURE_TIER") or "S0")
    if tier not in az.TIERS:
        raise InvalidInput(f"tier must be F0 or S0, not {tier!r}")
    layout = str(params.get("layout") or "nested")
    if layout not in LAYOUTS:
        raise InvalidInput(f"layout must be nested or plain, not {layout!r}")
    return {"training_type": training_type, "budget_hours": budget, "tier": tier, "layout": layout}


# -- the trainer -------------------------------------------------------------------------------------

class AzureTrainer:
    """The ``azure`` backend (see the module docstring)."""

    name = "azure"

    def validate(self, store: Store, params: dict) -> dict:
        """Normalised params (:func:`normalise_params`); also checks the training settings are there
        (:class:`MissingSetting` names the variable), so nothing is written without them."""
        params = normalise_params(params)
        load_settings()
        return params

    def plan(self, store: Store, slices: list[dict], params: dict) -> dict:
        """The quota plan of training ``slices`` (checked online); raises :class:`UserError` when refused.

        A slice holding two tags one project would merge (``Jeans`` and ``jeans``, in a store made
        before tag names were unique ignoring case) is refused before anything is uploaded."""
        from core.store.tagnames import colliding

        for s in slices:
            tags = sorted({r["tag"] for r in store.query(
                "SELECT DISTINCT i.tag FROM slice_images si JOIN images i ON i.id = si.image_id "
                "WHERE si.slice_id = ?", (s["id"],))})
            for group in colliding(tags):
                raise BackendError(
                    f"slice {s['name']!r} (id {s['id']}) holds tags {' and '.join(map(repr, group))}, which differ "
                    "only in case or Unicode form: Azure Custom Vision would merge them into one tag; "
                    "retag the images of one of them (import them again under the other name) first")
        plan = plan_sweep(store, slices, params, online=True)
        plan.raise_if_refused()
        return plan.as_dict()

    # -- training ------------------------------------------------------------------------------------

    def train(self, store: Store, slice: dict, params: dict, progress: Progress) -> dict:
        """Upload what the project lacks, train one iteration, return Azure's performance as metrics."""
        try:
            return self._train(store, slice, params, progress)
        except UserError as exc:
            raise _scrubbed(exc) from None

    def _train(self, store: Store, slice: dict, params: dict, progress: Progress) -> dict:
        params = self.validate(store, params)
        slice_ = _complete_slice(store, slice)
        check_min_side(store, slice_)
        settings = load_settings()
        api = AzureApi(settings, params["tier"])
        report = progress or (lambda done, total, message="": None)
        layout = params["layout"]
        key, spec = series_of(slice_, layout)
        tags = sorted({m["tag"] for m in slice_["members"]})
        if len(tags) < 2:
            raise InvalidInput(f"slice {slice_['name']!r} has {len(tags)} tag(s); a classifier needs at least 2")
        report(0, 1, "Azure: project")
        row = self._ensure_project(store, api, key, spec, layout, slice_["count_per_tag"])
        project_id = row["project_id"]
        tag_ids = self._ensure_tags(store, api, row, tags)
        self._drop_extras(store, api, row, {m["id"] for m in slice_["members"]})
        self._upload(store, api, row, slice_, tag_ids, report)
        iteration = self._ensure_iteration(store, api, row, slice_, params, report)
        report(1, 1, "Azure: performance")
        performance = api.training("reading iteration performance", "get_iteration_performance", project_id,
                                   iteration.id, threshold=0.5)
        return {"artifact": None, "metrics": {"tags": tags, "azure": {
            "endpoint": settings.training_endpoint, "project_id": project_id, "project_name": row["name"],
            "iteration_id": iteration.id, "iteration_name": iteration.name, "series": key, "layout": layout,
            "training_type": params["training_type"], "budget_hours": params["budget_hours"],
            "training_minutes": getattr(iteration, "training_time_in_minutes", None),
            "images": len(slice_["members"]), **_performance(performance),
        }}}

    def _ensure_project(self, store: Store, api: AzureApi, key: str, spec: dict, layout: str,
                        count: Optional[int]) -> dict:
        endpoint = api.settings.training_endpoint
        row = _project_row(store, endpoint, key)
        if row is not None and row["project_id"]:
            try:
                api.training("checking the project", "get_project", row["project_id"])
                return row
            except AzureRequestError as exc:
                if exc.status != 404:
                    raise
                log.info("azure project %s is gone; its records are dropped", row["project_id"])
                with store.tx() as conn:
                    conn.execute("DELETE FROM azure_projects WHERE id = ?", (row["id"],))
                row = None
        if row is None:
            row = _reserve_project(store, endpoint, key, spec, layout, count)
        name = row["name"]

        def find() -> Optional[Any]:
            return next((p for p in api.training("listing projects", "get_projects") if p.name == name), None)

        project = find() or api.training(
            "creating a project", "create_project", name,
            description=f"Synthlab series {_series_label(spec, layout, count)}",
            classification_type="Multiclass", recover=find)
        with store.tx() as conn:
            conn.execute("UPDATE azure_projects SET project_id = ? WHERE id = ?", (project.id, row["id"]))
        return _project_row(store, endpoint, key)

    def _ensure_tags(self, store: Store, api: AzureApi, row: dict, tags: list[str]) -> dict[str, str]:
        known = {r["tag"]: r["tag_id"] for r in store.query(
            "SELECT tag, tag_id FROM azure_tags WHERE project = ?", (row["id"],))}
        project_id = row["project_id"]

        def find(name: str) -> Optional[Any]:
            return next((t for t in api.training("listing tags", "get_tags", project_id)
                         if t.name.lower() == name.lower()), None)

        for name in (t for t in tags if t not in known):
            try:
                tag = api.training(f"creating tag {name!r}", "create_tag", project_id, name,
                                   recover=lambda n=name: find(n))
            except AzureRequestError as exc:
                if exc.code != "BadRequestTagNameNotUnique":
                    raise
                tag = find(name)
            with store.tx() as conn:
                conn.execute("INSERT OR REPLACE INTO azure_tags(project, tag, tag_id) VALUES (?, ?, ?)",
                             (row["id"], name, tag.id))
            known[name] = tag.id
        return known

    def _drop_extras(self, store: Store, api: AzureApi, row: dict, members: set[str]) -> None:
        """Images the project holds that this slice does not (a larger count was trained first): removed
        from the workspace so the new iteration sees exactly the slice (trained iterations keep theirs)."""
        records = store.query("SELECT image_id, azure_image_id FROM azure_images WHERE project = ?", (row["id"],))
        keep = {r["azure_image_id"] for r in records if r["image_id"] in members}
        extra = [r for r in records if r["image_id"] not in members]
        doomed = sorted({r["azure_image_id"] for r in extra} - keep)
        for i in range(0, len(doomed), DELETE_CHUNK):
            api.training("removing images of a larger slice", "delete_images", row["project_id"],
                         image_ids=doomed[i:i + DELETE_CHUNK])
        if extra:
            with store.tx() as conn:
                conn.executemany("DELETE FROM azure_images WHERE project = ? AND image_id = ?",
                                 [(row["id"], r["image_id"]) for r in extra])

    def _upload(self, store: Store, api: AzureApi, row: dict, slice_: dict, tag_ids: dict[str, str],
                report: Callable) -> None:
        done = {r["image_id"] for r in store.query("SELECT image_id FROM azure_images WHERE project = ?",
                                                   (row["id"],))}
        todo = [m for m in slice_["members"] if m["id"] not in done]
        view = _view(slice_)
        problems: list[str] = []
        sent = 0
        batch: list[tuple[dict, bytes]] = []
        size = 0

        def flush() -> None:
            nonlocal sent, batch, size
            if batch:
                problems.extend(self._send_batch(store, api, row, batch, tag_ids))
                sent += len(batch)
                report(sent, len(todo) + 1, f"Azure: uploaded {sent}/{len(todo)} images")
            batch, size = [], 0

        for member in todo:
            data = _training_bytes(store, member["id"], view)
            if batch and (len(batch) >= api.settings.batch or size + len(data) > MAX_BATCH_BYTES):
                flush()
            batch.append((member, data))
            size += len(data)
        flush()
        if problems:
            raise BackendError(f"Azure refused {len(problems)} image(s) of slice {slice_['name']!r} "
                               f"(n={slice_['count_per_tag']}): " + "; ".join(problems[:5])
                               + (" …" if len(problems) > 5 else "")
                               + " — reject them (images reject ID) and cut a new slice")

    def _send_batch(self, store: Store, api: AzureApi, row: dict, batch: list[tuple[dict, bytes]],
                    tag_ids: dict[str, str]) -> list[str]:
        entries = [ImageFileCreateEntry(name=m["id"], contents=data, tag_ids=[tag_ids[m["tag"]]])
                   for m, data in batch]
        summary = api.training(f"uploading {len(entries)} images", "create_images_from_files",
                               row["project_id"], ImageFileCreateBatch(images=entries))
        by_name = {r.source_url: r for r in (summary.images or []) if r.source_url}
        results = [by_name.get(m["id"]) for m, _ in batch]
        if any(r is None for r in results) and len(summary.images or []) == len(batch):
            results = list(summary.images)
        recorded, problems = [], []
        for (member, _), result in zip(batch, results):
            status = getattr(result, "status", None) or "NoAnswer"
            if status in ("OK", "OKDuplicate") and getattr(result, "image", None) is not None:
                recorded.append((row["id"], member["id"], result.image.id, status, now()))
            else:
                problems.append(f"{member['id'][:12]}: {status}")
        with store.tx() as conn:
            conn.executemany("INSERT OR REPLACE INTO azure_images(project, image_id, azure_image_id, status, created) "
                             "VALUES (?, ?, ?, ?, ?)", recorded)
        return problems

    def _iteration_row(self, store: Store, row: dict, slice_id: int, params_key: str) -> Optional[dict]:
        return store.query_one("SELECT * FROM azure_iterations WHERE project = ? AND slice_id = ? AND params_key = ?",
                               (row["id"], slice_id, params_key))

    def _adopt_orphans(self, store: Store, api: AzureApi, row: dict) -> None:
        """An iteration Azure started but whose id never reached the store (killed right after asking) is
        given to the one record still waiting for its iteration."""
        pending = store.query("SELECT slice_id, params_key FROM azure_iterations WHERE project = ? AND "
                              "iteration_id IS NULL AND status = 'requested'", (row["id"],))
        if len(pending) != 1:
            return
        orphan = self._orphan(store, api, row)
        if orphan is not None:
            with store.tx() as conn:
                conn.execute("UPDATE azure_iterations SET iteration_id = ?, status = 'training' WHERE project = ? "
                             "AND slice_id = ? AND params_key = ?",
                             (orphan.id, row["id"], pending[0]["slice_id"], pending[0]["params_key"]))

    def _orphan(self, store: Store, api: AzureApi, row: dict) -> Optional[Any]:
        claimed = {r["iteration_id"] for r in store.query(
            "SELECT iteration_id FROM azure_iterations WHERE project = ? AND iteration_id IS NOT NULL", (row["id"],))}
        loose = [it for it in api.training("listing iterations", "get_iterations", row["project_id"])
                 if it.id not in claimed and it.status != "Failed"]
        return max(loose, key=lambda it: (it.created or datetime.min.replace(tzinfo=timezone.utc)), default=None)

    def _ensure_iteration(self, store: Store, api: AzureApi, row: dict, slice_: dict, params: dict,
                          report: Callable) -> Any:
        params_key = _params_key(params)
        slice_id = int(slice_["id"])
        project_id = row["project_id"]
        self._adopt_orphans(store, api, row)
        record = self._iteration_row(store, row, slice_id, params_key)
        iteration = None
        if record is not None and record["iteration_id"]:
            try:
                iteration = api.training("checking the iteration", "get_iteration", project_id, record["iteration_id"])
            except AzureRequestError as exc:
                if exc.status != 404:
                    raise
            if iteration is not None and iteration.status == "Failed":
                self._fail(store, row, slice_id, params_key, iteration)
        if iteration is None:
            with store.tx() as conn:
                conn.execute("INSERT OR REPLACE INTO azure_iterations(project, slice_id, params_key, iteration_id, "
                             "status, created) VALUES (?, ?, ?, NULL, 'requested', ?)",
                             (row["id"], slice_id, params_key, now()))
            iteration = self._start_training(store, api, row, params, report)
            with store.tx() as conn:
                conn.execute("UPDATE azure_iterations SET iteration_id = ?, status = 'training' WHERE project = ? "
                             "AND slice_id = ? AND params_key = ?", (iteration.id, row["id"], slice_id, params_key))
        iteration = self._wait(api, project_id, iteration, params, report)
        if iteration.status == "Failed":
            self._fail(store, row, slice_id, params_key, iteration)
        with store.tx() as conn:
            conn.execute("UPDATE azure_iterations SET status = 'done', error = NULL WHERE project = ? AND slice_id = ? "
                         "AND params_key = ?", (row["id"], slice_id, params_key))
        return iteration

    def _start_training(self, store: Store, api: AzureApi, row: dict, params: dict, report: Callable) -> Any:
        project_id = row["project_id"]
        for _ in range(3):
            try:
                return api.training(
                    "starting training", "train_project", project_id, training_type=params["training_type"],
                    reserved_budget_in_hours=params["budget_hours"], force_train=True,
                    recover=lambda: self._orphan(store, api, row))
            except AzureRequestError as exc:
                if exc.code != "BadRequestTrainingAlreadyInProgress":
                    with store.tx() as conn:
                        conn.execute("DELETE FROM azure_iterations WHERE project = ? AND iteration_id IS NULL",
                                     (row["id"],))
                    raise
                running = [it for it in api.training("listing iterations", "get_iterations", project_id)
                           if it.status not in ("Completed", "Failed")]
                for it in running:
                    self._wait(api, project_id, it, params, report)
        raise BackendError("Azure kept saying another training of this project is in progress")

    def _wait(self, api: AzureApi, project_id: str, iteration: Any, params: dict, report: Callable) -> Any:
        """Poll until Completed or Failed, with growing intervals, never longer than the timeout."""
        settings = api.settings
        timeout = settings.train_timeout or (params.get("budget_hours", 0) * 3600 + 7200)
        deadline = time.monotonic() + timeout
        interval = settings.poll
        started = time.monotonic()
        while iteration.status not in ("Completed", "Failed"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TrainingFailed(f"Azure training of iteration {iteration.name!r} did not finish within "
                                     f"{timeout:g} s (status {iteration.status}); it keeps running on Azure — "
                                     f"train again later to pick it up")
            report(0, 1, f"Azure: training {iteration.name} ({iteration.status}, {time.monotonic() - started:.0f} s)")
            time.sleep(min(interval, left))
            interval = min(interval * 1.5, settings.poll_max)
            iteration = api.training("checking the training", "get_iteration", project_id, iteration.id)
        return iteration

    def _fail(self, store: Store, row: dict, slice_id: int, params_key: str, iteration: Any) -> None:
        detail = scrub(getattr(iteration, "training_error_details", None) or "Azure gave no details")
        with store.tx() as conn:
            conn.execute("UPDATE azure_iterations SET status = 'failed', error = ?, iteration_id = NULL "
                         "WHERE project = ? AND slice_id = ? AND params_key = ?",
                         (detail, row["id"], slice_id, params_key))
        raise TrainingFailed(f"Azure training failed ({iteration.name}): {detail}")

    # -- prediction ----------------------------------------------------------------------------------

    def predict(self, store: Store, run: dict, images: list[dict]) -> list[dict[str, float]]:
        """Probabilities over the run's tags: ``classify_image`` on a published iteration when a prediction
        resource is configured, else ``quick_test_image`` on the trained iteration (no publish)."""
        try:
            return self._predict(store, run, images)
        except UserError as exc:
            raise _scrubbed(exc) from None

    def _predict(self, store: Store, run: dict, images: list[dict]) -> list[dict[str, float]]:
        azure = (run.get("metrics") or {}).get("azure") or {}
        tags = list((run.get("metrics") or {}).get("tags") or [])
        if not azure.get("project_id") or not azure.get("iteration_id"):
            raise BackendError(f"run {run.get('id')} has no Azure iteration: train it first")
        settings = load_settings()
        if azure.get("endpoint") and azure["endpoint"] != settings.training_endpoint:
            raise BackendError(f"run {run.get('id')} was trained on {azure['endpoint']}, but "
                               f"VISION_TRAINING_ENDPOINT is {settings.training_endpoint}")
        api = AzureApi(settings, (run.get("params") or {}).get("tier", "S0"))
        view = _run_view(store, run)
        project_id, iteration_id = azure["project_id"], azure["iteration_id"]
        out = []
        try:
            published = self._ensure_published(store, api, project_id, iteration_id) if settings.can_publish else None
            for image in images:
                if published:
                    data = _prediction_bytes(store, image, view, az.MAX_PREDICTION_BYTES)
                    try:
                        result = api.prediction("classifying a test image", "classify_image_with_no_store",
                                                project_id, published, data)
                    except AzureRequestError as exc:
                        if exc.status != 404:
                            raise
                        published = self._ensure_published(store, api, project_id, iteration_id, again=True)
                        result = api.prediction("classifying a test image", "classify_image_with_no_store",
                                                project_id, published, data)
                else:
                    data = _prediction_bytes(store, image, view, az.MAX_TRAINING_BYTES)
                    result = api.training("quick-testing a test image", "quick_test_image", project_id, data,
                                          iteration_id=iteration_id, store=False)
                out.append(normalise({p.tag_name: p.probability for p in result.predictions}, tags))
        except AzureRequestError as exc:
            if exc.status == 404:
                raise BackendError(f"the Azure project or iteration of run {run.get('id')} no longer exists "
                                   f"(deleted by azure cleanup?) — train the slice again") from None
            raise
        return out

    def _ensure_published(self, store: Store, api: AzureApi, project_id: str, iteration_id: str, *,
                          again: bool = False) -> str:
        """The iteration's publish name, publishing it first if needed (``again``: the recorded publication
        is gone, e.g. unpublished in the portal)."""
        record = None if again else store.query_one("SELECT i.published_name FROM azure_iterations i JOIN azure_projects p ON "
                                 "p.id = i.project WHERE p.project_id = ? AND i.iteration_id = ?",
                                 (project_id, iteration_id))
        if record and record["published_name"]:
            return record["published_name"]
        name = f"synthlab-{iteration_id}"
        try:
            api.training("publishing the iteration", "publish_iteration", project_id, iteration_id, name,
                         api.settings.prediction_resource_id)
        except AzureRequestError as exc:
            if exc.code != "BadRequestIterationIsPublished":
                raise
            name = api.training("checking the iteration", "get_iteration", project_id, iteration_id).publish_name or name
        with store.tx() as conn:
            conn.execute("UPDATE azure_iterations SET published_name = ? WHERE iteration_id = ?", (name, iteration_id))
        return name


def _scrubbed(exc: UserError) -> UserError:
    """``exc`` itself, or — should a key value have slipped into its text — a copy without it."""
    text = str(exc)
    clean = scrub(text)
    return exc if clean == text else BackendError(clean)


def normalise(probabilities: dict[str, float], tags: list[str]) -> dict[str, float]:
    """``{tag: p}`` over exactly ``tags``, summing to 1 (tags Azure did not score get 0)."""
    if not tags:
        tags = sorted(probabilities)
    values = {t: max(0.0, float(probabilities.get(t, 0.0) or 0.0)) for t in tags}
    total = sum(values.values())
    if total <= 0:
        return {t: 1.0 / len(tags) for t in tags}
    return {t: v / total for t, v in values.items()}


def _performance(perf: Any) -> dict:
    per_tag = {t.name: {"precision": t.precision, "recall": t.recall, "average_precision": t.average_precision}
               for t in (perf.per_tag_performance or [])}
    return {"precision": perf.precision, "recall": perf.recall, "average_precision": perf.average_precision,
            "per_tag": per_tag}


def _complete_slice(store: Store, slice_: dict) -> dict:
    """The slice with ``spec`` and ``members`` (image dicts with id and tag), whatever the caller passed."""
    out = dict(slice_)
    if not out.get("spec") or "hash" not in out:
        from core.data.slicing import get_slice

        out = {**get_slice(store, out["id"]), **{k: v for k, v in out.items() if v is not None}}
    if not out.get("members"):
        ids = list(out.get("images") or [])
        rows = {r["id"]: r for r in store.query(
            f"SELECT id, tag, source FROM images WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))} if ids else {}
        out["members"] = [rows[i] for i in ids if i in rows]
    return out


def _run_view(store: Store, run: dict) -> tuple:
    """(size, fit, resample) the run was trained at: test images are shown to Azure the same way."""
    if "fit" not in run and run.get("slice"):
        try:
            from core.data.slicing import get_slice

            return _view(get_slice(store, run["slice"]))
        except NotFound:
            pass
    return run.get("size"), run.get("fit") or "crop", run.get("resample") or "lanczos"


# -- the quota plan ----------------------------------------------------------------------------------

def plan_sweep(store: Store, slices: list[dict], params: dict, *, online: bool = True,
               settings: Optional[AzureSettings] = None, resource_projects: Optional[int] = None) -> QuotaPlan:
    """What training ``slices`` with ``params`` needs on the resource, checked against the tier.

    Offline it uses this store's records only; online it also counts the projects on the resource
    (or takes ``resource_projects``, when the caller just counted them).
    """
    from core import config

    layout = params.get("layout", "nested")
    tier = params.get("tier") or config.setting("SYNTHLAB_AZURE_TIER") or "S0"
    endpoint = settings.training_endpoint if settings else (config.setting("VISION_TRAINING_ENDPOINT") or "").rstrip("/")
    params_key = _params_key(params)
    groups: dict[str, dict] = {}
    for s in slices:
        s = _complete_slice(store, s)
        key, spec = series_of(s, layout)
        g = groups.setdefault(key, {"key": key, "name": _series_label(spec, layout, s["count_per_tag"]),
                                    "size": s.get("size"), "repeat": s.get("repeat"), "counts": [],
                                    "images_set": set(), "tags": set(), "min_side": None, "slices": []})
        g["slices"].append(s["id"])
        g["images_set"].update(s["images"])
        g["tags"].update(m["tag"] for m in s["members"])
        side = min_side(store, s)
        g["min_side"] = side if g["min_side"] is None else min(g["min_side"], side)
        row = _project_row(store, endpoint, key) if endpoint else None
        trained = row and store.query_one(
            "SELECT 1 FROM azure_iterations WHERE project = ? AND slice_id = ? AND params_key = ? AND status = 'done'",
            (row["id"], s["id"], params_key))
        if not trained:
            g["counts"].append(s["count_per_tag"])
    series = []
    for key, g in groups.items():
        row = _project_row(store, endpoint, key) if endpoint else None
        exists = bool(row and row["project_id"])
        uploaded = store.query_one("SELECT COUNT(*) AS n FROM azure_images WHERE project = ?", (row["id"],))["n"] \
            if row else 0
        done = store.query_one("SELECT COUNT(*) AS n FROM azure_iterations WHERE project = ? AND status = 'done'",
                               (row["id"],))["n"] if row else 0
        series.append({"key": key, "name": g["name"], "size": g["size"], "repeat": g["repeat"],
                       "counts": sorted(g["counts"]), "images": len(g["images_set"]), "tags": sorted(g["tags"]),
                       "min_side": g["min_side"], "exists": exists, "trained": done,
                       "to_upload": max(0, len(g["images_set"]) - uploaded)})
    training_type, budget = params.get("training_type", "Regular"), int(params.get("budget_hours") or 0)
    plan = quota_plan(series, tier, training_type, budget, resource_projects)
    if online and plan.ok and resource_projects is None:  # refusals that need no network come first
        settings = settings or load_settings()
        resource_projects = len(AzureApi(settings, tier).training("listing projects", "get_projects"))
        plan = quota_plan(series, tier, training_type, budget, resource_projects)
    for s, full in zip(plan.series, series):
        s["to_upload"] = full["to_upload"]
    return plan


# -- cleanup and status --------------------------------------------------------------------------------

def cleanup(store: Store, sweep: Optional[str] = None, *, settings: Optional[AzureSettings] = None) -> dict:
    """Delete the projects this store created on the configured resource (those of ``sweep`` only, when
    given): published iterations are unpublished first. Their records go too; runs keep their results."""
    settings = settings or load_settings()
    api = AzureApi(settings, _tier())
    sql, args = "SELECT * FROM azure_projects WHERE endpoint = ?", [settings.training_endpoint]
    if sweep:
        sql += " AND sweep = ?"
        args.append(sweep)
    rows = store.query(sql + " ORDER BY id", tuple(args))
    deleted, missing = [], []
    for row in rows:
        project_id = row["project_id"] or next(
            (p.id for p in api.training("listing projects", "get_projects") if p.name == row["name"]), None)
        gone = project_id is None
        if project_id:
            try:
                for it in api.training("listing iterations", "get_iterations", project_id):
                    if it.publish_name:
                        try:
                            api.training("unpublishing an iteration", "unpublish_iteration", project_id, it.id)
                        except AzureRequestError as exc:
                            if exc.code != "BadRequestIterationNotPublished":
                                raise
                api.training("deleting a project", "delete_project", project_id)
            except AzureRequestError as exc:
                if exc.status != 404:
                    raise
                gone = True
        with store.tx() as conn:
            conn.execute("DELETE FROM azure_projects WHERE id = ?", (row["id"],))
        entry = {"project_id": project_id, "name": row["name"], "sweep": row["sweep"]}
        (missing if gone else deleted).append(entry)
    elsewhere = store.query_one("SELECT COUNT(*) AS n FROM azure_projects WHERE endpoint != ?" +
                                (" AND sweep = ?" if sweep else ""),
                                tuple([settings.training_endpoint] + ([sweep] if sweep else [])))["n"]
    return {"deleted": deleted, "already_gone": missing, "other_resources": elsewhere}


def projects(store: Store) -> list[dict]:
    """This store's Azure projects with their image and iteration counts (no network)."""
    rows = store.query(
        "SELECT p.id, p.endpoint, p.sweep, p.name, p.project_id, p.created, "
        "(SELECT COUNT(*) FROM azure_images i WHERE i.project = p.id) AS images, "
        "(SELECT COUNT(*) FROM azure_tags t WHERE t.project = p.id) AS tags, "
        "(SELECT COUNT(*) FROM azure_iterations i WHERE i.project = p.id AND i.status = 'done') AS iterations "
        "FROM azure_projects p ORDER BY p.id")
    return [{k: v for k, v in r.items() if k != "id"} for r in rows]


def status(store: Store, *, check: bool = True) -> dict:
    """Settings (keys masked), the connection check (when ``check``) and this store's projects."""
    result: dict[str, Any] = {"projects": projects(store)}
    if check:
        result["connection"] = connection_status()
        result["settings"] = result["connection"].pop("settings")
    else:
        result["settings"] = _masked_settings()
    return result


def panel(store: Store, slice_refs: Iterable[int | str], params: dict, *, max_age: float = 30.0) -> dict:
    """Everything the Train page shows for Azure, in one call: ``connection`` (:func:`connection_status`,
    keys masked), ``plan`` (the quota plan as a dict, or None), ``plan_error`` (why there is none),
    ``params`` (normalised) and this store's ``projects``."""
    from core.data.slicing import resolve_slices

    connection = connection_status(max_age)
    out: dict[str, Any] = {"connection": connection, "plan": None, "plan_error": None, "params": None,
                           "projects": projects(store)}
    try:
        out["params"] = normalise_params(params)
        refs = [r for r in slice_refs or [] if str(r).strip()]
        if refs:
            plan = plan_sweep(store, resolve_slices(store, refs), out["params"], online=False,
                              resource_projects=connection.get("projects"))
            out["plan"] = plan.as_dict()
    except UserError as exc:
        out["plan_error"] = str(_scrubbed(exc))
    return out


def _tier() -> str:
    from core import config

    return config.setting("SYNTHLAB_AZURE_TIER") or "S0"
