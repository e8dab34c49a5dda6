"""Ray: where the cluster is, its session, how workers are sized, and its status line.

With ``SYNTHLAB_RAY_ADDRESS`` unset a local Ray is started for the job (on 127.0.0.1, dashboard off, CPUs
bounded by ``SYNTHLAB_RAY_CPUS`` or this machine's count) and stopped after it; a Ray already initialised
in this process is used as it is. ``host:port`` or ``auto`` joins an existing cluster; one that cannot be
reached fails in seconds with a :class:`ClusterUnreachable`. The engine knows no domain: what runs on the
workers is any importable function (:mod:`core.run.pool`). Ray is imported only when workers are asked for.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from core import config
from core.errors import UserError

ADDRESS_SETTING = "SYNTHLAB_RAY_ADDRESS"
CPUS_SETTING = "SYNTHLAB_RAY_CPUS"
MAX_WORKERS = 256
CONNECT_SECONDS = 9.0
TCP_SECONDS = 3.0
OBJECT_STORE_BYTES = 256 * 1024 ** 2
_ROOT = Path(__file__).resolve().parents[2]


class RayUnavailable(UserError):
    """``--workers`` was asked for but Ray is not installed."""


class ClusterUnreachable(UserError):
    """``SYNTHLAB_RAY_ADDRESS`` names a cluster that cannot be joined."""


class WorkersFailed(UserError):
    """Every worker died and could not be replaced."""


# -- what is asked for ---------------------------------------------------------------------------

def available() -> bool:
    """Whether Ray can be imported here (checked without importing it)."""
    return importlib.util.find_spec("ray") is not None


def address() -> Optional[str]:
    """The cluster to join (``SYNTHLAB_RAY_ADDRESS``), or None for a local Ray per job."""
    value = (config.setting(ADDRESS_SETTING) or "").strip()
    return value or None


def check_workers(workers: Any) -> int:
    """Validate a ``--workers`` value: 0 (or None) means no Ray; 1..MAX_WORKERS needs Ray installed."""
    if workers is None:
        return 0
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise UserError(f"workers must be a whole number, not {workers!r}")
    if not 0 <= workers <= MAX_WORKERS:
        raise UserError(f"workers must be between 0 and {MAX_WORKERS}, not {workers}")
    if workers and not available():
        raise RayUnavailable("--workers needs Ray: pip install 'ray==2.60.0' (or leave --workers out)")
    return workers


def engine(workers: int) -> str:
    """The engine name a result reports: ``ray`` with workers, else ``local``."""
    return "ray" if workers else "local"


# -- joining or starting a cluster ---------------------------------------------------------------

def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _split(addr: str) -> tuple[str, int]:
    text = addr.split("://", 1)[-1].strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterUnreachable(f"{ADDRESS_SETTING}={addr!r} is not host:port or auto")
    return host.strip("[]"), int(port)


def _tcp_check(addr: str) -> None:
    host, port = _split(addr)
    try:
        socket.create_connection((host, port), timeout=TCP_SECONDS).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else (exc.strerror or str(exc))
        raise ClusterUnreachable(f"cannot reach the Ray cluster at {addr} ({reason}); start it with "
                                 f"`ray start --head` or unset {ADDRESS_SETTING}") from None


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def _prepare_env(local: bool, addr: Optional[str]) -> None:
    """Environment Ray reads when it is imported and initialised.

    A local Ray (or a loopback cluster) advertises 127.0.0.1, so its servers listen on loopback only.
    Joining a cluster with a token on this machine turns token authentication on, as ``ray start``
    does for its own head (Ray leaves it off for an explicit address).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    loopback = local or (addr not in (None, "auto") and _is_loopback(_split(addr)[0]))
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if not local and "RAY_AUTH_MODE" not in os.environ and _token_available():
        os.environ["RAY_AUTH_MODE"] = "token"


_PROBE = """
import json, sys
from ray.autoscaler.v2.sdk import get_cluster_status
status = get_cluster_status(sys.argv[1], timeout=int(float(sys.argv[2])))
print(json.dumps(status.total_resources()))
"""


