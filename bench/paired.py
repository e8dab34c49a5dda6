"""What every benchmark here shares: A and B measured interleaved (ABAB…, the order flipped every other
pair so neither side always runs first), the median of the paired ratios with their min and max, and a
line saying what machine, torch threads and library versions the numbers came from."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Paired:
    """Times of A (ours) and B (the baseline), pair by pair; ``ratios`` are A/B per pair."""

    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [x / y for x, y in zip(self.a, self.b) if y > 0]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    def summary(self, a_name: str = "ours", b_name: str = "plain") -> str:
        r = self.ratios
        return (f"{a_name} / {b_name}: median of {len(r)} paired ratios {statistics.median(r):.3f}× "
                f"(min {min(r):.3f}×, max {max(r):.3f}×); median {a_name} {statistics.median(self.a):.3f} s, "
                f"{b_name} {statistics.median(self.b):.3f} s")


def interleave(run_a: Callable[[int], float], run_b: Callable[[int], float], pairs: int) -> Paired:
    """``pairs`` pairs, A then B, then B then A, …; each callable gets the pair index and returns seconds."""
    out = Paired()
    for i in range(pairs):
        if i % 2 == 0:
            out.a.append(run_a(i))
            out.b.append(run_b(i))
        else:
            out.b.append(run_b(i))
            out.a.append(run_a(i))
    return out


def timed_process(cmd: list[str], env: dict | None = None, cwd: Path = ROOT) -> float:
    """Seconds a whole process takes; a failure stops the benchmark with its stderr."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env or bench_env(), cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:5])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def bench_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(with_torch: bool = True) -> str:
    """One line: CPU, cores, OS, Python, torch threads and device, and the versions that matter."""
    parts = [cpu_name(), f"{os.cpu_count()} cores", f"{platform.system()} {platform.release()}",
             f"Python {platform.python_version()}"]
    versions = {}
    for name in ("PIL", "numpy", "torch", "diffusers", "transformers", "sklearn") if with_torch else ("PIL", "numpy"):
        try:
            module = __import__(name)
            versions["Pillow" if name == "PIL" else name] = getattr(module, "__version__", "?")
        except ImportError:
            continue
    if with_torch and "torch" in sys.modules:
        import torch

        parts.append(f"torch threads {torch.get_num_threads()}")
        parts.append("CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA")
    parts.append(", ".join(f"{k} {v}" for k, v in versions.items()))
    return "machine: " + " · ".join(parts)
