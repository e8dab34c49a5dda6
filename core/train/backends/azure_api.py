"""The client layer of the Azure backend: the SDK's training and prediction clients (one per process
and key), a client-side rate limit, and :class:`AzureApi`, through which every call is made — retried
on 429, 408, 5xx and dropped connections with bounded exponential back-off honouring ``Retry-After``.

Every message raised here is passed through :func:`core.train.backends.azure_settings.scrub`: keys never leave memory.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Optional

from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from msrest.authentication import ApiKeyCredentials
from msrest.exceptions import ClientRequestError, HttpOperationError

from core.errors import BackendError, MissingSetting, UserError
from core.train.backends import azure_settings as az
from core.train.backends.azure_settings import AzureAuthError, AzureSettings, AzureUnreachable, scrub

log = logging.getLogger("synthlab.azure")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

class AzureRequestError(BackendError):
    """Azure answered a call with an error that retrying will not fix. ``status``/``code`` allow branching."""

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status, self.code = status, code



class RateLimiter:
    """At most ``rate`` calls per second from this process to one endpoint (0: no limit). Thread-safe."""

    def __init__(self, rate: float):
        self.rate = rate
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.rate:
            return
        with self._lock:
            t = time.monotonic()
            start = max(t, self._next)
            self._next = start + 1.0 / self.rate
        if start > t:
            time.sleep(start - t)


_lock = threading.Lock()
_limiters: dict[str, RateLimiter] = {}
_clients: dict[tuple, Any] = {}


def _limiter(name: str, rate: float) -> RateLimiter:
    with _lock:
        limiter = _limiters.setdefault(name, RateLimiter(rate))
        limiter.rate = rate
        return limiter


def fingerprint(value: str) -> str:
    """A digest that tells keys apart in cache keys without holding the key itself."""
    return hashlib.sha256(value.encode()).hexdigest()


def _configure(client: Any, settings: AzureSettings) -> Any:
    client.config.retry_policy.retries = 0  # ours retries, with Retry-After and a time bound
    client.config.connection.timeout = settings.timeout
    return client


def training_client(settings: AzureSettings) -> CustomVisionTrainingClient:
    """The SDK training client for these settings, one per process (cached; the key stays in memory)."""
    key = ("training", settings.training_endpoint, fingerprint(settings.training_key), settings.timeout)
    with _lock:
        if key not in _clients:
            credentials = ApiKeyCredentials(in_headers={"Training-key": settings.training_key})
            _clients[key] = _configure(CustomVisionTrainingClient(settings.training_endpoint, credentials), settings)
        return _clients[key]


def prediction_client(settings: AzureSettings) -> CustomVisionPredictionClient:
    """The SDK prediction client (needs ``VISION_PREDICTION_ENDPOINT`` and ``VISION_PREDICTION_KEY``)."""
    if not (settings.prediction_endpoint and settings.prediction_key):
        raise MissingSetting("VISION_PREDICTION_ENDPOINT and VISION_PREDICTION_KEY are needed to classify "
                                "with a published iteration")
    key = ("prediction", settings.prediction_endpoint, fingerprint(settings.prediction_key), settings.timeout)
    with _lock:
        if key not in _clients:
            credentials = ApiKeyCredentials(in_headers={"Prediction-key": settings.prediction_key})
            _clients[key] = _configure(CustomVisionPredictionClient(settings.prediction_endpoint, credentials),
                                       settings)
        return _clients[key]


def _retry_after(exc: BaseException) -> Optional[float]:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(raw) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


def _detail(exc: BaseException) -> tuple[Optional[int], Optional[str], str]:
    """(HTTP status, CustomVisionError code, message) of an SDK error; gateway bodies
    (``{"error": {...}}``, 401/429) leave ``exc.error.code`` None, so read the body too."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    error = getattr(exc, "error", None)
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if (not code or not message) and response is not None:
        try:
            body = response.json()
            inner = body.get("error", body) if isinstance(body, dict) else {}
            code = code or inner.get("code")
            message = message or inner.get("message")
        except Exception:  # noqa: BLE001 - not JSON: fall back to the exception's text
            pass
    return status, code, str(message or exc)


def _network_reason(exc: BaseException) -> str:
    text = str(exc)
    for pattern, reason in (
        (r"Connection refused", "connection refused"),
        (r"Name or service not known|nodename nor servname|getaddrinfo failed|Temporary failure in name resolution",
         "the host name does not resolve"),
        (r"timed out|Timeout", "timed out"),
        (r"RemoteDisconnected|Connection aborted|Connection reset|closed connection", "the connection was dropped"),
        (r"SSL|certificate", "TLS/certificate error"),
    ):
        if re.search(pattern, text):
            return reason
    return "no answer"


UNREACHABLE_SECONDS = 20.0
_NEVER_ANSWERS = ("connection refused", "the host name does not resolve")


