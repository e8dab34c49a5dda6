"""Faults under a running job, at the CLI and job level (the browser-level faults — kill -9 of the server,
two sessions at once — are in tests/e2e/test_faults.py):

* the store's disk stops accepting writes mid-generation (a shard folder replaced by a file; a tmpfs that
  fills up) → the job fails with one clear line, every image made before is kept whole, no row lacks its
  file, SQLite's integrity check passes — and once the disk is fixed the same command finishes exactly;
* the Azure service throttles (429), fails (503) and drops connections while a sweep trains and is
  evaluated → the run completes, with every image uploaded once and one project and iteration.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.errors import InvalidInput
from core.generate.generation import generate
from core.generate.planning import GenerationSpec
from core.store.database import Store
from tests.reliability.conftest import assert_consistent, cli, snapshot, tmpfs


def _series(store: Store) -> list[int]:
    return sorted(r["series_index"] for r in store.query("SELECT series_index FROM images WHERE source = 'synthetic'"))


def test_a_shard_folder_turning_into_a_file_mid_generation_fails_the_job_clearly(store, tiny_sd):
    store.add_tag("jeans", "{blue|black|ripped} jeans")
    spec = GenerationSpec(tag="jeans", count=8, model=tiny_sd, width=64, height=64, steps=1, seed=11)
    blockers: list[Path] = []

    def sabotage(done: int, total: int, message: str) -> None:
        if done == 2 and message.endswith("saved") and not blockers:
            for n in range(256):  # every shard folder not made yet becomes a file: the next new image cannot land
                shard = store.images_dir / f"{n:02x}"
                if not shard.exists():
                    shard.write_bytes(b"")
                    blockers.append(shard)

    with pytest.raises(InvalidInput, match=r"cannot write to the store at .*: File exists \(images/") as failure:
        generate(store, spec, progress=sabotage)
    job = store.query_one("SELECT id, status, error, done FROM jobs")
    assert job["status"] == "failed" and job["error"] == str(failure.value)
    kept = _series(store)
    assert kept[:2] == [0, 1] and len(kept) < 8
    assert assert_consistent(store.root)["rows"] == len(kept)

    for blocker in blockers:
        blocker.unlink()
    again = generate(store, spec)
    assert (again["generated"], again["skipped"]) == (8 - len(kept), len(kept))
    assert _series(store) == list(range(8)) and len(set(again["images"])) == 8
    assert assert_consistent(store.root) == {"rows": 8, "files": 8, "orphans": 0}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 400 kB tmpfs (root with CAP_SYS_ADMIN only; skipped elsewhere — the shard test above always runs)."""
    with tmpfs(tmp_path / "disk", "400k") as mount:
        yield mount


def test_a_disk_that_fills_up_mid_generation_fails_clearly_then_resumes_exactly(tiny_disk, tiny_sd):
    home = tiny_disk / "home"
    setup = Store(home)
    setup.add_tag("jeans", "{blue|black|ripped} jeans")
    setup.close()
    args = ["generate", "--tag", "jeans", "--count", "24", "--model", tiny_sd, "--width", "64", "--height", "64",
            "--steps", "1", "--seed", "5", "--json"]
    full = cli(home, *args)
    assert full.code == 2 and full.out == ""
    line = full.error_line
    assert line.startswith(f"error: cannot write to the store at {home}: ")
    assert "No space left on device" in line or "disk is full" in line, line
    made = assert_consistent(home, orphan_files_ok=True)["rows"]  # a file may land just before its row fails
    assert 1 <= made < 24
    store = Store(home)
    job = store.query_one("SELECT status, error FROM jobs")
    # the failure is recorded on the job when the disk still takes that small write; else the job is left
    # running for a dead owner, which the next run takes over
    assert job["status"] == "failed" and job["error"] == line.removeprefix("error: ") or job["status"] == "running"
    store.close()

    subprocess.run(["mount", "-o", "remount,size=16m", str(tiny_disk)], check=True)
    done = cli(home, *args)
    assert done.code == 0, done.err
    assert done.json["generated"] + done.json["skipped"] == 24 and done.json["skipped"] == made
    store = Store(home)
    assert _series(store) == list(range(24))
    store.close()
    assert assert_consistent(home, orphan_files_ok=True)["rows"] == 24


def test_azure_429_503_and_dropped_connections_do_not_stop_a_sweep(seeded, monkeypatch):
    from core.data import slicing
    from tests.datasets import digit_images
    from tests.fakes import FAKE_PREDICTION_RESOURCE_ID, FakeCustomVision

    store = Store(seeded)
    for tag, pictures in digit_images(n_train=8, n_test=2, size=32, n_tags=2)["test"].items():
        for picture in pictures:
            store.add_image(picture, tag=tag, source="test")
    slicing.build_slices(store, slicing.SliceSpec(name="sweep", counts=(5, 8), size=256, real_fraction=1.0,
                                                  tags=("one", "zero")))
    store.close()
    settings = {"SYNTHLAB_AZURE_RATE": "0", "SYNTHLAB_AZURE_BACKOFF": "0.01", "SYNTHLAB_AZURE_MAX_WAIT": "0.05",
                "SYNTHLAB_AZURE_RETRY_SECONDS": "30", "SYNTHLAB_AZURE_POLL": "0.02", "SYNTHLAB_AZURE_POLL_MAX": "0.05",
                "SYNTHLAB_AZURE_BATCH": "3", "VISION_TRAINING_KEY": "tk-secret-training-0001",
                "VISION_PREDICTION_KEY": "pk-secret-prediction-0002",
                "VISION_PREDICTION_RESOURCE_ID": FAKE_PREDICTION_RESOURCE_ID}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with FakeCustomVision("tk-secret-training-0001", "pk-secret-prediction-0002", training_delay=0.05) as fake:
        monkeypatch.setenv("VISION_TRAINING_ENDPOINT", fake.endpoint)
        monkeypatch.setenv("VISION_PREDICTION_ENDPOINT", fake.endpoint)
        fake.throttle(every=3, retry_after=0)
        fake.unavailable(every=5)
        fake.drop_connections(every=7)
        trained = cli(seeded, "train", "--slices", "sweep", "--backend", "azure", "--json")
        assert trained.code == 0, trained.err
        runs = trained.json["runs"]
        assert [(r["count_per_tag"], r["status"]) for r in runs] == [(5, "done"), (8, "done")]
        evaluated = cli(seeded, "evaluate", "--runs", *[str(r["id"]) for r in runs], "--json")
        assert evaluated.code == 0, evaluated.err
        assert {f for f in (r.fault for r in fake.requests) if f} == {"throttle", "unavailable", "drop"}
        [project] = fake.projects
        assert len(fake.created_projects) == 1 and fake.image_count(project) == 16  # 8 per tag, each sent once
        assert len(fake.iterations(project)) == 2
    results = evaluated.json["results"]
    assert len(results) == 2
    for result in results:
        assert len(result["per_image"]) == 4
        for scored in result["per_image"]:
            assert set(scored["probabilities"]) == {"one", "zero"}
            assert abs(sum(scored["probabilities"].values()) - 1) < 1e-6
    for text in (trained.out, trained.err, evaluated.out, evaluated.err, str(snapshot(seeded))):
        assert "secret-training" not in text and "secret-prediction" not in text
    assert_consistent(seeded)
