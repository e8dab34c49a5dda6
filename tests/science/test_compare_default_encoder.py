"""The `compare` known answers again, with the defaults a user gets: the default encoder
(EfficientNet-Lite0, frozen, logistic-regression probe) and 3 repeats per slice.

The photos enter as a user's would: tag-named folders imported with `import`, the "synthetic" ones
with `--source synthetic --generator more-real-photos`.

* **Null case** (the "synthetic" images are more real photos): `within noise` at 10 and 30 per tag.
* **Label noise** (40 % of the synthetic tags wrong): the real-only arm is better at 30 per tag,
  whichever side of `compare` it is passed on.

Measured while writing it (200 test photos, slice seeds 0–2): null differences −0.017…+0.000 with
intervals ±0.03–0.09 and p ≥ 0.42; label noise at 30 per tag −0.23…−0.28, intervals
[−0.36, −0.10] … [−0.41, −0.15], p ≤ 0.005. Everything is seeded, so the answer is the same each run.
"""

from __future__ import annotations

import pytest

from core.analysis.evaluation import results
from core.cli.main import main
from core.store.database import Store
from tests.science.test_compare import POOL, SIZE, arms_of, cli_compare, photos

TEST = 30          # test photos per tag (120 in all): enough for stable verdicts, fewer to embed
REPEATS = 3


def import_photos(home, tmp, wrong_fraction: float) -> None:
    """Write the photos to tag-named folders and import them with the CLI: the real pool as `real`,
    the next 60 per tag as `--source synthetic --generator more-real-photos` (``wrong_fraction`` of
    them in another tag's folder, spread over the other tags evenly), the test photos as `test`."""
    data = photos(TEST)
    tags = list(data["real"])
    folders = {source: tmp / source for source in ("real", "synthetic", "test")}
    for tag, pictures in data["real"].items():
        wrong = round(wrong_fraction * POOL)
        for i, picture in enumerate(pictures[:POOL]):
            _save(picture, folders["real"] / tag / f"{tag}-{i}.png")
        for i, picture in enumerate(pictures[POOL:]):
            label = tags[(tags.index(tag) + 1 + i % (len(tags) - 1)) % len(tags)] if i < wrong else tag
            _save(picture, folders["synthetic"] / label / f"{tag}-{i}.png")
    for tag, pictures in data["test"].items():
        for i, picture in enumerate(pictures):
            _save(picture, folders["test"] / tag / f"{tag}-{i}.png")
    cli = ["--home", str(home)]
    assert main([*cli, "import", str(folders["real"]), "--json"]) == 0
    assert main([*cli, "import", str(folders["synthetic"]), "--source", "synthetic",
                 "--generator", "more-real-photos", "--json"]) == 0
    assert main([*cli, "import", str(folders["test"]), "--source", "test", "--json"]) == 0


def _save(picture, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def trained_arms(home, wrong_fraction: float, counts: str):
    """Everything through the CLI with its defaults, as a user would (`import`, `slice`, `train`,
    `evaluate`)."""
    import_photos(home, home.parent / f"photos-{home.name}", wrong_fraction)
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
        assert store.count_images(source="synthetic") == 4 * POOL
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