def probe(addr: str, timeout: float = CONNECT_SECONDS) -> dict:
    """The resources of the cluster at ``addr``, asked of its GCS by a short-lived process that is killed
    after ``timeout`` s (Ray itself retries an unanswering address for minutes). ``auto`` is the cluster
    this machine is part of: ``RAY_ADDRESS``, else the one ``ray start`` recorded (:func:`auto_address`)."""
    if addr == "auto":
        addr = auto_address()
    _tcp_check(addr)
    _prepare_env(False, addr)
    proc = subprocess.Popen([sys.executable, "-c", _PROBE, addr, str(timeout)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, env=os.environ.copy())
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise ClusterUnreachable(f"the Ray cluster at {addr} did not answer within {timeout:g} s"
                                 f"{_auth_hint(err)}") from None
    if proc.returncode != 0:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        last = lines[-1][:200] if lines else f"exit status {proc.returncode}"
        raise ClusterUnreachable(f"cannot join the Ray cluster at {addr}: {last}{_auth_hint(err)}")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ClusterUnreachable(f"cannot join the Ray cluster at {addr}: no answer") from None


def auto_address() -> str:
    """What ``auto`` names, found as Ray finds it but without importing Ray: ``RAY_ADDRESS``, else the address
    ``ray start`` wrote to ``ray_current_cluster`` in Ray's temp folder (``RAY_TMPDIR`` or the system's)."""
    import tempfile

    env = (os.environ.get("RAY_ADDRESS") or "").strip()
    if env and env != "auto":
        return env
    recorded = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        text = recorded.read_text().strip()
    except OSError:
        text = ""
    if not text:
        raise ClusterUnreachable(f"{ADDRESS_SETTING}=auto, but no Ray cluster runs on this machine; start one "
                                 f"with `ray start --head` or unset {ADDRESS_SETTING}")
    return text.splitlines()[0].strip()


_reachable: dict[str, tuple[float, dict]] = {}
REACHABLE_TTL = 60.0


def ensure_reachable(addr: Optional[str] = None) -> Optional[dict]:
    """Check the configured cluster (default ``SYNTHLAB_RAY_ADDRESS``) answers, before a job is queued;
    a success is remembered for :data:`REACHABLE_TTL` s. None when no cluster is configured."""
    addr = addr or address()
    if not addr:
        return None
    hit = _reachable.get(addr)
    if hit and time.monotonic() - hit[0] < REACHABLE_TTL:
        return hit[1]
    resources = probe(addr)
    _reachable[addr] = (time.monotonic(), resources)
    return resources


def _auth_hint(err: str) -> str:
    if "InvalidAuthToken" in (err or "") or "Unauthenticated" in (err or ""):
        return " (authentication token missing or wrong: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN)"
    return ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def local_cpus() -> int:
    """CPUs a local Ray gets: ``SYNTHLAB_RAY_CPUS`` or this machine's count."""
    text = config.setting(CPUS_SETTING)
    if text:
        try:
            return max(1, int(text))
        except ValueError:
            raise UserError(f"{CPUS_SETTING} must be a whole number, not {text!r}") from None
    return os.cpu_count() or 1


@contextlib.contextmanager
def session() -> Iterator[dict]:
    """Ray connected for the length of the block: ``{"address", "started", "resources"}``.

    A Ray already initialised in this process is used and left running; otherwise a cluster is joined
    (``SYNTHLAB_RAY_ADDRESS``) or a local one started, and shut down at the end of the block.
    """
    addr = address()
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        ray = sys.modules["ray"]
        yield {"address": ray.get_runtime_context().gcs_address, "started": False,
               "resources": ray.cluster_resources()}
        return
    if addr:
        ensure_reachable(addr)
    _prepare_env(addr is None, addr)
    import ray

    with _ray_lock:
        if addr:
            try:
                ray.init(address=addr, log_to_driver=False, logging_level=logging.ERROR,
                         runtime_env=_runtime_env(addr))
            except Exception as exc:  # noqa: BLE001 - told as one line naming the address
                raise ClusterUnreachable(f"cannot join the Ray cluster at {addr}: {type(exc).__name__}: "
                                         f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
                                         ) from None
        else:
            _inherit_path()
            reaper = _Reaper.start()
            try:
                ray.init(num_cpus=local_cpus(), include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, object_store_memory=OBJECT_STORE_BYTES)
            finally:
                os.environ.pop(_OWNER, None)
    try:
        yield {"address": addr or ray.get_runtime_context().gcs_address, "started": True,
               "resources": ray.cluster_resources()}
    finally:
        with _ray_lock:
            ray.shutdown()
        if not addr:
            reaper.stop()


_ray_lock = threading.Lock()
_OWNER = "SYNTHLAB_RAY_OWNER"
_REAPER = """
import os, signal, sys, time
mark = ("%s=" % sys.argv[1]).encode() + sys.argv[2].encode() + b"\\0"
sys.stdin.buffer.read()
for _ in range(20):
    found = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as fh:
                env = fh.read() + b"\\0"
        except OSError:
            continue
        if b"\\0" + mark in b"\\0" + env:
            found += 1
            try:
                os.kill(int(name), signal.SIGKILL)
            except OSError:
                pass
    if not found:
        break
    time.sleep(0.25)
"""


@dataclass
class _Reaper:
    """Stops the processes of a local Ray if the job's process dies without shutting it down.

    Ray's node processes fate-share with their driver, but their agents can outlive a ``kill -9``.
    Every process of a local Ray this module starts carries a marker in its environment; a watcher
    process, holding the read end of a pipe from the job's process, kills exactly the marked
    processes when that pipe closes (at a normal stop too, for stragglers).
    """

    proc: Optional[subprocess.Popen]

    @classmethod
    def start(cls) -> "_Reaper":
        if not Path("/proc/self/environ").exists():
            return cls(None)
        token = f"{os.getpid()}-{time.time_ns()}"
        env = {k: v for k, v in os.environ.items() if k != _OWNER}
        proc = subprocess.Popen([sys.executable, "-c", _REAPER, _OWNER, token], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                env=env, close_fds=True)
        os.environ[_OWNER] = token
        return cls(proc)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def _inherit_path() -> None:
    """A local Ray's workers inherit this environment: put this checkout on their PYTHONPATH (so they
    start from Ray's prestarted pool, without a runtime env of their own)."""
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(_ROOT) not in parts:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *parts])


