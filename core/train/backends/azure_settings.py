"""Azure Custom Vision settings, secret scrubbing, the quota plan and the view of Azure's own metrics —
no SDK, no network (pages may use it without loading the SDK).

The five settings keep the names of Microsoft's quickstart and come from the environment first,
then ``st.secrets`` (:func:`core.config.setting`). The two keys live only in memory: they are never
written to the store, a log, a report, an export, or an error message — :func:`scrub` removes their
values from any text before it leaves the Azure backend.

Tuning knobs (not secrets; environment only, so tests can make everything fast):
``SYNTHLAB_AZURE_RATE`` requests per second (default by tier: F0 2, S0 10; 0 = no limit),
``SYNTHLAB_AZURE_RETRY_SECONDS`` total time one call may spend retrying (default 300),
``SYNTHLAB_AZURE_BACKOFF`` first back-off in seconds (default 1), ``SYNTHLAB_AZURE_MAX_WAIT`` longest
single wait (default 60; a longer ``Retry-After`` is honoured up to the retry budget),
``SYNTHLAB_AZURE_POLL`` / ``SYNTHLAB_AZURE_POLL_MAX`` training poll interval, first and longest
(default 2 / 30 s), ``SYNTHLAB_AZURE_TRAIN_TIMEOUT`` seconds a training may take before the run fails
(default: the budget plus 2 hours), ``SYNTHLAB_AZURE_BATCH`` images per upload (at most 64),
``SYNTHLAB_AZURE_TIMEOUT`` socket timeout in seconds (default 60).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

from core import config
from core.errors import InvalidInput, MissingSetting, UserError

TIERS = ("F0", "S0")
TRAINING_TYPES = ("Regular", "Advanced")
MAX_BATCH = 64
MIN_SIDE = 256
MAX_TRAINING_BYTES = 6 * 1024 * 1024
MAX_PREDICTION_BYTES = 4 * 1024 * 1024
MIN_IMAGES_PER_TAG = 5

#: The service's published per-resource quotas (Custom Vision "Limits and quotas").
TIER_LIMITS: dict[str, dict[str, float]] = {
    "F0": {"projects": 2, "iterations_per_project": 20, "tags_per_project": 50,
           "images_per_project": 5000, "requests_per_second": 2, "training_hours_per_month": 1},
    "S0": {"projects": 100, "iterations_per_project": 20, "tags_per_project": 500,
           "images_per_project": 100_000, "requests_per_second": 10, "training_hours_per_month": math.inf},
}

_HINTS = {
    "VISION_TRAINING_ENDPOINT": "the Custom Vision training resource's endpoint, e.g. https://NAME.cognitiveservices.azure.com/",
    "VISION_TRAINING_KEY": "a key of the Custom Vision training resource (Azure portal → Keys and Endpoint)",
    "VISION_PREDICTION_ENDPOINT": "the prediction resource's endpoint",
    "VISION_PREDICTION_KEY": "a key of the prediction resource",
    "VISION_PREDICTION_RESOURCE_ID": "the prediction resource's ARM id (/subscriptions/…/accounts/NAME)",
}


class AzureAuthError(UserError):
    """Azure refused a key (401/403)."""


class AzureUnreachable(UserError):
    """The endpoint did not answer (DNS, refused connection, timeouts) within the retry budget."""


def _float_env(name: str, default: float, low: float = 0.0) -> float:
    raw = config.setting(name)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, not {raw!r}") from None
    if math.isnan(value) or value < low:
        raise InvalidInput(f"{name} must be a number ≥ {low:g}, not {raw!r}")
    return value


@dataclass(frozen=True)
class AzureSettings:
    """Everything the backend needs to talk to one Custom Vision resource. Keys are kept out of ``repr``."""

    training_endpoint: str
    training_key: str = field(repr=False)
    prediction_endpoint: Optional[str] = None
    prediction_key: Optional[str] = field(default=None, repr=False)
    prediction_resource_id: Optional[str] = None
    rate: Optional[float] = None          # requests/s; None: the tier's rate
    retry_seconds: float = 300.0
    backoff: float = 1.0
    max_wait: float = 60.0
    poll: float = 2.0
    poll_max: float = 30.0
    train_timeout: Optional[float] = None
    batch: int = MAX_BATCH
    timeout: float = 60.0

    @property
    def can_publish(self) -> bool:
        """A prediction resource is configured: publish + classify instead of quick test."""
        return bool(self.prediction_endpoint and self.prediction_key and self.prediction_resource_id)

    def secrets(self) -> list[str]:
        return [s for s in (self.training_key, self.prediction_key) if s]

    def requests_per_second(self, tier: str) -> float:
        return self.rate if self.rate is not None else float(TIER_LIMITS.get(tier, TIER_LIMITS["S0"])["requests_per_second"])

    def masked(self) -> dict:
        """The settings as they may be shown: endpoints and resource id in full, keys masked."""
        return {
            "VISION_TRAINING_ENDPOINT": self.training_endpoint,
            "VISION_TRAINING_KEY": config.mask(self.training_key),
            "VISION_PREDICTION_ENDPOINT": self.prediction_endpoint or "(not set)",
            "VISION_PREDICTION_KEY": config.mask(self.prediction_key),
            "VISION_PREDICTION_RESOURCE_ID": self.prediction_resource_id or "(not set)",
        }


def load_settings(*, require_training: bool = True) -> AzureSettings:
    """The settings from the environment / ``st.secrets``. A missing training endpoint or key is a
    :class:`MissingSetting` naming the variable; the prediction settings are optional (without them,
    probabilities come from ``quick_test_image``)."""
    endpoint = (config.setting("VISION_TRAINING_ENDPOINT") or "").strip()
    key = (config.setting("VISION_TRAINING_KEY") or "").strip()
    if require_training:
        for name, value in (("VISION_TRAINING_ENDPOINT", endpoint), ("VISION_TRAINING_KEY", key)):
            if not value:
                raise MissingSetting(f"{name} is not set: set it in the environment or in "
                                     f".streamlit/secrets.toml ({_HINTS[name]})")
    if endpoint and not endpoint.lower().startswith(("http://", "https://")):
        raise InvalidInput(f"VISION_TRAINING_ENDPOINT must start with https://, not {endpoint!r}")
    rate = config.setting("SYNTHLAB_AZURE_RATE")
    batch = int(_float_env("SYNTHLAB_AZURE_BATCH", MAX_BATCH, 1))
    timeout = config.setting("SYNTHLAB_AZURE_TRAIN_TIMEOUT")
    return AzureSettings(
        training_endpoint=endpoint.rstrip("/"),
        training_key=key,
        prediction_endpoint=((config.setting("VISION_PREDICTION_ENDPOINT") or "").strip().rstrip("/") or None),
        prediction_key=(config.setting("VISION_PREDICTION_KEY") or "").strip() or None,
        prediction_resource_id=(config.setting("VISION_PREDICTION_RESOURCE_ID") or "").strip() or None,
        rate=None if rate in (None, "") else _float_env("SYNTHLAB_AZURE_RATE", 0.0),
        retry_seconds=_float_env("SYNTHLAB_AZURE_RETRY_SECONDS", 300.0),
        backoff=_float_env("SYNTHLAB_AZURE_BACKOFF", 1.0),
        max_wait=_float_env("SYNTHLAB_AZURE_MAX_WAIT", 60.0),
        poll=_float_env("SYNTHLAB_AZURE_POLL", 2.0, 0.001),
        poll_max=_float_env("SYNTHLAB_AZURE_POLL_MAX", 30.0, 0.001),
        train_timeout=None if timeout in (None, "") else _float_env("SYNTHLAB_AZURE_TRAIN_TIMEOUT", 0.0, 0.001),
        batch=min(batch, MAX_BATCH),
        timeout=_float_env("SYNTHLAB_AZURE_TIMEOUT", 60.0, 0.1),
    )


def configured() -> bool:
    """Whether the training endpoint and key are set (cheap; no network)."""
    return bool(config.setting("VISION_TRAINING_ENDPOINT") and config.setting("VISION_TRAINING_KEY"))


def scrub(text: object, secrets: Iterable[Optional[str]] = ()) -> str:
    """``text`` with every key value replaced by its mask. With no ``secrets`` given, the configured
    keys are used — call this on anything that may leave the backend (errors, messages, metrics)."""
    out = str(text)
    values = [s for s in secrets if s] or [v for v in (config.setting(n) for n in config.SECRET_SETTINGS) if v]
    for value in sorted(set(values), key=len, reverse=True):
        if len(value) >= 4:
            out = out.replace(value, config.mask(value))
    return out


# -- the quota plan -------------------------------------------------------------------------------

@dataclass
class QuotaPlan:
    """What a sweep needs from a Custom Vision resource, and whether the tier allows it."""

    tier: str
    projects: int                     # new projects to create
    existing_projects: int            # projects this store already has there (reused)
    resource_projects: Optional[int]  # projects on the resource now (None: not asked)
    series: list[dict]                # per project: key, name, size, repeat, counts, iterations, images, tags
    iterations: int
    images: int
    tags: int
    training_hours: float
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {"tier": self.tier, "projects": self.projects, "existing_projects": self.existing_projects,
                "resource_projects": self.resource_projects, "series": self.series,
                "iterations": self.iterations, "images": self.images, "tags": self.tags,
                "training_hours": self.training_hours, "errors": list(self.errors),
                "warnings": list(self.warnings), "ok": self.ok}

    def raise_if_refused(self) -> None:
        if self.errors:
            raise UserError("Azure quota plan refused: " + "; ".join(self.errors))


def quota_plan(series: list[dict], tier: str, training_type: str = "Regular", budget_hours: int = 0,
               resource_projects: Optional[int] = None) -> QuotaPlan:
    """Check a sweep against a tier's quotas.

    ``series``: one dict per project the sweep maps to, with ``key``, ``name``, ``size``,
    ``repeat``, ``counts`` (count per tag of each slice to train, in order), ``tags`` (names),
    ``images`` (distinct images the project will hold), ``min_side`` (smallest shorter side in px),
    ``exists`` (this store already has the project) and ``trained`` (iterations it already holds).
    ``resource_projects``: projects on the resource right now, if known.
    """
    if tier not in TIER_LIMITS:
        raise InvalidInput(f"tier must be one of {', '.join(TIERS)}, not {tier!r}")
    limits = TIER_LIMITS[tier]
    new = [s for s in series if not s.get("exists")]
    iterations = sum(len(s["counts"]) for s in series)
    hours = float(budget_hours or 0) * iterations if training_type == "Advanced" else 0.0
    plan = QuotaPlan(
        tier=tier, projects=len(new), existing_projects=len(series) - len(new), resource_projects=resource_projects,
        series=[{k: s.get(k) for k in ("key", "name", "size", "repeat", "counts", "images", "tags", "exists")}
                for s in series],
        iterations=iterations, images=sum(s["images"] for s in series),
        tags=max((len(s["tags"]) for s in series), default=0), training_hours=hours,
    )
    in_use = resource_projects if resource_projects is not None else plan.existing_projects
    if in_use + len(new) > limits["projects"]:
        where = f"the resource already has {in_use} and " if in_use else ""
        plan.errors.append(
            f"this sweep needs {len(new)} new project(s) (one per nested series: size × real fraction × repeat); "
            f"{where}tier {tier} allows {int(limits['projects'])} — train fewer series, delete old projects "
            f"(python -m core azure cleanup), or use an S0 resource")
    elif len(new) and in_use + len(new) > 0.8 * limits["projects"]:
        plan.warnings.append(f"this sweep uses {in_use + len(new)} of the {int(limits['projects'])} projects "
                             f"tier {tier} allows")
    for s in series:
        total = int(s.get("trained", 0)) + len(s["counts"])
        if total > limits["iterations_per_project"]:
            plan.errors.append(f"series {s['name']!r} needs {total} iterations; a project holds at most "
                               f"{int(limits['iterations_per_project'])}")
        if s["images"] > limits["images_per_project"]:
            plan.errors.append(f"series {s['name']!r} needs {s['images']} images; tier {tier} allows "
                               f"{int(limits['images_per_project'])} per project")
        if len(s["tags"]) > limits["tags_per_project"]:
            plan.errors.append(f"series {s['name']!r} has {len(s['tags'])} tags; tier {tier} allows "
                               f"{int(limits['tags_per_project'])}")
        if len(s["tags"]) < 2:
            plan.errors.append(f"series {s['name']!r} has {len(s['tags'])} tag(s); a multiclass classifier needs 2")
        small = [c for c in s["counts"] if c < MIN_IMAGES_PER_TAG]
        if small:
            plan.errors.append(f"series {s['name']!r} has slices of {', '.join(map(str, small))} per tag; Azure "
                               f"needs at least {MIN_IMAGES_PER_TAG} images per tag")
        if s.get("min_side") is not None and s["min_side"] < MIN_SIDE:
            plan.errors.append(f"series {s['name']!r} has images of {s['min_side']} px on the shorter side; Azure "
                               f"needs at least {MIN_SIDE} px — slice at --size {MIN_SIDE} or more")
    if training_type == "Advanced" and budget_hours < 1:
        plan.errors.append("Advanced training needs a budget of at least 1 hour (--budget-hours)")
    if hours > limits["training_hours_per_month"]:
        plan.warnings.append(f"Advanced training may use up to {hours:g} hours ({iterations} iterations × "
                             f"{budget_hours} h); tier {tier} includes {limits['training_hours_per_month']:g} per month")
    elif hours:
        plan.warnings.append(f"Advanced training is billed by the hour: up to {hours:g} hours for "
                             f"{iterations} iterations")
    return plan


def metrics_columns(run: dict) -> dict:
    """Azure's own metrics of a run (its iteration's precision, recall and average precision at
    threshold 0.5), as table columns to show beside ours; ``{}`` for a run of another backend."""
    azure = (run.get("metrics") or {}).get("azure")
    if not azure:
        return {}
    return {"Azure precision": azure.get("precision"), "Azure recall": azure.get("recall"),
            "Azure AP": azure.get("average_precision"), "Azure iteration": azure.get("iteration_name")}
