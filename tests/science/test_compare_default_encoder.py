"""The `compare` known answers again, with the defaults a user gets: the default encoder
(EfficientNet-Lite0, frozen, logistic-regression probe) and 3 repeats per slice.

* **Null case** (the "synthetic" images are more real photos): `within noise` at 10 and 30 per tag.
* **Label noise** (40 % of the synthetic tags wrong): the real-only arm is better at 30 per tag,
  whichever side of `compare` it is passed on.

Measured while writing it (200 test photos, slice seeds 0–2): null differences −0.017…+0.000 with
intervals ±0.03–0.09 and p ≥ 0.42; label noise at 30 per tag −0.23…−0.28, intervals
[−0.36, −0.10] … [−0.41, −0.15], p ≤ 0.005. Everything is seeded, so the answer is the same each run.
"""

from __future__ import annotations

import pytest

from core.cli import main
from core.evaluation import results
from core.store import Store
from tests.science.test_compare import SIZE, arms_of, build_store, cli_compare

TEST = 30          # test photos per tag (120 in all): enough for stable verdicts, fewer to embed
REPEATS = 3


def trained_arms(home, wrong_fraction: float, counts: str):
    """The photos stored through the API (no generator needed), then the CLI with its defaults."""
    build_store(home, wrong_fraction=wrong_fraction, test=TEST).close()
    cli = ["--home", str(home)]
    for name, real in (("synthetic-only", "0"), ("real-only", "1")):
        assert main([*cli, "slice", "--name", name, "--counts", counts, "--size", str(SIZE),
                     "--real-fraction", real, "--repeats", str(REPEATS), "--json"]) == 0
    assert main([*cli, "train", "--slices", "synthetic-only", "real-only", "--json"]) == 0
    assert main([*cli, "evaluate", "--json"]) == 0
    return Store(home)


@pytest.mark.slow
def test_default_encoder_with_three_repeats_gets_both_known_answers(tmp_path, capsys):
    home = tmp_path / "null"
    store = trained_arms(home, 0.0, "10,30")
    try:
        assert {r["encoder"] for r in results(store)} == {"efficientnet-lite0"}
        arm = arms_of(store)
        for a, b in ((arm["synthetic-only"], arm["real-only"]), (arm["real-only"], arm["synthetic-only"])):
            comparisons = cli_compare(home, a, b, capsys)["comparisons"]
            assert [c["count_per_tag"] for c in comparisons] == [10, 30]
            for c in comparisons:
                lo, hi = c["ci"]
                assert c["verdict"] == "within noise", c
                assert lo <= 0 <= hi and c["p_value"] > 0.05 and c["repeats"] == [REPEATS, REPEATS]
                assert hi - lo < 0.3, "an interval this wide would call anything noise"
                assert c["a"] > 0.7 and c["b"] > 0.7, "the models learned something"
    finally:
        store.close()

    home = tmp_path / "noisy"
    store = trained_arms(home, 0.4, "30")
    try:
        arm = arms_of(store)
        (c,) = cli_compare(home, arm["synthetic-only"], arm["real-only"], capsys)["comparisons"]
        assert c["verdict"] == "b better" and c["ci"][1] < 0 and c["p_value"] < 0.05, c
        assert c["test_images"] == 4 * TEST and c["repeats"] == [REPEATS, REPEATS]
        (swapped,) = cli_compare(home, arm["real-only"], arm["synthetic-only"], capsys)["comparisons"]
        assert swapped["verdict"] == "a better" and swapped["ci"][0] > 0, swapped
        assert swapped["difference"] == pytest.approx(-c["difference"])
    finally:
        store.close()
