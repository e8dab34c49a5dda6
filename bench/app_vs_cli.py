"""Benchmark: is the app slower than the CLI for the same work? (issue 22, item 4)

    python bench/app_vs_cli.py [--per-tag 60] [--counts 10,30,60] [--repeats 2] [--pairs 4]

One store: the clothing sample and a real-only sweep (``len(counts) × repeats`` runs at 256 px, trained
once first so the embedding cache is warm for both sides). Then, interleaved ABAB (order flipped every
other pair), the same work — every run reset to queued, trained with the default local probe and scored on
the test photos:

* **app**: a real ``streamlit run`` on that store with one Chromium tab open on the Train page; the runs are
  queued as the Train page queues them (:func:`core.train.training.submit_training`) and the app's own
  worker trains them and scores each as it finishes; timed from the submit until every run is scored;
* **CLI**: ``python -m core train --slices <sweep>`` (which scores before it exits), the whole process.

Prints the median of the paired ratios app / CLI and the load average; the goal is ≤ 1.0× (no slower).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.experiment import reset_runs  # noqa: E402
from bench.paired import bench_env, interleave, machine, timed_process  # noqa: E402
from core.data import samples, slicing  # noqa: E402
from core.store.database import Store  # noqa: E402
from core.train import training  # noqa: E402
from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

SWEEP = "bench-real"


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=ROOT,
                            env={**bench_env(), "SYNTHLAB_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("streamlit did not start")


def all_scored(store: Store, run_ids: list[int]) -> bool:
    runs = training.list_runs(store, run_ids)
    failed = [r["id"] for r in runs if r["status"] in ("failed", "cancelled")]
    if failed:
        raise SystemExit(f"runs {failed} did not finish in the app")
    return all(r["status"] == "done" and r["metrics"].get("evaluation") for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-tag", type=int, default=60)
    parser.add_argument("--test-per-tag", type=int, default=20)
    parser.add_argument("--counts", default="10,30,60")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        store = Store(home)
        samples.load_clothing_sample(store, per_tag=args.per_tag, test_per_tag=args.test_per_tag, size=256)
        slicing.build_sweep(store, slicing.sweep(SWEEP, [int(c) for c in args.counts.split(",")], (256,),
                                                 real_fraction=1.0, repeats=args.repeats))
        cli = [sys.executable, "-m", "core", "--home", str(home), "train", "--slices", SWEEP]
        timed_process(cli)  # warms the embedding cache: both sides then fit and score only
        run_ids = [r["id"] for r in training.list_runs(store)]
        print(f"{len(run_ids)} runs; {_load()}")
        app, url = start_app(home)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                tab = browser.new_page()
                tab.goto(url + "/train")
                tab.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=120_000)

                def in_app(i: int) -> float:
                    reset_runs(store, run_ids)
                    start = time.perf_counter()
                    training.submit_training(store, [SWEEP], "local", {})
                    while not all_scored(store, run_ids):
                        time.sleep(0.05)
                    return time.perf_counter() - start

                def on_cli(i: int) -> float:
                    reset_runs(store, run_ids)
                    return timed_process(cli)

                paired = interleave(in_app, on_cli, args.pairs)
                browser.close()
        finally:
            app.kill()
            app.wait()
            store.close()
    print(f"app (one tab open) vs CLI, {len(run_ids)} runs trained and scored: {paired.summary('app', 'cli')}; "
          f"{_load()}")
    print(f"goal: app no slower than the CLI (≤ 1.0×): {'yes' if paired.median <= 1.0 else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
