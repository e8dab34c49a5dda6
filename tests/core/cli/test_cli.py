"""The CLI contract shared by every command: --json last line, exit 2 with one clear line on user errors."""

import json
import os
import subprocess
import sys

import pytest


def cli(home, *args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "core", "--home", str(home), *args],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def last_json(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_tags_add_and_list_print_json_last(home):
    out = last_json(cli(home, "tags", "add", "jeans", "--prompt", "{blue|black} jeans", "--json"))
    assert out["tag"]["name"] == "jeans" and out["tag"]["prompt"] == "{blue|black} jeans"
    cli(home, "tags", "add", "shoes", "--prompt", "shoes", "--negative", "blurry")
    tags = last_json(cli(home, "tags", "list", "--json"))["tags"]
    assert [t["name"] for t in tags] == ["jeans", "shoes"]
    assert tags[1]["negative"] == "blurry"
    assert tags[0]["counts"] == {"synthetic": 0, "real": 0, "test": 0}


@pytest.mark.parametrize(
    "args, message",
    [
        (["tags", "add", "a/b", "--prompt", "x"], "path separator"),
        (["tags", "add", "..", "--prompt", "x"], "not allowed"),
        (["images", "list", "--tag", "nope"], "unknown tag 'nope'"),
        (["tags", "frobnicate"], "invalid choice"),
        (["slice", "--name", "s"], "required"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_traceback(home, args, message):
    proc = cli(home, *args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in proc.stderr


def test_duplicate_tag_exits_2_and_keeps_the_first(home):
    cli(home, "tags", "add", "jeans", "--prompt", "first")
    proc = cli(home, "tags", "add", "jeans", "--prompt", "second", check=False)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert last_json(cli(home, "tags", "list", "--json"))["tags"][0]["prompt"] == "first"


def test_home_comes_from_the_environment(tmp_path):
    env = {**os.environ, "SYNTHLAB_HOME": str(tmp_path / "envhome")}
    subprocess.run([sys.executable, "-m", "core", "tags", "add", "x", "--prompt", "y"], env=env, check=True,
                   capture_output=True)
    assert (tmp_path / "envhome" / "lab.db").exists()
