"""A queued run has seen nothing yet: its ``input_px`` is empty, never the slice's size; the sample's defaults
are stated once (core.data.samples) and the CLI uses them."""

from core.cli.main import build_parser
from core.data import samples
from core.train import training


def test_a_queued_run_shows_no_input_px_until_it_has_trained(digits):
    ids = training.submit_training(digits, ["digits"], "local", {"encoder": "cnn-small", "epochs": 1})
    runs = training.list_runs(digits, ids)
    assert runs and all(r["status"] == "queued" and r["input_px"] is None for r in runs)
    assert all(training.summary(r)["input_px"] is None for r in runs)


def test_the_sample_defaults_live_in_one_place_and_the_cli_uses_them():
    args = build_parser().parse_args(["sample", "clothing"])
    assert (args.per_tag, args.test_per_tag) == (samples.DEFAULT_PER_TAG, samples.DEFAULT_TEST_PER_TAG)
    assert samples.DEFAULT_PER_TAG >= 200  # enough real photos for the experiment's largest slice
    import inspect

    params = inspect.signature(samples.load_clothing_sample).parameters
    assert params["per_tag"].default == samples.DEFAULT_PER_TAG
    assert params["test_per_tag"].default == samples.DEFAULT_TEST_PER_TAG