class AzureApi:
    """Every SDK call, retried and rate-limited.

    An endpoint that has not answered once yet and refuses connections or does not resolve (a typo,
    a closed port) is given up on after ``UNREACHABLE_SECONDS`` rather than the whole retry budget.

    ``call`` retries 429, 408 and 5xx answers and dropped connections with exponential back-off
    (``Retry-After`` honoured), until ``retry_seconds`` would be exceeded; other errors become a clear
    :class:`UserError` at once (401 → :class:`AzureAuthError`). ``recover`` (optional) is asked before a
    retry that follows a 5xx or a dropped connection — the request may have been carried out — and
    its non-None answer is returned instead of repeating the call.
    """

    def __init__(self, settings: AzureSettings, tier: str = "S0", *, retry_seconds: Optional[float] = None):
        self.settings = settings
        self.tier = tier
        self.retry_seconds = settings.retry_seconds if retry_seconds is None else retry_seconds
        self.calls = 0
        self.retries = 0
        self.answered = False

    def training(self, what: str, method: str, *args: Any, recover: Optional[Callable[[], Any]] = None,
                 **kwargs: Any) -> Any:
        client = training_client(self.settings)
        return self._call("training", what, getattr(client, method), args, kwargs, recover)

    def prediction(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        client = prediction_client(self.settings)
        return self._call("prediction", what, getattr(client, method), args, kwargs, None)

    def _call(self, api: str, what: str, fn: Callable, args: tuple, kwargs: dict,
              recover: Optional[Callable[[], Any]]) -> Any:
        endpoint = self.settings.training_endpoint if api == "training" else self.settings.prediction_endpoint
        limiter = _limiter(f"{api}:{endpoint}", self.settings.requests_per_second(self.tier))
        started, attempt = time.monotonic(), 0
        while True:
            limiter.wait()
            self.calls += 1
            try:
                result = fn(*args, **kwargs)
                self.answered = True
                return result
            except ClientRequestError as exc:
                error, status, wait = exc, None, None
            except HttpOperationError as exc:
                self.answered = True
                status = getattr(exc.response, "status_code", None)
                if status not in RETRY_STATUSES:
                    raise self._refused(api, what, exc) from None
                error, wait = exc, _retry_after(exc)
            if wait is None:
                wait = min(self.settings.backoff * 2 ** attempt, self.settings.max_wait)
                wait *= 1 + 0.1 * random.random()
            elapsed = time.monotonic() - started
            budget = self.retry_seconds
            if status is None and not self.answered and _network_reason(error) in _NEVER_ANSWERS:
                budget = min(budget, UNREACHABLE_SECONDS)
            if elapsed + wait > budget:
                raise self._gave_up(api, what, error, status, attempt + 1, elapsed) from None
            log.info("azure %s: %s (%s); retry %d in %.2f s", api, what,
                     status or _network_reason(error), attempt + 1, wait)
            time.sleep(wait)
            attempt += 1
            self.retries += 1
            if recover is not None and (status is None or status >= 500):
                found = recover()
                if found is not None:
                    return found

    def _names(self, api: str) -> tuple[str, str]:
        prefix = "VISION_TRAINING" if api == "training" else "VISION_PREDICTION"
        return ("training" if api == "training" else "prediction"), prefix

    def _scrub(self, text: str) -> str:
        return scrub(text, self.settings.secrets())

    def _refused(self, api: str, what: str, exc: BaseException) -> UserError:
        status, code, message = _detail(exc)
        which, prefix = self._names(api)
        if status == 401:
            return AzureAuthError(self._scrub(
                f"Azure refused the {which} key (401) while {what}: check {prefix}_KEY, and that "
                f"{prefix}_ENDPOINT is the endpoint of that key's resource"))
        if status == 403:
            return AzureAuthError(self._scrub(f"Azure refused access (403) while {what}: {message}"))
        return AzureRequestError(self._scrub(f"Azure Custom Vision refused {what} ({status}"
                                             f"{' ' + code if code else ''}): {message}"), status, code)

    def _gave_up(self, api: str, what: str, exc: BaseException, status: Optional[int], tries: int,
                 elapsed: float) -> UserError:
        which, prefix = self._names(api)
        endpoint = self.settings.training_endpoint if api == "training" else self.settings.prediction_endpoint
        spent = f"{tries} tries in {elapsed:.0f} s"
        if status is None:
            return AzureUnreachable(self._scrub(
                f"cannot reach Azure Custom Vision at {endpoint} while {what}: {_network_reason(exc)} ({spent}) — "
                f"check {prefix}_ENDPOINT and the network"))
        if status == 429:
            return AzureRequestError(self._scrub(
                f"Azure kept throttling (429) while {what} ({spent}): the {self.tier} tier allows "
                f"{az.TIER_LIMITS[self.tier]['requests_per_second']:g} requests/s — try again later"), status, "429")
        _, code, message = _detail(exc)
        return AzureRequestError(self._scrub(
            f"Azure Custom Vision was unavailable ({status}) while {what} ({spent}): {message}"), status, code)
