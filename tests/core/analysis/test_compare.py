"""evaluate/slice/compare/arms/report through the CLI on a real store (digit photos, cnn-small runs):
arms and intervals on every result, repeat overlap on every slice, compare's JSON contract and its
user errors (exit 2, one line, store unchanged)."""

from __future__ import annotations

import itertools

import pytest

from core.analysis import stats
from core.analysis.evaluation import results
from core.data import repeats
from tests.reliability.conftest import assert_consistent, cli, snapshot


def test_evaluate_json_results_carry_arm_interval_and_input_px(populated):
    home = populated.root
    out = cli(home, "evaluate", "--json")
    assert out.code == 0, out.err
    rs = out.json["results"]
    trained = [r for r in rs if r["count_per_tag"]]
    assert trained and all({"arm", "arm_label", "accuracy_ci", "macro_f1_ci", "input_px"} <= set(r) for r in rs)
    for r in rs:
        lo, hi = r["accuracy_ci"]
        assert 0 <= lo <= r["accuracy"] <= hi <= 1
        assert r["macro_f1_ci"][0] <= r["macro_f1"] <= r["macro_f1_ci"][1]
    # one sweep, one training config: one arm for every count and repeat; zero-shot is another arm
    assert len({r["arm"] for r in trained}) == 1
    assert {r["arm"] for r in rs if not r["count_per_tag"]}.isdisjoint({trained[0]["arm"]})
    assert "digits" in trained[0]["arm_label"] and "cnn-small" in trained[0]["arm_label"]
    # input_px: what the backend recorded (cnn-small at 32 px slices sees 32 px), else unknown
    assert all(r["input_px"] in (None, 32) for r in trained)
    # the repeat overlap of each trained slice rides along
    assert all(0 <= r["repeat_overlap"] <= 1 for r in trained)
    # a second evaluation gives the same arm ids (stable) and the same intervals (seeded)
    again = cli(home, "evaluate", "--json").json["results"]
    assert [(r["arm"], r["accuracy_ci"]) for r in again] == [(r["arm"], r["accuracy_ci"]) for r in rs]


def test_slice_json_reports_repeat_overlap_and_warns_on_identical_repeats(digits):
    home = digits.root
    out = cli(home, "slice", "--name", "overlap", "--counts", "5,60", "--repeats", "3", "--real-fraction", "1",
              "--json")
    assert out.code == 0, out.err
    slices = out.json["slices"]
    assert all("repeat_overlap" in s for s in slices)
    by_count = {}
    for s in slices:
        by_count.setdefault(s["count_per_tag"], []).append(s)
    for count, group in by_count.items():
        expected = repeats.repeat_overlap([s["images"] for s in group])
        assert all(s["repeat_overlap"] == pytest.approx(expected) for s in group)
        pairs = [len(set(a["images"]) & set(b["images"])) / len(set(a["images"]) | set(b["images"]))
                 for a, b in itertools.combinations(group, 2)]
        assert expected == pytest.approx(sum(pairs) / len(pairs))
    assert by_count[60][0]["repeat_overlap"] == 1.0      # 60 of a pool of 60: the same images every time
    assert by_count[5][0]["repeat_overlap"] < 0.5
    assert "warning: n=60: identical repeats" in out.out
    single = cli(home, "slice", "--name", "single", "--counts", "5", "--real-fraction", "1", "--json").json
    assert single["slices"][0]["repeat_overlap"] is None


@pytest.fixture
def two_arms(populated):
    """The populated store plus a second arm: the same slices trained for 3 epochs instead of 2."""
    from core.analysis.evaluation import evaluate
    from core.train.training import train

    train(populated, ["digits"], backend="local", params={"encoder": "cnn-small", "epochs": 3})
    evaluate(populated)
    arms = {}
    for r in results(populated):
        if r["count_per_tag"]:
            arms.setdefault(r["arm_spec"]["training"].get("epochs"), r["arm"])
    return populated, arms[2], arms[3]


def test_compare_json_has_one_comparison_per_shared_count(two_arms):
    store, a, b = two_arms
    out = cli(store.root, "compare", "--a", a, "--b", b[:6], "--json")
    assert out.code == 0, out.err
    data = out.json
    assert data["a"]["id"] == a and data["b"]["id"] == b
    counts = sorted({r["count_per_tag"] for r in results(store) if r["count_per_tag"]})
    assert [c["count_per_tag"] for c in data["comparisons"]] == counts
    for c in data["comparisons"]:
        assert set(c) >= {"count_per_tag", "a", "b", "difference", "ci", "p_value", "verdict"}
        assert c["ci"][0] <= c["difference"] <= c["ci"][1] and 0 < c["p_value"] <= 1
        assert c["verdict"] in stats.VERDICTS and c["difference"] == pytest.approx(c["a"] - c["b"])
    listed = cli(store.root, "arms", "--json").json["arms"]
    assert {a, b} <= {x["id"] for x in listed}


@pytest.mark.parametrize("args, message", [
    (("--a", "nosucharm", "--b", "nosucharm2"), "no arm 'nosucharm'"),
    (("--a", "digits", "--b", "digits"), "matches 2 arms"),
    (("--a", "SAME", "--b", "SAME"), "the same arm"),
    (("--a", "ZERO", "--b", "SAME"), "share no count"),
])
def test_compare_user_errors_exit_2_with_one_line_and_change_nothing(two_arms, args, message):
    store, a, b = two_arms
    zero = next(r["arm"] for r in results(store) if not r["count_per_tag"])
    args = tuple({"SAME": a, "ZERO": zero}.get(x, x) for x in args)
    before = snapshot(store.root)
    out = cli(store.root, "compare", *args, "--json")
    assert out.code == 2 and message in out.error_line
    assert snapshot(store.root) == before
    assert_consistent(store.root)


def test_report_includes_the_comparisons_asked_for(two_arms, tmp_path):
    store, a, b = two_arms
    target = tmp_path / "report.html"
    out = cli(store.root, "report", "--out", str(target), "--compare", f"{a}:{b}", "--json")
    assert out.code == 0, out.err
    text = target.read_text()
    assert "id='comparisons'" in text and a in text and b in text
    assert "within noise" in text or "a better" in text or "b better" in text
    assert "id='arms'" in text
    bad = tmp_path / "bad.html"
    before = snapshot(store.root)
    out = cli(store.root, "report", "--out", str(bad), "--compare", "just-one-arm")
    assert out.code == 2 and "ARM_A:ARM_B" in out.error_line and not bad.exists()
    out = cli(store.root, "report", "--out", str(bad), "--compare", f"{a}:nosucharm")
    assert out.code == 2 and "no arm 'nosucharm'" in out.error_line and not bad.exists()
    assert snapshot(store.root) == before


def test_plan_warnings_flag_overlapping_and_identical_repeats_before_building(digits):
    from core.data.slicing import SliceSpec, plan_warnings

    warnings = plan_warnings(digits, SliceSpec(name="p", counts=(5, 50, 60), real_fraction=1.0, repeats=3))
    assert any(w.startswith("60 per tag: identical repeats") for w in warnings)
    assert any(w.startswith("50 per tag: repeats share") for w in warnings)
    assert not any(w.startswith("5 per tag") for w in warnings)
    assert not any("repeat" in w for w in plan_warnings(digits, SliceSpec(name="q", counts=(60,), real_fraction=1.0)))
