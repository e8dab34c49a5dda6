"""Prompt templates: counting, deterministic expansion, per-index prompts, clear syntax errors."""

import pytest

from core.errors import InvalidInput
from core.generate import prompts

JEANS = "{blue|black|ripped} jeans on {a white background|a street}"


def test_count_prompts_counts_distinct_combinations():
    assert prompts.count_prompts(JEANS) == 6
    assert prompts.count_prompts("plain jeans") == 1
    assert prompts.count_prompts("{a|a} z") == 1
    assert prompts.count_prompts("{2$$a|b|c}") == 6  # ordered pairs of distinct options
    assert prompts.count_prompts("{~red|green} shirt") == 2  # random-only variants are counted too


def test_count_prompts_gives_the_true_count_of_huge_combinatorics():
    ten = "{" + "|".join("abcdefghij") + "}"
    assert prompts.count_prompts(" ".join([ten] * 6)) == 10 ** 6


def test_random_expansion_is_deterministic_per_seed_and_draws_from_the_template():
    a = prompts.expand(JEANS, 20, seed=3)
    assert a == prompts.expand(JEANS, 20, seed=3)
    assert a != prompts.expand(JEANS, 20, seed=4)
    allowed = set(prompts.expand(JEANS, 6, 0, mode="combinatorial"))
    assert set(a) <= allowed and len(set(a)) > 1


def test_prompt_for_matches_expand_and_ignores_batching():
    seq = prompts.expand(JEANS, 12, seed=7)
    assert [prompts.prompt_for(JEANS, i, 7) for i in range(12)] == seq
    assert prompts.expand_indices(JEANS, [11, 3, 5], 7) == [seq[11], seq[3], seq[5]]


def test_combinatorial_expansion_walks_every_prompt_then_cycles():
    out = prompts.expand(JEANS, 8, seed=99, mode="combinatorial")
    assert len(set(out[:6])) == 6
    assert out[6:] == out[:2]
    assert out == prompts.expand(JEANS, 8, seed=0, mode="combinatorial")
    assert out[0] == "blue jeans on a white background"


@pytest.mark.parametrize(
    "template, message",
    [
        ("{blue|black jeans", "not valid variation syntax"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("__colours__ jeans", "wildcard __colours__"),
    ],
)
def test_bad_templates_raise_one_clear_error(template, message):
    with pytest.raises(InvalidInput, match=message):
        prompts.count_prompts(template)
    with pytest.raises(InvalidInput, match=message):
        prompts.expand(template, 2, seed=0)


def test_unknown_mode_is_refused():
    with pytest.raises(InvalidInput, match="expansion must be one of random, combinatorial"):
        prompts.expand(JEANS, 2, 0, mode="shuffled")
