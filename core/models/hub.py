"""Can the Hugging Face hub be reached from here? Asked once, quickly, before anything waits on it.

huggingface_hub retries a refused or silent endpoint for tens of seconds and warns on each retry;
a page or command that resolves a model through it first hangs, then blames ``HF_HUB_OFFLINE``
whether or not it is set. :func:`hub_state` answers in at most ``timeout`` seconds with one of three
states, so the caller can say which way out applies; :func:`quiet_hub` silences the retry warnings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from typing import Iterator
from urllib.parse import urlsplit

OFFLINE = "offline"          # HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set
UNREACHABLE = "unreachable"  # the endpoint refused, timed out or does not resolve
ONLINE = "online"

CONNECT_TIMEOUT = 2.0
_TRUE = ("1", "on", "yes", "true")
_cache: dict[str, tuple[float, str]] = {}
_cache_lock = threading.Lock()
_CACHE_SECONDS = 30.0


def endpoint() -> str:
    """The hub's base URL (``HF_ENDPOINT`` when set)."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def offline_env() -> bool:
    """True when the environment forbids hub calls (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any((os.environ.get(name) or "").strip().lower() in _TRUE
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _connects(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_state(timeout: float = CONNECT_TIMEOUT) -> str:
    """:data:`OFFLINE`, :data:`UNREACHABLE` or :data:`ONLINE`, decided by the environment and one TCP
    connect to the endpoint (at most ``timeout`` seconds; remembered for 30 s per endpoint)."""
    if offline_env():
        return OFFLINE
    url = endpoint()
    with _cache_lock:
        hit = _cache.get(url)
        if hit and time.monotonic() - hit[0] < _CACHE_SECONDS:
            return hit[1]
    state = ONLINE if _connects(url, timeout) else UNREACHABLE
    with _cache_lock:
        _cache[url] = (time.monotonic(), state)
    return state


def forget() -> None:
    """Drop the remembered answers (tests change ``HF_ENDPOINT`` between cases)."""
    with _cache_lock:
        _cache.clear()


def unreachable_reason(state: str) -> str:
    """The plain words for a state that is not :data:`ONLINE`."""
    if state == OFFLINE:
        return "HF_HUB_OFFLINE is set, so the Hugging Face hub is not asked"
    return f"the Hugging Face hub cannot be reached ({endpoint()})"


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """Hide huggingface_hub's own retry and download warnings (the caller reports one line instead)."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "huggingface_hub.utils._http",
                                                   "huggingface_hub.file_download", "urllib3", "httpx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def not_cached_reason(what: str, state: str | None = None) -> str:
    """One line for a hub model that is not in the local cache, told apart by why it cannot be fetched:
    ``HF_HUB_OFFLINE`` is set, the hub cannot be reached, or (looked up in the cache only) not cached."""
    if state == OFFLINE:
        return (f"{what} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: unset it to "
                f"download it once, or give a local folder")
    if state == UNREACHABLE:
        return (f"{what} is not in the local Hugging Face cache and the Hugging Face hub cannot be reached "
                f"({endpoint()}): connect once to download it, or give a local folder")
    return f"{what} is not in the local Hugging Face cache: download it once, or give a local folder"


def download(repo_id: str, filename: str, timeout: float = 10.0) -> str:
    """``hf_hub_download`` with its retry warnings hidden and a short timeout (the hub is known to answer)."""
    from huggingface_hub import hf_hub_download

    with quiet_hub():
        return hf_hub_download(repo_id, filename, etag_timeout=timeout)
