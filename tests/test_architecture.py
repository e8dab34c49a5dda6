"""The layer rule (README "Architecture") holds and is enforced: import-linter's contracts pass here and
fail on a planted upward import; ruff passes; no core module over 500 lines, no page over 120; every
string target of the job and backend registries resolves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 500
MAX_PAGE_LINES = 120


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache"],
                          cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})


def test_import_contracts_pass():
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout


@pytest.mark.parametrize("module, line", [
    ("core/store/database.py", "from core.analysis import stats  # planted\n"),
    ("core/data/samples.py", "import streamlit  # planted\n"),
    ("core/analysis/compare.py", "import plotly  # planted\n"),
    ("core/models/hub.py", "import ray  # planted\n"),
])
def test_a_planted_violation_fails_the_contracts(tmp_path, module, line):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copytree(ROOT / "core", copy / "core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / module
    target.write_text(line + target.read_text())
    out = _lint_imports(copy)
    assert out.returncode != 0 and "BROKEN" in out.stdout, out.stdout[-2000:]


def test_ruff_passes():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-1000:]


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_core_module_over_500_lines():
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / "core").rglob("*.py") if (n := _lines(p)) > MAX_MODULE_LINES}
    assert not big, f"split these along their verbs: {big}"


def test_no_page_over_120_lines():
    big = {p.name: n for p in (ROOT / "pages").glob("*.py") if (n := _lines(p)) > MAX_PAGE_LINES}
    assert not big, f"move view logic into core: {big}"


def test_package_inits_hold_no_code():
    """No compatibility re-exports: a package's __init__ is its docstring."""
    import ast

    for init in (ROOT / "core").rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body), init


def test_every_registry_target_resolves():
    from core.run import registry
    from core.train.backends import registry as backend_registry

    for kind, target in registry.HANDLERS.items():
        if target.startswith("core."):
            assert callable(registry.resolve(target)), kind
    for kind, targets in registry.FOLLOW_ONS.items():
        for target in targets:
            assert callable(registry.resolve(target)), (kind, target)
    for name, target in backend_registry.BACKENDS.items():
        assert callable(registry.resolve(target)), name
    from core.generate.remote import RENDER
    from core.models.remote import EMBED

    for target in (RENDER, EMBED):
        assert callable(registry.resolve(target)), target
