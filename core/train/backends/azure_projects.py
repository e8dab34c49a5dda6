"""How a sweep maps onto Azure projects (nested slices: one project, incremental uploads, one iteration per slice), its quota plan, and cleaning projects up."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any, Optional

from core.errors import BackendError, InvalidInput, UserError
from core.store.database import Store
from core.store.records import now
from core.train.backends import azure_images
from core.train.backends import azure_settings as az
from core.train.backends.azure_api import AzureApi, AzureRequestError
from core.train.backends.azure_settings import AzureSettings, QuotaPlan, load_settings, quota_plan, scrub

LAYOUTS = ("nested", "plain")


DELETE_CHUNK = 256


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


def series_label(spec: dict, layout: str, count: Optional[int] = None) -> str:
    size = spec.get("size")
    label = (f"{spec.get('name')} · {size or 'original'} px · real {float(spec.get('real_fraction') or 0):g} · "
             f"repeat {spec.get('repeat', 0)}")
    return label + (f" · n={count}" if layout == "plain" and count is not None else "")


def project_row(store: Store, endpoint: str, key: str) -> Optional[dict]:
    return store.query_one("SELECT * FROM azure_projects WHERE endpoint = ? AND series_key = ?", (endpoint, key))


def reserve_project(store: Store, endpoint: str, key: str, spec: dict, layout: str,
                     count: Optional[int]) -> dict:
    """The project's record, created with its final name before Azure is asked (so a killed create
    is found again by name)."""
    label = series_label(spec, layout, count)
    name = re.sub(r"\s+", " ", f"synthlab {label} {secrets.token_hex(4)}")[-256:]
    with store.tx() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO azure_projects(endpoint, series_key, sweep, name, spec, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (endpoint, key, str(spec.get("name") or ""), name, json.dumps({**spec, "layout": layout}, default=str),
             now()),
        )
    return project_row(store, endpoint, key)


def training_params_key(params: dict) -> str:
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


def scrubbed(exc: UserError) -> UserError:
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


def performance_metrics(perf: Any) -> dict:
    per_tag = {t.name: {"precision": t.precision, "recall": t.recall, "average_precision": t.average_precision}
               for t in (perf.per_tag_performance or [])}
    return {"precision": perf.precision, "recall": perf.recall, "average_precision": perf.average_precision,
            "per_tag": per_tag}


def complete_slice(store: Store, slice_: dict) -> dict:
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
    params_key = training_params_key(params)
    groups: dict[str, dict] = {}
    for s in slices:
        s = complete_slice(store, s)
        key, spec = series_of(s, layout)
        g = groups.setdefault(key, {"key": key, "name": series_label(spec, layout, s["count_per_tag"]),
                                    "size": s.get("size"), "repeat": s.get("repeat"), "counts": [],
                                    "images_set": set(), "tags": set(), "min_side": None, "slices": []})
        g["slices"].append(s["id"])
        g["images_set"].update(s["images"])
        g["tags"].update(m["tag"] for m in s["members"])
        side = azure_images.min_side(store, s)
        g["min_side"] = side if g["min_side"] is None else min(g["min_side"], side)
        row = project_row(store, endpoint, key) if endpoint else None
        trained = row and store.query_one(
            "SELECT 1 FROM azure_iterations WHERE project = ? AND slice_id = ? AND params_key = ? AND status = 'done'",
            (row["id"], s["id"], params_key))
        if not trained:
            g["counts"].append(s["count_per_tag"])
    series = []
    for key, g in groups.items():
        row = project_row(store, endpoint, key) if endpoint else None
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


def _tier() -> str:
    from core import config

    return config.setting("SYNTHLAB_AZURE_TIER") or "S0"
