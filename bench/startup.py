"""Benchmark: CLI start-up per command, as whole processes, against ``tags list``; and each command's
heaviest import.

    python bench/startup.py [--pairs 5]

For every light command (``tags list``, ``jobs list``, ``images list``, ``slice``, ``export``, ``generate``
with nothing left to make, ``report``) the command and ``tags list`` run as fresh processes, interleaved
(ABAB…), on one small store built here (digits, a slice, a tiny random-weight Stable Diffusion whose
series is already complete). Printed per command: the median of the paired ratios command / ``tags list``
with min and max, and the heaviest module it imported (``python -X importtime``, cumulative). The bar for
``generate`` with nothing to make is ≤ 3×.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.paired import ROOT, bench_env, interleave, machine  # noqa: E402

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def heaviest_import(cmd: list[str]) -> tuple[str, float]:
    """(module, seconds cumulative) of the heaviest import outside ``core`` (or ``-`` when none)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd], env=bench_env(), cwd=ROOT,
                          capture_output=True, text=True)
    best = ("-", 0.0)
    for line in proc.stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if m and not m.group(4).startswith(("core", "encodings", "site")):
            seconds = int(m.group(2)) / 1e6
            if seconds > best[1]:
                best = (m.group(4), seconds)
    return best


def build_store(tmp: Path) -> tuple[Path, dict[str, list[str]]]:
    from core.data import slicing
    from core.generate.generation import generate
    from core.generate.planning import GenerationSpec
    from core.store.database import Store
    from tests.datasets import import_digits
    from tests.tiny_models import build_tiny_sd

    home = tmp / "home"
    store = Store(home)
    import_digits(store, tmp / "digits", n_train=10, n_test=2, size=32, n_tags=2)
    slicing.build_slices(store, slicing.SliceSpec(name="bench", counts=(4,), real_fraction=1.0))
    model = build_tiny_sd(tmp / "sd")
    store.add_tag("jeans", "blue jeans")
    gen = ["--tag", "jeans", "--count", "2", "--model", str(model), "--steps", "1", "--width", "64",
           "--height", "64"]
    generate(store, GenerationSpec(tag="jeans", count=2, model=str(model), steps=1, width=64, height=64))
    store.close()
    commands = {
        "tags list": ["tags", "list"],
        "jobs list": ["jobs", "list"],
        "images list": ["images", "list"],
        "slice (existing)": ["slice", "--name", "bench", "--counts", "4", "--real-fraction", "1"],
        "export": ["export", "bench", "--out", str(tmp / "export.zip")],
        "generate (nothing to make)": ["generate", *gen],
        "report (no results: refused)": ["report", "--out", str(tmp / "r.html")],
    }
    return home, commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    a = parser.parse_args(argv)
    print(machine(with_torch=False))
    with tempfile.TemporaryDirectory(prefix="synthlab-bench-startup-") as tmp:
        home, commands = build_store(Path(tmp))
        base = [sys.executable, "-m", "core", "--home", str(home)]

        def run(args: list[str]) -> float:
            start = time.perf_counter()
            proc = subprocess.run(base + args, env=bench_env(), cwd=ROOT, capture_output=True, text=True)
            if proc.returncode not in (0, 2):  # 2: report refuses a store without results, by design
                raise SystemExit(f"{args} failed:\n{proc.stderr}")
            return time.perf_counter() - start

        print(f"{'command':<30} {'ratio to tags list (median [min, max])':<40} heaviest import")
        for name, args in commands.items():
            pairs = interleave(lambda i: run(args), lambda i: run(commands["tags list"]), a.pairs)
            module, seconds = heaviest_import(base[1:] + args)
            r = pairs.ratios
            bar = " (bar ≤ 3×: " + ("meets" if pairs.median <= 3 else "MISSES") + ")" if name.startswith(
                "generate") else ""
            print(f"{name:<30} {pairs.median:6.2f}× [{min(r):.2f}, {max(r):.2f}], {sum(pairs.a) / len(pairs.a):.2f} s"
                  f"{'':<6} {module} {seconds:.2f} s{bar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
