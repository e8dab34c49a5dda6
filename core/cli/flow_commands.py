"""Commands that run a whole flow: ``experiment run``."""

from __future__ import annotations

import argparse
import sys

from core.cli import common
from core.store.database import Store


def _stage_printer():
    """Each stage on its own stderr line (any stream); a terminal also gets the live counter."""
    live = common.progress_printer("experiment")
    last = {"stage": None}

    def show(done: int, total: int, message: str = "") -> None:
        stage = message.split(":", 1)[0]
        if stage != last["stage"]:
            last["stage"] = stage
            if live is None:
                print(f"experiment {done}/{total}: {message}", file=sys.stderr, flush=True)
        if live is not None:
            live(done, total, message)

    return show


def cmd_experiment_run(store: Store, a: argparse.Namespace) -> dict:
    from core.flows.experiment_run import ExperimentRun, run_experiment

    defaults = ExperimentRun()
    spec = ExperimentRun(per_tag=a.per_tag, test_per_tag=a.test_per_tag,
                         counts=tuple(a.counts) if a.counts else tuple(c for c in defaults.counts if c <= a.per_tag),
                         sizes=tuple(a.sizes) if a.sizes else defaults.sizes, repeats=a.repeats,
                         model=a.model or defaults.model, seed=a.seed)
    result = run_experiment(store, spec, progress=_stage_printer())
    for line in result["sentences"] + [f"missing: {m}" for m in result["missing"]]:
        print(line)
    return result