def _runtime_env(addr: str) -> dict:
    """How workers of a cluster import ``core``: this checkout on PYTHONPATH for a cluster on this
    machine; the package itself shipped to a remote one (whose nodes must have the requirements)."""
    if addr == "auto" or _is_loopback(_split(addr)[0]):
        path = os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {"PYTHONPATH": path}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "SYNTHLAB_DEVICE", "SYNTHLAB_TAESD"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        return {"env_vars": env}
    return {"py_modules": [str(_ROOT / "core")]}


# -- sizing workers ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sizing:
    """What each actor asks Ray for, and the device and torch threads it then uses."""

    workers: int
    num_cpus: float
    num_gpus: float
    device: str
    threads: int


def size_workers(workers: int, resources: dict) -> Sizing:
    """One GPU each when the cluster has GPUs (and ``SYNTHLAB_DEVICE`` does not force the CPU), else the
    cluster's CPUs split evenly between the workers."""
    gpus = float(resources.get("GPU", 0) or 0)
    forced = (config.setting("SYNTHLAB_DEVICE") or "").lower()
    cpus = float(resources.get("CPU", 0) or 0)
    if gpus >= 1 and not forced.startswith("cpu"):
        if workers > gpus:
            raise UserError(f"{workers} workers need {workers} GPUs but the Ray cluster has {gpus:g}: "
                            f"use --workers {int(gpus)} or add GPU nodes")
        per_cpu = max(1.0, min(cpus / workers, 4.0)) if cpus else 1.0
        return Sizing(workers, per_cpu, 1.0, "cuda", max(1, int(per_cpu)))
    if cpus <= 0:
        raise UserError("the Ray cluster has no CPUs to run workers on")
    per_cpu = cpus / workers
    return Sizing(workers, round(per_cpu, 3), 0.0, forced or "cpu", _cpu_threads(per_cpu))


