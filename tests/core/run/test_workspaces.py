"""Demo workspaces: unguessable ids, no access without one, idle removal; quotas refused in core (so the CLI
under SYNTHLAB_MODE=demo refuses too) with a clear message and nothing written."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from core.errors import NotFound
from core.run import jobs, registry, workspaces
from core.store.database import Store
from tests.reliability.conftest import assert_consistent, cli, snapshot

registry.register("count_up", "tests.core.job_handlers:count_up")


@pytest.fixture
def demo(home, monkeypatch, tiny_sd):
    monkeypatch.setenv("SYNTHLAB_MODE", "demo")
    monkeypatch.setenv("SYNTHLAB_DEMO_MODELS", str(tiny_sd))
    for name in ("IMAGES_PER_JOB", "TOTAL_IMAGES", "MAX_PIXELS", "MAX_STEPS", "CONCURRENT_JOBS", "IDLE_HOURS"):
        monkeypatch.delenv(f"SYNTHLAB_DEMO_{name}", raising=False)
    return home


def test_modes(monkeypatch):
    monkeypatch.delenv("SYNTHLAB_MODE", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert workspaces.mode() == "local"
    monkeypatch.setenv("SPACE_ID", "someone/synthlab")
    assert workspaces.mode() == "demo"
    monkeypatch.setenv("SYNTHLAB_MODE", "Team")
    assert workspaces.mode() == "team"
    monkeypatch.setenv("SYNTHLAB_MODE", "public")
    with pytest.raises(workspaces.InvalidMode, match="SYNTHLAB_MODE must be one of local, demo, team"):
        workspaces.mode()


def test_each_workspace_is_its_own_store_with_an_unguessable_id(demo):
    a, b = workspaces.create(), workspaces.create()
    assert a != b and len(a) == len(b) == 32 and int(a, 16) >= 0
    assert (demo / "workspaces" / a / "lab.db").is_file() and (demo / "workspaces" / b / "lab.db").is_file()
    workspaces.open_store(a).add_tag("jeans", "blue jeans")
    assert workspaces.open_store(b).tag_names() == []
    assert workspaces.open_store(a).tag_names() == ["jeans"]
    assert workspaces.list_ids() == sorted([a, b])


@pytest.mark.parametrize("bad", ["", "0" * 32, "../" + "a" * 29, "A" * 32, "a" * 31, "a" * 33, None])
def test_no_workspace_without_its_id(demo, bad):
    workspaces.create()
    before = sorted(p.name for p in (demo / "workspaces").iterdir())
    with pytest.raises(NotFound, match="no such workspace"):
        workspaces.open_store(bad)
    assert sorted(p.name for p in (demo / "workspaces").iterdir()) == before


def test_idle_workspaces_are_removed_busy_and_recent_ones_kept(demo):
    old, busy, fresh = workspaces.create(), workspaces.create(), workspaces.create()
    jobs.submit(workspaces.open_store(busy), "count_up", {"n": 1})
    past = time.time() - 3 * 3600
    for workspace_id in (old, busy):
        os.utime(demo / "workspaces" / workspace_id / ".last-used", (past, past))
    assert workspaces.remove_idle(max_age_hours=2) == [old]
    assert not (demo / "workspaces" / old).exists()
    assert workspaces.list_ids() == sorted([busy, fresh])
    with pytest.raises(NotFound, match="removed after being idle"):
        workspaces.open_store(old)


def _tag(home):
    s = Store(home)
    s.add_tag("jeans", "{blue|black} jeans")
    s.close()


@pytest.mark.parametrize("args, env, message", [
    (["--count", "41"], {}, "demo limit: at most 40 new images per job; this job asks for 41"),
    (["--count", "5"], {"SYNTHLAB_DEMO_IMAGES_PER_JOB": "4"}, "at most 4 new images per job; this job asks for 5"),
    (["--count", "2", "--width", "512", "--height", "520"], {}, "at most 262,144 pixels per image; 512×520"),
    (["--count", "2", "--steps", "31"], {}, "demo limit: at most 30 steps per image, not 31"),
    (["--count", "3"], {"SYNTHLAB_DEMO_TOTAL_IMAGES": "2"}, "at most 2 generated images per workspace; it holds 0"),
    (["--count", "2", "--model", "{other}"], {}, "demo limit: the generator must be one of"),
])
def test_cli_in_demo_mode_refuses_jobs_over_quota_and_writes_nothing(demo, monkeypatch, tiny_sd, tmp_path,
                                                                     args, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    other = tmp_path / "other-model"
    if "{other}" in args:
        shutil.copytree(tiny_sd, other)
    _tag(demo)
    before = snapshot(demo)
    args = [a.replace("{other}", str(other)) for a in args]
    result = cli(demo, "generate", "--tag", "jeans", "--model", str(tiny_sd), *args, "--json")
    assert result.code == 2
    assert message in result.error_line
    assert snapshot(demo) == before
    assert_consistent(demo)


def test_quota_counts_only_new_images_of_a_series(demo, tiny_sd):
    from core.generate.generation import generate
    from core.generate.planning import GenerationSpec

    _tag(demo)
    s = Store(demo)
    os.environ["SYNTHLAB_DEMO_IMAGES_PER_JOB"] = "2"
    try:
        spec = GenerationSpec(tag="jeans", count=2, model=str(tiny_sd), width=64, height=64, steps=2)
        assert generate(s, spec)["generated"] == 2
        assert generate(s, GenerationSpec(**{**spec.__dict__, "count": 4}))["generated"] == 2
    finally:
        del os.environ["SYNTHLAB_DEMO_IMAGES_PER_JOB"]
    assert s.count_images(source="synthetic") == 4


def test_concurrent_jobs_quota_refuses_the_third_but_not_a_resubmission(demo):
    s = workspaces.open_store(workspaces.create())
    first = jobs.submit(s, "count_up", {"n": 1})
    jobs.submit(s, "count_up", {"n": 2})
    assert jobs.submit(s, "count_up", {"n": 1}) == first
    with pytest.raises(workspaces.QuotaExceeded, match="2 job\\(s\\) at a time per workspace and 2 are queued"):
        jobs.submit(s, "count_up", {"n": 3})
    assert s.conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 2
    jobs.cancel(s, first)
    jobs.submit(s, "count_up", {"n": 3})


def test_local_mode_has_no_quotas(home, monkeypatch):
    monkeypatch.delenv("SYNTHLAB_MODE", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    s = Store(home)
    for n in range(5):
        jobs.submit(s, "count_up", {"n": n})
    assert len(jobs.list_jobs(s, status="queued")) == 5
