"""The sidebar's lines (issue 25 item 5): Azure is named once in every mode, and a public demo visitor is never
shown the server's folders."""

from __future__ import annotations

import pytest

from core.views import status_lines


def azure_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "Azure" in line]


@pytest.mark.parametrize("mode", ["", "team", "demo"])
def test_azure_is_named_once_with_and_without_a_key(store, monkeypatch, mode):
    monkeypatch.setenv("SYNTHLAB_MODE", mode or "local")
    without = status_lines.sidebar_lines(store, mode, workspace_id="ab" * 16, user="ana", device="cpu")
    assert len(azure_lines(without)) == 1
    assert azure_lines(without)[0] == ("Azure Custom Vision: off in this demo (the host has set no keys)." if mode == "demo"
                                       else "Azure Custom Vision key: (not set)")
    monkeypatch.setenv("VISION_TRAINING_KEY", "k" * 28 + "4a6f")
    with_key = status_lines.sidebar_lines(store, mode, workspace_id="ab" * 16, user="ana", device="cpu")
    assert azure_lines(with_key) == ["Azure Custom Vision key: ••••••••4a6f"]
    assert "Device: **cpu**" in with_key and with_key[0] == {"demo": with_key[0], "team": "Signed in as ana"}.get(
        mode, "Device: **cpu**")
    assert not any(str(store.root) in line for line in with_key)


def test_a_demo_page_shows_a_stored_file_by_its_name_only(monkeypatch, tmp_path):
    report = tmp_path / "home" / "workspaces" / "ab12" / "reports" / "report-1.html"
    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    assert status_lines.shown_path(report) == "report-1.html"
    monkeypatch.setenv("SYNTHLAB_MODE", "local")
    assert status_lines.shown_path(report) == str(report)