def _cpu_threads(share: float) -> int:
    """Torch threads of a CPU worker: this process's own count (``SYNTHLAB_RAY_THREADS`` overrides).

    Ray reserves each worker an even share of the CPUs, but a CPU convolution's sums depend on how many
    threads split them, so a worker computes with the thread count a local run has: image *i* is then
    the same pixels whatever the number of workers. ``SYNTHLAB_RAY_THREADS=share`` uses the share instead
    (faster when the share is larger; the pixels may then differ from a local run's in the last bit).
    """
    text = (config.setting("SYNTHLAB_RAY_THREADS") or "").strip()
    if text == "share":
        return max(1, int(share))
    if text.isdigit() and int(text) > 0:
        return int(text)
    import torch

    return torch.get_num_threads()


# -- status for the sidebar ----------------------------------------------------------------------


_status_cache: dict[str, tuple[float, dict]] = {}
_status_lock = threading.Lock()
STATUS_TTL = 60.0


def _this_machine() -> dict:
    gpus = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    elif Path("/proc/driver/nvidia/gpus").is_dir():
        gpus = len(list(Path("/proc/driver/nvidia/gpus").iterdir()))
    return {"CPU": float(local_cpus()), "GPU": float(gpus)}


def engine_status() -> dict:
    """What the sidebar shows, cheaply: ``{"available", "mode", "address", "cpus", "gpus", "state"}``.

    Never starts Ray. A Ray live in this process reports its resources; a configured cluster is probed
    in a background thread (the first call says ``checking``) and cached for :data:`STATUS_TTL` s;
    without a cluster, the CPUs and GPUs a local Ray would get on this machine.
    """
    if not available():
        return {"available": False, "mode": "local", "address": None, "cpus": None, "gpus": None,
                "state": "Ray not installed"}
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        res = sys.modules["ray"].cluster_resources()
        return {"available": True, "mode": "ray", "address": address() or "local",
                "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0), "state": "running"}
    addr = address()
    if addr is None:
        res = _this_machine()
        return {"available": True, "mode": "ray (local, started per job)", "address": None,
                "cpus": res["CPU"], "gpus": res["GPU"], "state": "idle"}
    with _status_lock:
        hit = _status_cache.get(addr)
        fresh = hit is not None and time.monotonic() - hit[0] < STATUS_TTL
        if not fresh and not getattr(engine_status, "_probing", False):
            engine_status._probing = True  # type: ignore[attr-defined]
            threading.Thread(target=_refresh_status, args=(addr,), daemon=True).start()
    if hit is None:
        return {"available": True, "mode": "ray cluster", "address": addr, "cpus": None, "gpus": None,
                "state": "checking"}
    return hit[1]


def _refresh_status(addr: str) -> None:
    try:
        res = probe(addr)
        value = {"available": True, "mode": "ray cluster", "address": addr, "cpus": res.get("CPU", 0),
                 "gpus": res.get("GPU", 0), "state": "reachable"}
    except UserError as exc:
        value = {"available": True, "mode": "ray cluster", "address": addr, "cpus": None, "gpus": None,
                 "state": f"unreachable: {exc}"}
    with _status_lock:
        _status_cache[addr] = (time.monotonic(), value)
        engine_status._probing = False  # type: ignore[attr-defined]


def describe_status(status: dict) -> str:
    """One line for the sidebar."""
    if not status["available"]:
        return "Engine: **local** (Ray not installed)"
    where = f" at {status['address']}" if status.get("address") else ""
    if status["cpus"] is None:
        return f"Engine: local; Ray: {status['mode']}{where} — {status['state']}"
    return (f"Engine: local; Ray: {status['mode']}{where} — {status['cpus']:g} CPUs, "
            f"{status['gpus']:g} GPUs ({status['state']})")
