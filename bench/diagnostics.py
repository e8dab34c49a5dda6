"""Benchmark: ``python -m core diagnose`` on a large one-tag store — peak memory and cold vs warm time.

    python bench/diagnostics.py [--images 20000] [--px 32] [--sizes 32] [--pairs 2] [--encoder ID_OR_FOLDER]

Builds a store with ``--images`` distinct small photos in one tag (half ``synthetic``, half ``real``;
Fashion-MNIST's training photos when installed, else scikit-learn's digits with per-image noise),
written straight into the store's layout in one transaction (no per-image fsync: building is not what
is measured). Then, ``--pairs`` times: clear every cache diagnose fills (embeddings, pixel features,
image signatures, resized copies, duplicate clusters) and run ``diagnose`` cold, then again warm —
whole processes, as a user runs them, measured with ``os.wait4`` (wall time and the child's peak
RSS). Prints each pair, the median of the paired cold/warm ratios with min and max, the peak RSS,
the machine, torch threads and versions, and whether the targets hold (peak RSS < 1.5 GB, warm ≥ 5×
faster). Default encoder: the tiny random CLIP of the tests (the probe's cost, not a big model's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

RSS_TARGET = 1.5 * 2 ** 30
SPEEDUP_TARGET = 5.0
TAG = "clothes"


def _photos(n: int, px: int):
    """``n`` distinct greyscale photos as uint8 arrays, ``px`` square."""
    import numpy as np
    from PIL import Image

    from tests.datasets import fashion_arrays, fashion_available

    if fashion_available():
        arrays, _ = fashion_arrays("train")
        extra = fashion_arrays("t10k")[0]
        pool = np.concatenate([arrays, extra])
    else:
        from sklearn.datasets import load_digits

        pool = (load_digits().images * (255 / 16)).astype(np.uint8)
    rng = np.random.default_rng(0)
    for k in range(n):
        base = pool[k % len(pool)]
        img = np.asarray(Image.fromarray(base).resize((px, px), Image.Resampling.BICUBIC), dtype=np.int16)
        if k >= len(pool):  # a second pass over the pool: noise makes each image distinct
            img = img + rng.integers(-12, 13, img.shape)
        yield np.clip(img, 0, 255).astype(np.uint8)


def build_store(home: str | os.PathLike, n: int, px: int = 32) -> Path:
    """A store at ``home`` with ``n`` distinct images in tag ``clothes`` (even index synthetic, odd real)."""
    import hashlib

    from PIL import Image

    from core.store.database import Store, png_bytes
    from core.store.records import now

    store = Store(home)
    store.add_tag(TAG)
    rows = []
    for k, arr in enumerate(_photos(n, px)):
        data = png_bytes(Image.fromarray(arr).convert("RGB"))
        image_id = hashlib.sha256(data).hexdigest()
        path = store.image_file(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        rows.append((image_id, TAG, "synthetic" if k % 2 == 0 else "real", str(path.relative_to(store.root)),
                     px, px, None if k % 2 else f"a photo of clothes, variant {k % 97}", now()))
    with store.tx() as conn:
        conn.executemany("INSERT OR IGNORE INTO images(id, tag, source, path, width, height, prompt, created) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    store.close()
    return Path(home)


def clear_caches(home: str | os.PathLike) -> None:
    """Forget everything diagnose caches (the next run is cold)."""
    from core.store.database import Store

    store = Store(home)
    with store.tx() as conn:
        conn.execute("DELETE FROM embeddings")
        conn.execute("DELETE FROM image_signatures")
    store.close()
    for sub in ("resized", "duplicates"):
        shutil.rmtree(Path(home) / "cache" / sub, ignore_errors=True)


def run_diagnose(home: str | os.PathLike, encoder: str, sizes: str = "32", timeout: float = 3600) -> dict:
    """One whole ``python -m core diagnose --json`` process: ``{"seconds", "peak_rss", "result"}``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "core", "--home", str(home), "diagnose", "--sizes", sizes,
                                 "--encoder", encoder, "--json"], stdout=out, stderr=err, env=env, cwd=ROOT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                raise TimeoutError(f"diagnose ran over {timeout} s")
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RuntimeError(f"diagnose exited {code}: {err.read()[-2000:]}")
        lines = out.read().strip().splitlines()
    return {"seconds": seconds, "peak_rss": usage.ru_maxrss * 1024, "result": json.loads(lines[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--px", type=int, default=32)
    parser.add_argument("--sizes", default="32")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--encoder", help="hub id or local folder (default: the tests' tiny random CLIP)")
    a = parser.parse_args(argv)

    import numpy
    import sklearn
    import torch

    with tempfile.TemporaryDirectory(prefix="synthlab-bench-diag-") as tmp:
        encoder = a.encoder
        if not encoder:
            from tests.tiny_clip import build_tiny_clip

            encoder = build_tiny_clip(Path(tmp) / "clip")
        home = Path(tmp) / "home"
        t = time.perf_counter()
        build_store(home, a.images, a.px)
        print(f"built a store of {a.images} images ({a.px} px, one tag) in {time.perf_counter() - t:.1f} s")
        ratios, peaks = [], []
        for k in range(a.pairs):
            clear_caches(home)
            cold = run_diagnose(home, encoder, a.sizes)
            warm = run_diagnose(home, encoder, a.sizes)
            ratios.append(cold["seconds"] / warm["seconds"])
            peaks += [cold["peak_rss"], warm["peak_rss"]]
            misses = warm["result"]["cache"]
            print(f"pair {k + 1}: cold {cold['seconds']:.1f} s ({cold['peak_rss'] / 2 ** 20:.0f} MB), "
                  f"warm {warm['seconds']:.1f} s ({warm['peak_rss'] / 2 ** 20:.0f} MB), ratio {ratios[-1]:.2f}; "
                  f"warm cache {json.dumps(misses)}")
        tag = cold["result"]["tags"][TAG]
        print(f"result: pixel AUC {tag['pixel_auc']} {tag['pixel_auc_ci']}, encoder AUC {tag['auc']}, "
              f"{len(tag['duplicate_clusters'])} duplicate clusters")
    median = statistics.median(ratios)
    peak = max(peaks)
    print(f"cold/warm: median of {len(ratios)} paired ratios {median:.2f}× (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}); peak RSS {peak / 2 ** 20:.0f} MB")
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
          f"{platform.platform()}; torch {torch.__version__} threads {os.environ.get('OMP_NUM_THREADS', '1')} "
          f"(torch default {torch.get_num_threads()}); numpy {numpy.__version__}, scikit-learn {sklearn.__version__}, "
          f"python {platform.python_version()}")
    ok = peak < RSS_TARGET and median >= SPEEDUP_TARGET
    print(f"targets: peak RSS < 1.5 GB {'yes' if peak < RSS_TARGET else 'NO'}; warm ≥ {SPEEDUP_TARGET:g}× faster "
          f"{'yes' if median >= SPEEDUP_TARGET else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
