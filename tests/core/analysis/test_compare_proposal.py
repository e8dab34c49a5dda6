"""Compare proposes the pair that answers the question; identical repeats say so instead of a zero interval."""

from core.analysis import arms, compare


def _arm(aid: str, size: int, real: float, counts=(10, 30), name: str = "s") -> list[dict]:
    spec = {"slice": {"name": name, "tags": ["a", "b"], "size": size, "fit": "crop", "resample": "lanczos",
                      "real_fraction": real}, "backend": "local", "encoder": "e", "mode": "probe", "training": {}}
    return [{"run": hash((aid, c)) % 10_000, "arm": aid, "arm_label": aid, "arm_spec": spec, "real_fraction": real,
             "count_per_tag": c, "size": size} for c in counts]


def test_the_proposed_pair_is_synthetic_against_its_real_only_twin_at_equal_counts():
    # the first two arms in table order are synthetic 1024 px and synthetic 256 px (the old default)
    results = (_arm("syn1024", 1024, 0.0) + _arm("syn256", 256, 0.0) + _arm("real256", 256, 1.0, name="r")
               + _arm("real64", 64, 1.0, counts=(10,), name="r"))
    assert arms.proposed_pair(results) == ("syn256", "real256")


def test_without_a_twin_any_real_only_arm_with_shared_counts_and_else_the_first_two():
    results = _arm("syn", 128, 0.0) + _arm("real", 256, 1.0, counts=(30, 50), name="r")
    assert arms.proposed_pair(results) == ("syn", "real")
    only_synthetic = _arm("x", 64, 0.0) + _arm("y", 32, 0.0)
    assert arms.proposed_pair(only_synthetic) == ("x", "y")
    assert arms.proposed_pair(_arm("x", 64, 0.0)) is None


def test_identical_repeats_read_as_no_spread_not_as_a_precise_zero():
    c = {"count_per_tag": 30, "a": 0.9, "b": 0.9, "difference": 0.0, "ci": [0.0, 0.0], "p_value": 1.0,
         "verdict": "within noise"}
    text = compare.sentence(c)
    assert "identical repeats — no spread to measure" in text and "[+0.000, +0.000]" not in text and "p =" not in text
    assert "[-0.010, +0.020]" in compare.sentence(dict(c, ci=[-0.01, 0.02], difference=0.005))
