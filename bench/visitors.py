"""Benchmark: does a generation job keep its speed while many visitors poll the app?

    python bench/visitors.py [--visitors 1,10,50] [--workers thread,process] [--count 40] [--size 128]
                             [--steps 4] [--repeats 2] [--model FOLDER]

A real ``streamlit run streamlit_app.py`` (pinned to CPU 0 with ``taskset`` when there are 2+ CPUs) and,
in another process pinned to CPU 1, N lightweight visitors: websocket clients speaking Streamlit's own
protocol (``/_stcore/stream``, BackMsg/ForwardMsg protobufs) that open the Generate page and rerun the
job-status fragment every time the server asks them to (``auto_rerun``, 1 s), exactly what an open tab
does — without a browser's own CPU. While they poll, the app's worker runs one generation job.

Baseline, interleaved with every app run (ABAB…): the same job through ``python -m core generate`` on
the same CPU with no visitors. Rate = images/s over the job's second half (by then every visitor polls
the fragment; the pipeline is loaded in both). Prints, per worker kind and N, the median of the paired
ratios app/CLI with min and max, and the machine, torch threads and versions.

``--workers process`` runs the job worker as its own process (``SYNTHLAB_WORKER=process`` →
``python -m core worker``), ``thread`` inside the Streamlit process (the default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# -- the visitors (this file run with --client): N websocket sessions in one asyncio process ---------

async def _visitor(url: str, stop: asyncio.Event, counts: dict) -> None:
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    async with websockets.connect(url, subprotocols=["streamlit"], max_size=None, open_timeout=60) as ws:
        page_hash = ""
        fragments: dict[str, float] = {}

        async def rerun(fragment: str = "") -> None:
            msg = BackMsg()
            msg.rerun_script.query_string = ""
            msg.rerun_script.page_script_hash = page_hash
            if fragment:
                msg.rerun_script.fragment_id = fragment
                msg.rerun_script.is_auto_rerun = True
            await ws.send(msg.SerializeToString())
            counts["reruns"] += 1

        await rerun()
        last_full = time.monotonic()
        while not stop.is_set():
            try:
                data = await asyncio.wait_for(ws.recv(), timeout=0.2)
                fwd = ForwardMsg()
                fwd.ParseFromString(data)
                kind = fwd.WhichOneof("type")
                if kind == "new_session" and fwd.new_session.page_script_hash:
                    page_hash = fwd.new_session.page_script_hash
                elif kind == "auto_rerun":
                    fragments[fwd.auto_rerun.fragment_id] = fwd.auto_rerun.interval
            except asyncio.TimeoutError:
                pass
            now = time.monotonic()
            if not fragments and now - last_full > 3:  # no job shown yet: look again, as a user would
                last_full = now
                await rerun()
            for fragment, interval in list(fragments.items()):
                due = counts.setdefault(f"next-{id(ws)}-{fragment}", now + interval)
                if now >= due:
                    counts[f"next-{id(ws)}-{fragment}"] = now + interval
                    await rerun(fragment)


async def _visitors(url: str, n: int, seconds: float) -> dict:
    counts = {"reruns": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.call_later(seconds, stop.set)
    results = await asyncio.gather(*(_visitor(url, stop, counts) for _ in range(n)), return_exceptions=True)
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    return {"reruns": counts["reruns"], "errors": errors[:3], "failed": len(errors)}


# -- the measurement -----------------------------------------------------------------------------------

def _pin(cpu: int) -> list[str]:
    if os.cpu_count() and os.cpu_count() >= 2 and Path("/usr/bin/taskset").exists():
        return ["taskset", "-c", str(cpu)]
    return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _half_rate(db: Path, job_id: int, timeout: float = 900) -> float:
    """Images/s of a job over its second half, read from the store's job row as it progresses."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    t_half = half = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT done, total, status, error FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row:
                done, total, status, error = row
                if status == "failed":
                    raise SystemExit(f"job {job_id} failed: {error}")
                if total and t_half is None and done >= total // 2:
                    t_half, half = time.monotonic(), done
                if status == "done":
                    return (total - half) / max(time.monotonic() - t_half, 1e-6)
            time.sleep(0.02)
    finally:
        conn.close()
    raise SystemExit(f"job {job_id} did not finish in {timeout} s")


