"""The resolution the model sees: every run records ``input_px``; cnn-small trains at the slice's own size when
asked (``--input-size native``, memory-aware batches); ``--tiles`` keeps native pixels for a frozen encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.data.slicing import SliceSpec, build_slices
from core.errors import InvalidInput
from core.train.backends import local, local_cnn
from core.train.training import get_run, list_runs, train
from tests.reliability.conftest import assert_consistent, cli, snapshot


@pytest.fixture
def digits64(digits):
    build_slices(digits, SliceSpec(name="d64", counts=(4,), size=64, real_fraction=1.0))
    build_slices(digits, SliceSpec(name="dorig", counts=(4,), size=None, real_fraction=1.0))
    return digits


def test_cnn_small_native_trains_at_the_slice_size_and_predicts(digits64):
    [run] = train(digits64, ["d64"], params={"encoder": "cnn-small", "image_size": "native", "epochs": 2})
    run = get_run(digits64, run["id"])
    assert run["status"] == "done" and run["input_px"] == run["metrics"]["input_px"] == 64
    assert json.loads((Path(run["artifact"]) / "meta.json").read_text())["input_px"] == 64
    [default] = train(digits64, ["d64"], params={"encoder": "cnn-small", "epochs": 2})
    assert get_run(digits64, default["id"])["input_px"] == 32  # the default caps at 32 px
    [orig] = train(digits64, ["dorig"], params={"encoder": "cnn-small", "image_size": "native", "epochs": 2})
    assert get_run(digits64, orig["id"])["input_px"] == 64  # original size: the images' own 64 px
    from core.analysis.evaluation import evaluate

    results = {r["run"]: r for r in evaluate(digits64)}
    assert results[run["id"]]["input_px"] == 64 and results[default["id"]]["input_px"] == 32


def test_batch_size_shrinks_with_resolution_to_fit_memory(monkeypatch):
    sizes = [local_cnn.cnn_batch_size(px, 16, 32, "cpu") for px in (32, 128, 512, 1024)]
    assert sizes[0] == 32 and sizes == sorted(sizes, reverse=True) and 1 <= sizes[-1] < 32
    monkeypatch.setenv("SYNTHLAB_CNN_MEMORY_MB", "1")
    assert local_cnn.cnn_batch_size(1024, 16, 32, "cpu") == 1
    assert local_cnn.cnn_batch_size(64, 16, 32, "cpu", training=False) >= local_cnn.cnn_batch_size(64, 16, 32, "cpu")


def test_a_tight_memory_budget_still_trains_native(digits64, monkeypatch):
    monkeypatch.setenv("SYNTHLAB_CNN_MEMORY_MB", "2")
    [run] = train(digits64, ["d64"], params={"encoder": "cnn-small", "image_size": "native", "epochs": 1})
    run = get_run(digits64, run["id"])
    assert run["status"] == "done" and run["metrics"]["batch_size_used"] < 32


def test_every_local_mode_records_input_px(digits64):
    [probe] = train(digits64, ["d64"], params={"encoder": "efficientnet-lite0"})
    [tiles] = train(digits64, ["d64"], params={"encoder": "efficientnet-lite0", "mode": "tiles"})
    runs = {r["id"]: r for r in list_runs(digits64)}
    assert runs[probe["id"]]["input_px"] == 64  # 64 px of detail inside the encoder's 224 px input
    assert runs[tiles["id"]]["input_px"] == 64 and runs[tiles["id"]]["metrics"]["tile_px"] == 224
    assert runs[tiles["id"]]["mode"] == "tiles" and probe["input_px"] == 64


def test_cli_flags_input_size_and_tiles(digits64):
    home = digits64.root
    r = cli(home, "train", "--slices", "d64", "--encoder", "cnn-small", "--input-size", "native", "--epochs", "1",
            "--json")
    assert r.code == 0, r.err
    assert r.json["runs"][0]["input_px"] == 64
    r = cli(home, "train", "--slices", "d64", "--tiles", "--json")
    assert r.code == 0, r.err
    assert r.json["runs"][0]["mode"] == "tiles" and r.json["runs"][0]["encoder"] == "efficientnet-lite0"


@pytest.mark.parametrize("args, message", [
    (["--encoder", "cnn-small", "--input-size", "huge"], "expected a pixel size or 'native'"),
    (["--encoder", "cnn-small", "--input-size", "4096"], "image_size must be a whole number from 16 to 1024 or 'native'"),
    (["--tiles", "--mode", "finetune"], "--tiles is a frozen-encoder mode"),
])
def test_bad_resolution_flags_exit_2_and_change_nothing(digits64, args, message):
    home = digits64.root
    before = snapshot(home)
    r = cli(home, "train", "--slices", "d64", *args, "--json")
    assert r.code == 2 and message in r.error_line
    assert snapshot(home) == before
    assert_consistent(home)


def test_native_is_only_for_image_size(store):
    with pytest.raises(InvalidInput, match="epochs must be a number, not 'native'"):
        local.LocalTrainer().validate(store, {"encoder": "cnn-small", "epochs": "native"})
    assert local.LocalTrainer().validate(store, {"encoder": "cnn-small", "image_size": "Native"})["image_size"] == "native"
