"""The Generate page's Workers control (shown when Ray is importable): a cluster that cannot be reached is
one error naming its address, and nothing is queued."""

from __future__ import annotations

import socket

from core.run import cluster, jobs
from core.store.database import Store
from tests.pages.apptest import open_page, texts
from tests.reliability.conftest import snapshot

OTHER = "Other: a hub id or a local folder"


def test_workers_control_and_an_unreachable_cluster(home, store, tiny_sd, monkeypatch):
    store.add_tag("jeans", "jeans")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv(cluster.ADDRESS_SETTING, closed)
    at = open_page("generate")
    assert at.number_input(key="gen_workers").value == 0
    at.selectbox(key="gen_model_choice").set_value(OTHER).run()
    at.text_input(key="gen_model_other").input(tiny_sd).run()
    at.number_input(key="gen_count").set_value(2)
    at.number_input(key="gen_workers").set_value(2).run()
    before = snapshot(home)
    at.button(key="gen_submit").click().run()
    assert not at.exception
    assert f"cannot reach the Ray cluster at {closed}" in texts(at.error)
    assert jobs.list_jobs(Store(home), kind="generate") == []
    assert snapshot(home) == before