def _job_ids(db: Path) -> set[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {r[0] for r in conn.execute("SELECT id FROM jobs WHERE kind = 'generate'")}
    finally:
        conn.close()


def _new_job(db: Path, before: set[int], timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = _job_ids(db) - before
        if new:
            return min(new)
        time.sleep(0.02)
    raise SystemExit("the job did not appear")


def _generate_args(a, model: str, seed: int) -> list[str]:
    return ["--tag", "jeans", "--count", str(a.count), "--model", model, "--width", str(a.size), "--height",
            str(a.size), "--steps", str(a.steps), "--guidance", "0", "--seed", str(seed)]


def cli_rate(a, home: Path, model: str, seed: int, env: dict) -> float:
    db = home / "lab.db"
    before = _job_ids(db)
    proc = subprocess.Popen([*_pin(0), sys.executable, "-m", "core", "--home", str(home), "generate",
                             *_generate_args(a, model, seed)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rate = _half_rate(db, _new_job(db, before))
    proc.wait(600)
    return rate


def app_rate(a, home: Path, model: str, seed: int, port: int, n: int, env: dict) -> tuple[float, dict]:
    """Submit the job into the app's queue (the app's worker runs it) while N visitors poll."""
    from core.generate.generation import submit_generation
    from core.generate.planning import GenerationSpec
    from core.store.database import Store

    seconds = 600
    visitors = subprocess.Popen([*_pin(1), sys.executable, __file__, "--client", f"ws://127.0.0.1:{port}/_stcore/stream",
                                 "--n", str(n), "--seconds", str(seconds)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2 + n * 0.05)  # let them connect and run the page once
    store = Store(home)
    job_id = submit_generation(store, GenerationSpec(tag="jeans", count=a.count, model=model, width=a.size,
                                                     height=a.size, steps=a.steps, guidance=0.0, seed=seed))
    store.close()
    rate = _half_rate(home / "lab.db", job_id)
    visitors.send_signal(signal.SIGINT)
    try:
        out, err = visitors.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        visitors.kill()
        out, err = visitors.communicate()
    report = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"errors": [err[-500:]]}
    return rate, report


def start_app(home: Path, port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([*_pin(0), sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    raise SystemExit("streamlit did not start")


def stop_app(proc: subprocess.Popen, home: Path) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(20)
    from core.run import worker

    pid = worker.alive(home)
    if pid and pid > 0:  # the worker process this run's app started
        os.kill(pid, signal.SIGTERM)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--visitors", default="1,10,50")
    p.add_argument("--workers", default="thread,process")
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model", help="a diffusers folder (default: a random-weight one built here)")
    p.add_argument("--client", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.client:
        print(json.dumps(asyncio.run(_visitors(a.client, a.n, a.seconds))))
        return

    import torch

    from core.store.database import Store

    tmp = Path(tempfile.mkdtemp(prefix="synthlab-visitors-"))
    model = a.model
    if not model:
        from tests.tiny_models import build_tiny_sd

        model = build_tiny_sd(tmp / "model", unet_channels=(32, 64), vae_channels=(16, 32, 32, 32), text_hidden=32)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "SYNTHLAB_DEMO_MODELS": model}
    counts = [int(x) for x in a.visitors.split(",")]
    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}; torch {torch.__version__}, "
          f"1 torch thread; python {platform.python_version()}; app on CPU 0, visitors on CPU 1"
          f"{'' if _pin(0) else ' (no taskset: not pinned)'}")
    print(f"job: {a.count} images, {a.size} px, {a.steps} steps; rate over the job's second half; "
          f"baseline python -m core generate, interleaved")
    seed = 0
    summary = {}
    for kind in a.workers.split(","):
        home = tmp / f"home-{kind}"
        s = Store(home)
        s.add_tag("jeans", "{blue|black} jeans on a white background")
        s.close()
        port = _free_port()
        app = start_app(home, port, {**env, "SYNTHLAB_HOME": str(home), "SYNTHLAB_WORKER": kind})
        try:
            seed += 1000
            app_rate(a, home, model, seed, port, 1, env)  # warm: load the pipeline in the worker
            for n in counts:
                ratios, rates = [], []
                for _ in range(a.repeats):
                    seed += 1000
                    base = cli_rate(a, home, model, seed, env)
                    seed += 1000
                    ours, report = app_rate(a, home, model, seed, port, n, env)
                    ratios.append(ours / base)
                    rates.append((ours, base, report.get("reruns"), report.get("errors")))
                med = statistics.median(ratios)
                summary[(kind, n)] = med
                detail = "; ".join(f"{o:.2f} vs {b:.2f} img/s, {r} reruns{' ' + str(e) if e else ''}"
                                   for o, b, r, e in rates)
                print(f"worker={kind:<7} visitors={n:>3}: app/CLI median {med:.3f} "
                      f"(min {min(ratios):.3f}, max {max(ratios):.3f}) — {detail}", flush=True)
        finally:
            stop_app(app, home)
    for kind in a.workers.split(","):
        worst = summary.get((kind, max(counts)))
        if worst is not None:
            print(f"loss at {max(counts)} visitors, worker={kind}: {100 * (1 - worst):.0f} %")


if __name__ == "__main__":
    main()
