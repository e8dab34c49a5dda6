"""Known answer for compare's design advice on the real pipeline (issue #23, item 4): a ~20-point harm at 10 per
tag with 3 repeats, the default encoder (EfficientNet-Lite0 probe) and real clothing photos.

The "synthetic" images are more real photos of which 40 % carry another tag's label; the real-only arm is the
comparison. With 3 repeats the interval is wide; the verdict is either `b better`, or `within noise` with a
`required_repeats` figure — and a fresh sweep with that many repeats is then called `b better`.

Measured while writing it (seeded, so the same each run): 3 repeats: −0.240 [−0.477, +0.015] within noise,
detectable difference 0.305, required repeats 4; 4 repeats: −0.255 [−0.357, −0.158] → b better.
"""

from __future__ import annotations

import json

import pytest

from core.analysis.evaluation import results
from core.cli.main import main
from core.store.database import Store
from tests.datasets import fashion_available, fashion_images

POOL, TEST, WRONG = 20, 25, 0.4

pytestmark = pytest.mark.skipif(not fashion_available(), reason="needs Debian's dataset-fashion-mnist")


def _import(home, tmp) -> None:
    data = fashion_images(n_train=2 * POOL, n_test=TEST, size=32)
    tags = list(data["real"])
    for tag, pictures in data["real"].items():
        for i, picture in enumerate(pictures[:POOL]):
            _save(picture, tmp / "real" / tag / f"{tag}-{i}.png")
        for i, picture in enumerate(pictures[POOL:]):
            label = tags[(tags.index(tag) + 1 + i % (len(tags) - 1)) % len(tags)] if i < round(WRONG * POOL) else tag
            _save(picture, tmp / "synthetic" / label / f"{tag}-{i}.png")
    for tag, pictures in data["test"].items():
        for i, picture in enumerate(pictures):
            _save(picture, tmp / "test" / tag / f"{tag}-{i}.png")
    cli = ["--home", str(home)]
    assert main([*cli, "import", str(tmp / "real"), "--json"]) == 0
    assert main([*cli, "import", str(tmp / "synthetic"), "--source", "synthetic", "--generator", "relabelled",
                 "--json"]) == 0
    assert main([*cli, "import", str(tmp / "test"), "--source", "test", "--json"]) == 0


def _save(picture, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def _sweep_and_compare(home, repeats: int, capsys) -> dict:
    cli = ["--home", str(home)]
    for name, real in (("synthetic-only", "0"), ("real-only", "1")):
        assert main([*cli, "slice", "--name", f"{name}-{repeats}", "--counts", "10", "--size", "32",
                     "--real-fraction", real, "--repeats", str(repeats), "--seed", str(repeats), "--json"]) == 0
    assert main([*cli, "train", "--slices", f"synthetic-only-{repeats}", f"real-only-{repeats}", "--json"]) == 0
    assert main([*cli, "evaluate", "--json"]) == 0
    store = Store(home)
    try:
        arm = {r["slice_name"]: r["arm"] for r in results(store)}
    finally:
        store.close()
    capsys.readouterr()
    assert main([*cli, "compare", "--a", arm[f"synthetic-only-{repeats}"], "--b", arm[f"real-only-{repeats}"],
                 "--json"]) == 0
    (comparison,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["comparisons"]
    return comparison


@pytest.mark.slow
def test_a_harm_at_10_per_tag_is_called_or_the_advised_repeats_call_it(tmp_path, capsys):
    home = tmp_path / "home"
    _import(home, tmp_path / "photos")
    c = _sweep_and_compare(home, 3, capsys)
    assert c["difference"] < -0.15 and c["repeats"] == [3, 3], c
    assert 0 < c["detectable_difference"] < 1 and "this design detects a difference of" in c["advice"]
    if c["verdict"] != "b better":
        assert c["verdict"] == "within noise" and c["required_repeats"] and c["required_repeats"] > 3, c
        assert f"{c['required_repeats']} repeats per arm" in c["advice"]
        again = _sweep_and_compare(home, c["required_repeats"], capsys)
        assert again["verdict"] == "b better", again
