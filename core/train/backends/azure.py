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

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from azure.cognitiveservices.vision.customvision.training.models import ImageFileCreateBatch, ImageFileCreateEntry

from core.errors import BackendError, InvalidInput, UserError
from core.progress import Progress
from core.store.database import Store
from core.store.records import now
from core.train.backends import azure_images, azure_projects
from core.train.backends import azure_settings as az
from core.train.backends.azure_api import AzureApi, AzureRequestError
from core.train.backends.azure_settings import load_settings, scrub

log = logging.getLogger("synthlab.azure")


class TrainingFailed(BackendError):
    """An iteration ended "Failed" (or never finished in time)."""


# -- settings, connection --------------------------------------------------------------------------


# -- images ------------------------------------------------------------------------------------------


# -- series and records --------------------------------------------------------------------------------


# -- the trainer -------------------------------------------------------------------------------------

class AzureTrainer:
    """The ``azure`` backend (see the module docstring)."""

    name = "azure"

    def validate(self, store: Store, params: dict) -> dict:
        """Normalised params (:func:`normalise_params`); also checks the training settings are there
        (:class:`MissingSetting` names the variable), so nothing is written without them."""
        params = azure_projects.normalise_params(params)
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
        plan = azure_projects.plan_sweep(store, slices, params, online=True)
        plan.raise_if_refused()
        return plan.as_dict()

    # -- training ------------------------------------------------------------------------------------

    def train(self, store: Store, slice: dict, params: dict, progress: Progress) -> dict:
        """Upload what the project lacks, train one iteration, return Azure's performance as metrics."""
        try:
            return self._train(store, slice, params, progress)
        except UserError as exc:
            raise azure_projects.scrubbed(exc) from None

    def _train(self, store: Store, slice: dict, params: dict, progress: Progress) -> dict:
        params = self.validate(store, params)
        slice_ = azure_projects.complete_slice(store, slice)
        azure_images.check_min_side(store, slice_)
        settings = load_settings()
        api = AzureApi(settings, params["tier"])
        report = progress or (lambda done, total, message="": None)
        layout = params["layout"]
        key, spec = azure_projects.series_of(slice_, layout)
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
            "images": len(slice_["members"]), **azure_projects.performance_metrics(performance),
        }}}

    def _ensure_project(self, store: Store, api: AzureApi, key: str, spec: dict, layout: str,
                        count: Optional[int]) -> dict:
        endpoint = api.settings.training_endpoint
        row = azure_projects.project_row(store, endpoint, key)
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
            row = azure_projects.reserve_project(store, endpoint, key, spec, layout, count)
        name = row["name"]

        def find() -> Optional[Any]:
            return next((p for p in api.training("listing projects", "get_projects") if p.name == name), None)

        project = find() or api.training(
            "creating a project", "create_project", name,
            description=f"Synthlab series {azure_projects.series_label(spec, layout, count)}",
            classification_type="Multiclass", recover=find)
        with store.tx() as conn:
            conn.execute("UPDATE azure_projects SET project_id = ? WHERE id = ?", (project.id, row["id"]))
        return azure_projects.project_row(store, endpoint, key)

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
        for i in range(0, len(doomed), azure_projects.DELETE_CHUNK):
            api.training("removing images of a larger slice", "delete_images", row["project_id"],
                         image_ids=doomed[i:i + azure_projects.DELETE_CHUNK])
        if extra:
            with store.tx() as conn:
                conn.executemany("DELETE FROM azure_images WHERE project = ? AND image_id = ?",
                                 [(row["id"], r["image_id"]) for r in extra])

    def _upload(self, store: Store, api: AzureApi, row: dict, slice_: dict, tag_ids: dict[str, str],
                report: Callable) -> None:
        done = {r["image_id"] for r in store.query("SELECT image_id FROM azure_images WHERE project = ?",
                                                   (row["id"],))}
        todo = [m for m in slice_["members"] if m["id"] not in done]
        view = azure_images.slice_view(slice_)
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
            data = azure_images.training_bytes(store, member["id"], view)
            if batch and (len(batch) >= api.settings.batch or size + len(data) > azure_images.MAX_BATCH_BYTES):
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
        params_key = azure_projects.training_params_key(params)
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
            raise azure_projects.scrubbed(exc) from None

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
        view = azure_images.run_view(store, run)
        project_id, iteration_id = azure["project_id"], azure["iteration_id"]
        out = []
        try:
            published = self._ensure_published(store, api, project_id, iteration_id) if settings.can_publish else None
            for image in images:
                if published:
                    data = azure_images.prediction_bytes(store, image, view, az.MAX_PREDICTION_BYTES)
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
                    data = azure_images.prediction_bytes(store, image, view, az.MAX_TRAINING_BYTES)
                    result = api.training("quick-testing a test image", "quick_test_image", project_id, data,
                                          iteration_id=iteration_id, store=False)
                out.append(azure_projects.normalise({p.tag_name: p.probability for p in result.predictions}, tags))
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


# -- the quota plan ----------------------------------------------------------------------------------


# -- cleanup and status --------------------------------------------------------------------------------


