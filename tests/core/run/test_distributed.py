"""Generation and embedding on Ray: one local Ray for the module (``ray.init(num_cpus=2)`` on 127.0.0.1,
dashboard off), the tiny diffusers model, and real faults — a worker killed by its pid, a cancelled job, a
job process killed with ``kill -9``, an address nobody answers, and a ``ray start --head`` cluster joined
through ``SYNTHLAB_RAY_ADDRESS``. Every Ray process a test starts is stopped by that test, by its pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import UserError
from core.generate.generation import generate
from core.generate.planning import GenerationSpec
from core.models import embedding_cache, encoder_resolution, encoders, remote
from core.run import cluster, jobs
from core.run import pool as ray_pool
from core.store.database import Store
from tests.reliability.conftest import assert_consistent, snapshot

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
       "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "SYNTHLAB_RAY_CPUS": "2"}
ENV.pop(cluster.ADDRESS_SETTING, None)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for every in-process test here (start-up is slow on two shared cores)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # advertise 127.0.0.1: loopback only
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             object_store_memory=128 * 1024 ** 2)
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    yield ray
    ray_pool.stop_warm_pools()
    ray.shutdown()


@pytest.fixture
def no_cluster(monkeypatch):
    monkeypatch.delenv(cluster.ADDRESS_SETTING, raising=False)


def _tag(store):
    store.add_tag("jeans", "{blue|black|ripped} jeans on {a street|a white background}")


def _local_ids(tmp_path, tiny_sd, count, seed, batch_size=1):
    s = Store(tmp_path / "local-ref")
    try:
        _tag(s)
        result = generate(s, GenerationSpec(tag="jeans", count=count, model=tiny_sd, seed=seed,
                                            batch_size=batch_size))
        return result["images"]
    finally:
        s.close()


def _series(store, result):
    rows = store.query("SELECT series_index, id FROM images WHERE series = ? ORDER BY series_index",
                       (result["series"],))
    return [r["series_index"] for r in rows], [r["id"] for r in rows]


def _gone(pids, timeout=20.0):
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                alive.discard(pid)
        time.sleep(0.2)
    return not alive


# -- in this process, on the module's Ray -----------------------------------------------------------

def test_same_image_ids_with_and_without_ray(ray_local, no_cluster, store, tiny_sd, tmp_path):
    expected = _local_ids(tmp_path, tiny_sd, 6, 3, batch_size=2)
    _tag(store)
    result = generate(store, GenerationSpec(tag="jeans", count=6, model=tiny_sd, seed=3, batch_size=2), workers=2)
    assert result["engine"] == "ray" and result["workers"] == 2
    assert result["images"] == expected
    indices, ids = _series(store, result)
    assert indices == list(range(6)) and ids == expected
    assert {im["provenance"]["engine"] for im in store.list_images("jeans")} == {"ray"}
    again = generate(store, GenerationSpec(tag="jeans", count=6, model=tiny_sd, seed=3, batch_size=2), workers=2)
    assert again["generated"] == 0 and again["skipped"] == 6 and again["images"] == expected
    assert ray_local.is_initialized()  # a Ray this process started is left to it


def test_embedding_on_workers_fills_the_same_cache(ray_local, no_cluster, store, tiny_clip):
    from PIL import Image

    store.add_tag("dots")
    rng = np.random.default_rng(0)
    for k in range(10):
        store.add_image(Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)), tag="dots", source="real")
    images = store.list_images("dots")
    ref = encoder_resolution.resolve_encoder(tiny_clip)
    view = embedding_cache.View.of(32)
    with remote.embedding_workers(2) as pool:
        assert pool is not None and len(pool.actors) == 2
        on_ray = embedding_cache.embed_images(store, ref, images, view, batch_size=3)
    rows = store.query("SELECT COUNT(*) AS n FROM embeddings")[0]["n"]
    assert rows == 10
    local = encoders.embed(ref, [encoders.load_image(store, im, 32) for im in images])
    np.testing.assert_allclose(on_ray, local, rtol=1e-4, atol=1e-5)
    stats = embedding_cache.CacheStats()
    embedding_cache.embed_images(store, ref, images, view, stats=stats)
    assert stats.as_dict() == {"hits": 10, "misses": 0}


def test_worker_killed_by_pid_mid_job_still_gives_exactly_n(ray_local, no_cluster, store, tiny_sd, tmp_path):
    expected = _local_ids(tmp_path, tiny_sd, 8, 11)
    _tag(store)
    killed: list[int] = []
    pids: list[int] = []

    def progress(done, total, message):
        if "saved" in message and not killed:
            pool = ray_pool.current_pool()
            pids.extend(pool.pids())
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    result = generate(store, GenerationSpec(tag="jeans", count=8, model=tiny_sd, seed=11, batch_size=1), progress, workers=2)
    assert killed and _gone(killed, 1)
    assert result["generated"] == 8
    indices, ids = _series(store, result)
    assert indices == list(range(8))
    assert ids == expected and len(set(ids)) == 8
    assert store.count_images("jeans") == 8
    assert_consistent(store.root)


def test_cancel_stops_the_workers(ray_local, no_cluster, store, tiny_sd):
    _tag(store)
    seen: list[int] = []

    def progress(done, total, message):
        if "saved" in message and not seen:
            seen.extend(ray_pool.current_pool().pids())
            job = jobs.list_jobs(store, kind="generate", status="running")[0]
            jobs.cancel(store, job["id"])

    with pytest.raises(UserError, match="was cancelled with"):
        generate(store, GenerationSpec(tag="jeans", count=40, model=tiny_sd, seed=5), progress, workers=2)
    job = jobs.list_jobs(store, kind="generate")[0]
    assert job["status"] == "cancelled"
    made = store.count_images("jeans")
    assert 1 <= made < 40
    assert seen and _gone(seen)
    time.sleep(1)
    assert store.count_images("jeans") == made  # nothing arrives after the stop
    assert_consistent(store.root)


def test_workers_asked_for_nonsense_is_refused_before_anything_is_written(store, tiny_sd):
    _tag(store)
    before = snapshot(store.root)
    for bad, message in ((-1, "between 0 and"), ("2", "whole number"), (10_000, "between 0 and")):
        with pytest.raises(UserError, match=message):
            generate(store, GenerationSpec(tag="jeans", count=2, model=tiny_sd), workers=bad)
    assert snapshot(store.root) == before


def test_sizing_gives_one_gpu_each_or_splits_the_cpus(monkeypatch):
    monkeypatch.delenv("SYNTHLAB_DEVICE", raising=False)
    gpu = cluster.size_workers(2, {"CPU": 16.0, "GPU": 2.0})
    assert (gpu.num_gpus, gpu.device, gpu.num_cpus) == (1.0, "cuda", 4.0)
    import torch

    cpu = cluster.size_workers(3, {"CPU": 12.0})
    assert (cpu.num_gpus, cpu.device, cpu.num_cpus, cpu.threads) == (0.0, "cpu", 4.0, torch.get_num_threads())
    monkeypatch.setenv("SYNTHLAB_RAY_THREADS", "share")
    assert cluster.size_workers(3, {"CPU": 12.0}).threads == 4
    monkeypatch.delenv("SYNTHLAB_RAY_THREADS")
    assert cluster.size_workers(4, {"CPU": 2.0}).num_cpus == 0.5
    with pytest.raises(UserError, match="3 workers need 3 GPUs but the Ray cluster has 2"):
        cluster.size_workers(3, {"CPU": 16.0, "GPU": 2.0})
    monkeypatch.setenv("SYNTHLAB_DEVICE", "cpu")
    assert cluster.size_workers(2, {"CPU": 8.0, "GPU": 2.0}).num_gpus == 0.0


def test_engine_status_never_starts_ray(monkeypatch):
    monkeypatch.delenv(cluster.ADDRESS_SETTING, raising=False)
    status = cluster.engine_status()
    assert status["available"] is True and status["cpus"] >= 1
    assert "CPUs" in cluster.describe_status(status)


# -- the CLI in its own process: local Ray per job, kill -9, unreachable and real clusters -----------

def _cli(home, *args, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "core", "--home", str(home), *args], capture_output=True,
                          text=True, env=env or ENV, cwd=ROOT, timeout=timeout)


def _session_processes(sid):
    out = subprocess.run(["ps", "-o", "pid=", "-s", str(sid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _marked_processes(token_prefix):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if f"SYNTHLAB_RAY_OWNER={token_prefix}".encode() in env:
            found.append(int(name))
    return found


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_kill_9_of_the_job_process_leaves_whole_images_and_no_ray(tmp_path, tiny_sd):
    """The CLI starts its own local Ray; killed mid-job it leaves only whole images, its Ray goes too,
    and the same command without Ray makes exactly what is missing — image i unchanged."""
    home = tmp_path / "home"
    assert _cli(home, "tags", "add", "jeans", "--prompt",
                "{blue|black|ripped} jeans on {a street|a white background}").returncode == 0
    args = ["generate", "--tag", "jeans", "--count", "12", "--model", tiny_sd, "--seed", "2", "--batch-size", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), *args, "--workers", "2"],
                            env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        made = 0
        while made < 1 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            try:
                with sqlite3.connect(home / "lab.db") as db:
                    made = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            except sqlite3.Error:
                pass
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    marker = f"{proc.pid}-"
    deadline = time.monotonic() + 30
    while _marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    leftover = _marked_processes(marker)
    for pid in leftover:  # only this run's Ray processes, by pid, so the suite is clean either way
        os.kill(pid, signal.SIGKILL)
    assert leftover == []
    Store(home).close()  # a kill mid-write may leave a .tmp- file, never a row without its file; opening removes it
    state = assert_consistent(home)
    with sqlite3.connect(home / "lab.db") as db:
        partial = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    assert 1 <= partial < 12
    done = _cli(home, *args, "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["engine"] == "local" and out["skipped"] == partial and out["generated"] == 12 - partial
    assert len(set(out["images"])) == 12
    assert out["images"] == _local_ids(tmp_path, tiny_sd, 12, 2)
    assert_consistent(home)
    assert state is not None


def test_unreachable_cluster_fails_in_seconds_with_one_line(tmp_path, tiny_sd):
    home = tmp_path / "home"
    assert _cli(home, "tags", "add", "jeans", "--prompt", "jeans").returncode == 0
    before = snapshot(home)
    closed = f"127.0.0.1:{_free_port()}"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    silent = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        for addr in (closed, silent):
            started = time.monotonic()
            proc = _cli(home, "generate", "--tag", "jeans", "--count", "2", "--model", tiny_sd, "--workers", "2",
                        env={**ENV, cluster.ADDRESS_SETTING: addr}, timeout=60)
            took = time.monotonic() - started
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode == 2, proc.stderr
            assert len(lines) == 1 and addr in lines[0] and "Traceback" not in proc.stderr, proc.stderr
            assert took <= 15, took
            assert snapshot(home) == before
    finally:
        listener.close()


@pytest.mark.slow
def test_joins_a_ray_start_head_cluster_via_the_address(tmp_path, tiny_sd):
    """``ray start --head --block`` on loopback; the CLI joins it through SYNTHLAB_RAY_ADDRESS; the head is
    stopped by its pid (its process group, which it started, after that)."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # Ray's socket paths must stay short
    head_env = {**ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    head = subprocess.Popen(["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp}",
                             "--disable-usage-stats"], env=head_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        home = tmp_path / "home"
        assert _cli(home, "tags", "add", "jeans", "--prompt",
                    "{blue|black|ripped} jeans on {a street|a white background}").returncode == 0
        for line in head.stdout:  # ready once it says so
            if "Ray runtime started" in line:
                break
        threading.Thread(target=head.stdout.read, daemon=True).start()
        env = {**ENV, cluster.ADDRESS_SETTING: f"127.0.0.1:{port}"}
        proc = _cli(home, "generate", "--tag", "jeans", "--count", "6", "--model", tiny_sd, "--seed", "3",
                    "--workers", "2", "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["engine"] == "ray" and out["generated"] == 6
        assert out["images"] == _local_ids(tmp_path, tiny_sd, 6, 3, batch_size=None)
        with sqlite3.connect(home / "lab.db") as db:
            assert db.execute("SELECT COUNT(*), COUNT(DISTINCT series_index) FROM images").fetchone() == (6, 6)
        assert head.poll() is None  # the cluster outlives the job that joined it
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        for _ in range(40):
            if not _session_processes(head.pid):
                break
            time.sleep(0.25)
        rest = _session_processes(head.pid)
        if rest:
            os.killpg(head.pid, signal.SIGKILL)
    assert rest == []
