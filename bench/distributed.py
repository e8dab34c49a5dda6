"""Benchmark: generation on Ray workers against plain local generation, paired and interleaved.

    python bench/distributed.py [--model HUB_ID_OR_FOLDER] [--count 12] [--steps 8] [--size 64]
                                [--workers 2] [--pairs 5]

Two paired series, each alternating A B, B A, …: ``generate`` in this process (local engine, warm
pipeline) against ``--workers 1``, then against ``--workers N``, on one Ray started here once (warm
actors, each with its pipeline; a series keeps its pool). Every way writes into a fresh store, so it is the whole job: planning, hand-out, PNG
transfer, and this process writing every file and row. Printed: images/s of each, and the median
(min, max) over rounds of the paired ratios local/Ray-1 (the overhead; on a 2-core box the bar is
≤ 1.3×) and Ray-N/local (the scaling; on one CPU box the cores are shared, on a GPU box each worker
has its own GPU). The image ids of the three ways are checked to be the same. A cold start (Ray,
actors, pipeline loads) is timed once and shown apart.

Default model: a random-weight Stable Diffusion built here, big enough that a step is real work.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray on 127.0.0.1
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

PROMPT = "a photo of {blue|black} jeans on a {white|grey} background"


def _run(tmp: Path, name: str, model: str, a, seed: int, workers: int) -> tuple[float, list[str]]:
    from core.generate.generation import generate
    from core.generate.planning import GenerationSpec
    from core.store.database import Store

    store = Store(tmp / name)
    try:
        store.add_tag("bench", PROMPT)
        spec = GenerationSpec(tag="bench", count=a.count, model=model, steps=a.steps, width=a.size,
                              height=a.size, seed=seed, batch_size=a.batch_size)
        start = time.perf_counter()
        result = generate(store, spec, workers=workers)
        seconds = time.perf_counter() - start
        assert result["generated"] == a.count, result
        return a.count / seconds, result["images"]
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub id or local folder (default: a random SD model built here)")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=5)
    a = parser.parse_args(argv)

    import ray
    import torch

    from core import config
    from core.run import cluster, pool

    with tempfile.TemporaryDirectory(prefix="synthlab-bench-ray-") as tmp:
        tmp = Path(tmp)
        model = a.model
        if not model:
            from tests.tiny_models import build_tiny_sd

            model = build_tiny_sd(tmp / "model", unet_channels=(32, 64), vae_channels=(16, 32, 32, 32),
                                  text_hidden=32, sample_size=a.size // 8)
        cold = time.perf_counter()
        ray.init(num_cpus=cluster.local_cpus(), include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        try:
            _run(tmp, "warm-local", model, a, 10_000, 0)
            _run(tmp, "warm-ray1", model, a, 10_000, 1)
            cold_s = time.perf_counter() - cold
            res = ray.cluster_resources()
            print(f"machine {platform.machine()} {os.cpu_count()} CPUs · device {config.device()} · torch "
                  f"{torch.__version__}, {torch.get_num_threads()} threads here · ray {ray.__version__} "
                  f"({res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs) · python {platform.python_version()}")
            print(f"{a.count} images of {a.size}px, {a.steps} steps, batch {a.batch_size}; model {model}")
            print(f"cold start (Ray start, a first local job, a first 1-worker job with its actor and pipeline load): "
                  f"{cold_s:.1f} s — not in the ratios")
            for label, n in (("ray-1", 1), (f"ray-{a.workers}", a.workers)):
                local_rates, ray_rates = [], []
                _run(tmp, f"warm-{label}", model, a, 20_000, n)  # this pool's actors up and loaded
                for r in range(a.pairs):
                    pair = [("local", 0), (label, n)] if r % 2 == 0 else [(label, n), ("local", 0)]
                    ids = {}
                    for name, workers in pair:
                        rate, ids[name] = _run(tmp, f"{label}-{name}-{r}", model, a, r, workers)
                        (local_rates if workers == 0 else ray_rates).append(rate)
                    assert ids["local"] == ids[label], "image ids differ between engines"
                ratio = [lo / ry for lo, ry in zip(local_rates, ray_rates)]
                print(f"local {statistics.median(local_rates):.3f} images/s vs {label} "
                      f"{statistics.median(ray_rates):.3f} images/s (medians of {a.pairs} pairs); local/{label}: "
                      f"median {statistics.median(ratio):.3f}x (min {min(ratio):.3f}, max {max(ratio):.3f})"
                      + ("; bar <= 1.3x" if n == 1 else ""))
            print("image ids identical between local and Ray in every pair: yes")
        finally:
            pool.stop_warm_pools()
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
