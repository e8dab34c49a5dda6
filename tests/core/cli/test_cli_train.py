"""`train` and `evaluate` through the CLI, as a user runs them: the issue's "done when", errors, and resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from core.cli.main import main
from core.data import slicing

ROOT = Path(__file__).resolve().parents[3]


def cli(capsys, *argv: str) -> tuple[int, dict | None, str]:
    rc = main([*argv, "--json"])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return rc, (json.loads(lines[-1]) if rc == 0 and lines else None), err


def test_cnn_small_on_60_real_photos_per_tag_beats_5_and_reaches_085(digits, capsys):
    rc, out, err = cli(capsys, "--home", str(digits.root), "train", "--slices", "digits", "--backend", "local",
                       "--encoder", "cnn-small")
    assert rc == 0, err
    assert [(r["count_per_tag"], r["status"]) for r in out["runs"]] == [(5, "done"), (20, "done"), (60, "done")]
    rc, out, err = cli(capsys, "--home", str(digits.root), "evaluate")
    assert rc == 0, err
    accuracy = {r["count_per_tag"]: r["accuracy"] for r in out["results"]}
    assert accuracy[60] >= 0.85
    assert accuracy[5] < accuracy[20] < accuracy[60]  # learning rises with the slice size
    assert accuracy[5] > 0.25  # even five photos per tag beat chance (four tags)
    tags = {"zero", "one", "two", "three"}
    test_ids = {im["id"] for im in digits.list_images(source="test")}
    for result in out["results"]:
        assert {im["image"] for im in result["per_image"]} == test_ids
        for im in result["per_image"]:
            assert set(im["probabilities"]) == tags and abs(sum(im["probabilities"].values()) - 1) < 1e-6
        assert set(result["per_tag"]) == tags and result["confusion"]["labels"] == sorted(tags)
        assert sum(map(sum, result["confusion"]["matrix"])) == len(test_ids) == 120
        assert 0 < result["log_loss"] and 0 <= result["macro_f1"] <= 1


def test_a_local_clip_folder_runs_the_frozen_encoder_path_end_to_end(digits, tiny_clip, capsys):
    rc, out, err = cli(capsys, "--home", str(digits.root), "train", "--slices", "digits", "--encoder", tiny_clip,
                       "--param", "C=0.5")
    assert rc == 0, err
    ids = [r["id"] for r in out["runs"]]
    assert all(r["status"] == "done" and r["mode"] == "probe" and r["encoder"] == tiny_clip for r in out["runs"])
    rc, out, err = cli(capsys, "--home", str(digits.root), "evaluate", "--runs", *map(str, ids))
    assert rc == 0, err
    assert [r["run"] for r in out["results"]] == ids
    assert out["results"][-1]["accuracy"] > 0.4  # chance is 0.25
    embedded = digits.query_one("SELECT COUNT(*) AS n FROM embeddings")["n"]
    assert embedded == 240 + 120  # every train and test image once at 32 px


def _one_line_error(capsys, *argv: str) -> str:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_user_errors_exit_2_with_one_line_and_change_nothing(digits, tmp_path, capsys):
    home = str(digits.root)
    slicing.build_slices(digits, slicing.SliceSpec(name="solo", counts=(5,), size=32, real_fraction=1.0,
                                                   tags=("zero",)))
    assert "needs at least 2 tags" in _one_line_error(capsys, "--home", home, "train", "--slices", "solo",
                                                       "--encoder", "cnn-small")
    assert "does not exist" in _one_line_error(capsys, "--home", home, "train", "--slices", "digits",
                                                "--encoder", str(tmp_path / "no-clip-here"))
    assert "no slice 'nope'" in _one_line_error(capsys, "--home", home, "train", "--slices", "nope")
    assert "--param takes KEY=VALUE" in _one_line_error(capsys, "--home", home, "train", "--slices", "digits",
                                                         "--param", "oops")
    assert digits.query_one("SELECT COUNT(*) AS n FROM runs")["n"] == 0
    rc, out, _ = cli(capsys, "--home", home, "train", "--slices", "1", "--encoder", "cnn-small", "--epochs", "2")
    assert rc == 0 and out["runs"][0]["accuracy"] is not None  # scored on the test photos as it finished
    scored = digits.query_one("SELECT metrics FROM runs")["metrics"]
    predictions = digits.query_one("SELECT COUNT(*) AS n FROM predictions")["n"]
    assert "no run 99" in _one_line_error(capsys, "--home", home, "evaluate", "--runs", "99")
    for image in digits.list_images(source="test"):
        digits.set_rejected(image["id"])
    err = _one_line_error(capsys, "--home", home, "evaluate")
    assert err == "error: no test images: import some with `import --source test`"
    run = digits.query_one("SELECT status, metrics FROM runs")
    assert run["status"] == "done" and run["metrics"] == scored  # the failed evaluate changed nothing
    assert digits.query_one("SELECT COUNT(*) AS n FROM predictions")["n"] == predictions


def test_a_killed_training_resumes_without_redoing_finished_runs(digits, capsys):
    slicing.build_slices(digits, slicing.SliceSpec(name="resume", counts=(4, 8, 12), size=32, real_fraction=1.0))
    home = str(digits.root)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "core", "--home", home, "train", "--slices", "resume", "--encoder", "cnn-small",
            "--epochs", "60", "--json"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = sqlite3.connect(Path(home) / "lab.db", timeout=30)
    deadline = time.monotonic() + 120
    try:
        while True:
            statuses = [r[0] for r in db.execute("SELECT status FROM runs ORDER BY id")]
            if statuses.count("done") >= 1:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, statuses
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    before = {r[0]: r[1:] for r in db.execute("SELECT id, status, finished, artifact FROM runs")}
    db.close()
    assert len(before) == 3 and [v[0] for v in before.values()].count("done") < 3, before
    first_done = {i: v for i, v in before.items() if v[0] == "done"}

    rc, out, err = cli(capsys, "--home", home, "train", "--slices", "resume", "--encoder", "cnn-small",
                       "--epochs", "60")
    assert rc == 0, err
    assert sorted(r["id"] for r in out["runs"]) == sorted(before) and all(r["status"] == "done" for r in out["runs"])
    after = {r["id"]: (r["status"], r["finished"], r["artifact"]) for r in digits.query("SELECT * FROM runs")}
    for run_id, values in first_done.items():
        assert after[run_id] == values  # finished before the kill: not redone
    jobs = digits.query("SELECT params, status FROM jobs WHERE kind = 'train'")
    assert len(jobs) == 3 and {j["status"] for j in jobs} == {"done"}  # the killed job was claimed again
