"""Is Azure reachable with these keys, and what the Train page's Azure panel shows (cached briefly)."""

from __future__ import annotations

import time
from typing import Any, Iterable, Optional

from core.errors import UserError
from core.store.database import Store
from core.train.backends import azure_images, azure_projects
from core.train.backends.azure_api import AzureApi, AzureRequestError, fingerprint
from core.train.backends.azure_settings import AzureSettings, load_settings


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
                           "00000000-0000-0000-0000-000000000000", "synthlab-check", azure_images.tiny_png())
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


def status(store: Store, *, check: bool = True) -> dict:
    """Settings (keys masked), the connection check (when ``check``) and this store's projects."""
    result: dict[str, Any] = {"projects": azure_projects.projects(store)}
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
                           "projects": azure_projects.projects(store)}
    try:
        out["params"] = azure_projects.normalise_params(params)
        refs = [r for r in slice_refs or [] if str(r).strip()]
        if refs:
            plan = azure_projects.plan_sweep(store, resolve_slices(store, refs), out["params"], online=False,
                              resource_projects=connection.get("projects"))
            out["plan"] = plan.as_dict()
    except UserError as exc:
        out["plan_error"] = str(azure_projects.scrubbed(exc))
    return out


def plan_caption(plan: dict) -> str:
    """The quota plan in one line: what a sweep would create on the resource."""
    return (f"Quota plan, tier {plan['tier']}: {plan['projects']} new project(s) (one per nested series), "
            f"{plan['iterations']} iteration(s), {plan['images']} image(s), {plan['tags']} tag(s)"
            + (f"; the resource has {plan['resource_projects']} project(s)" if plan["resource_projects"] is not None else ""))


def connection_line(connection: dict) -> str:
    """The connection status in one line (with the prediction side when the training side answered)."""
    if connection["ok"]:
        return f"Azure Custom Vision: {connection['message']} · predictions: {connection['prediction']}"
    return f"Azure Custom Vision: {connection['message']}"
