"""One place for settings: every ``SYNTHLAB_*`` name the code reads is in ``core.config.SETTINGS`` and in the
README's table, and a setting is read at call time (environment first, then a registered secrets source)."""

from __future__ import annotations

import re
from pathlib import Path

from core import config

ROOT = Path(__file__).resolve().parents[2]
INTERNAL = {"SYNTHLAB_RAY_OWNER"}  # a marker between processes, not a setting


def test_every_setting_read_in_core_is_listed_and_documented():
    used = {m for p in (ROOT / "core").rglob("*.py") for m in re.findall(r'"(SYNTHLAB_[A-Z_]+)"', p.read_text())}
    assert used - INTERNAL <= set(config.SETTINGS), sorted(used - INTERNAL - set(config.SETTINGS))
    readme = (ROOT / "README.md").read_text()
    assert not [n for n in config.SETTINGS if f"| `{n}` |" not in readme]


def test_a_setting_is_read_at_call_time_environment_before_secrets(monkeypatch):
    monkeypatch.delenv("SYNTHLAB_AZURE_TIER", raising=False)
    secrets = {"SYNTHLAB_AZURE_TIER": "F0"}
    config.register_secret_source(secrets.get)
    try:
        assert config.setting("SYNTHLAB_AZURE_TIER") == "F0"
        monkeypatch.setenv("SYNTHLAB_AZURE_TIER", "S0")
        assert config.setting("SYNTHLAB_AZURE_TIER") == "S0"
    finally:
        config._secret_sources.remove(secrets.get)
