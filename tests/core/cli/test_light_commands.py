"""Light commands import nothing heavy: after each one, in a fresh process, none of torch, diffusers,
transformers, sklearn or pandas is in ``sys.modules`` (``generate`` with nothing left to make included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.data import slicing
from core.generate.generation import generate
from core.generate.planning import GenerationSpec
from tests.datasets import import_digits

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("torch", "diffusers", "transformers", "sklearn", "pandas")
PROBE = r"""
import contextlib, io, json, sys
from core.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def modules_after(home: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, "--home", str(home), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                                                       "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def light_store(tmp_path_factory, tiny_sd):
    from core.store.database import Store

    root = tmp_path_factory.mktemp("light")
    store = Store(root / "home")
    import_digits(store, root / "digits", n_train=5, n_test=1, size=32, n_tags=2)
    slicing.build_slices(store, slicing.SliceSpec(name="s", counts=(3,), real_fraction=1.0,
                                                              tags=("one", "zero")))
    store.add_tag("jeans", "blue jeans")
    generate(store, GenerationSpec(tag="jeans", count=2, model=str(tiny_sd), steps=1, width=64, height=64))
    store.close()
    return root


@pytest.mark.parametrize("args", [
    ("tags", "list"), ("jobs", "list"), ("images", "list", "--tag", "jeans"),
    ("slice", "--name", "s", "--counts", "3", "--real-fraction", "1", "--tags", "one,zero"),
    ("slice", "--name", "s64", "--counts", "3", "--real-fraction", "1", "--size", "48", "--tags", "one,zero"),
    ("export", "s", "--out", "{root}/s.zip"),
    ("generate", "--tag", "jeans", "--count", "2", "--model", "{model}", "--steps", "1", "--width", "64",
     "--height", "64"),
], ids=lambda a: " ".join(a[:2]))
def test_a_light_command_imports_no_heavy_library(light_store, tiny_sd, args):
    args = [a.format(root=light_store, model=tiny_sd) for a in args]
    seen = modules_after(light_store / "home", *args)
    assert seen == {"code": 0, "heavy": []}


def test_generate_with_something_to_make_does_load_torch(light_store, tiny_sd):
    """The probe itself sees heavy imports when they happen (so the test above can fail)."""
    seen = modules_after(light_store / "home", "generate", "--tag", "jeans", "--count", "3", "--model", str(tiny_sd),
                         "--steps", "1", "--width", "64", "--height", "64")
    assert seen["code"] == 0 and {"torch", "diffusers"} <= set(seen["heavy"])


def test_report_imports_pandas_only_when_it_has_tables_to_draw(light_store):
    """``report`` on a store with no results refuses (exit 2) without loading pandas or any model library."""
    seen = modules_after(light_store / "home", "report", "--out", str(light_store / "r.html"))
    assert seen == {"code": 2, "heavy": []}
