"""The filter as a slicing option from the CLI: dropped images excluded, and the spec says so."""

import json

from tests.core.cli.test_cli import cli, last_json
from tests.core.data.test_filtering import lab  # noqa: F401 - fixture


def test_slice_with_near_duplicate_filter_excludes_them_and_records_it(lab, home):  # noqa: F811
    store, ids = lab
    out = last_json(cli(home, "slice", "--name", "dedup", "--counts", "3", "--tags", "jeans,shoes",
                        "--drop-near-duplicates", "--json"))
    (filtered,) = out["slices"]
    assert filtered["spec"]["filter"]["drop_near_duplicates"] is True
    dropped = {d["id"] for d in filtered["filtered"]}
    assert len(dropped) == 2 and dropped < set(ids["cluster"])
    assert len(set(ids["cluster"]) & set(filtered["images"])) == 1
    assert not dropped & set(filtered["images"])
    assert all(d["reason"] for d in filtered["filtered"])
    plain = last_json(cli(home, "slice", "--name", "plain", "--counts", "3", "--tags", "jeans,shoes", "--json"))
    assert plain["slices"][0]["hash"] != filtered["hash"]
    assert "filter" not in plain["slices"][0]["spec"]
    again = last_json(cli(home, "slice", "--name", "dedup", "--counts", "3", "--tags", "jeans,shoes",
                          "--drop-near-duplicates", "--json"))
    assert again["slices"][0]["hash"] == filtered["hash"]
    json.dumps(again)


def test_bad_filter_threshold_exits_2(lab, home):  # noqa: F811
    proc = cli(home, "slice", "--name", "x", "--counts", "3", "--min-own-tag-probability", "1.5", check=False)
    assert proc.returncode == 2 and "between 0 and 1" in proc.stderr and "Traceback" not in proc.stderr
