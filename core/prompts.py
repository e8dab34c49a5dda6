"""Tag prompt templates and their expansion, with the dynamicprompts package.

A template such as ``{blue|black|ripped} jeans on {a white background|a street}`` yields several
prompts. Image *i* of a generation series gets ``prompt_for(template, i, seed, mode)``: it depends
only on the template, the index, the series seed and the mode — never on the batch size or on which
images already exist — so a resumed or extended series gives every image the prompt it would have had.

- ``random``: each index draws its own prompt from a random generator seeded from ``(seed, index)``.
- ``combinatorial``: the distinct prompts in the template's order, cycled (index ``i`` gets
  prompt ``i mod n``); the seed does not matter.
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import lru_cache

from .errors import InvalidInput

MODES = ("random", "combinatorial")
COUNT_CAP = 1_000
RANDOM_PROBES = 256


def _parse(template: str):
    """Parse with dynamicprompts' own parser; a syntax error becomes one clear :class:`InvalidInput`."""
    from dynamicprompts.parser.parse import parse
    from pyparsing import ParseBaseException

    try:
        command = parse(template)
    except ParseBaseException as exc:
        raise InvalidInput(
            f"prompt template {template!r} is not valid variation syntax (column {exc.column}): "
            "use {a|b|c} for variants and close every brace"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"prompt template {template!r} is not valid variation syntax: {exc}") from None
    wildcard = _find_wildcard(command)
    if wildcard is not None:
        raise InvalidInput(
            f"prompt template {template!r} uses the wildcard __{wildcard}__: wildcard files are not "
            "supported, write the choices inline as {a|b|c}"
        )
    return command


def _find_wildcard(node) -> str | None:
    from dynamicprompts.commands import WildcardCommand

    if isinstance(node, WildcardCommand):
        return str(node.wildcard)
    children = []
    if dataclasses.is_dataclass(node):
        children = [getattr(node, f.name) for f in dataclasses.fields(node)]
    elif isinstance(node, (list, tuple)):
        children = list(node)
    elif isinstance(node, dict):
        children = list(node.values())
    for child in children:
        if dataclasses.is_dataclass(child) or isinstance(child, (list, tuple, dict)):
            found = _find_wildcard(child)
            if found is not None:
                return found
    return None


def validate_template(template: str, what: str = "prompt") -> str:
    """The template stripped, or :class:`InvalidInput` if it is empty or does not parse."""
    template = (template or "").strip()
    if not template:
        raise InvalidInput(f"the {what} is empty")
    _parse(template)
    return template


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InvalidInput(f"expansion must be one of {', '.join(MODES)}, not {mode!r}")


@lru_cache(maxsize=64)
def _distinct(template: str) -> tuple[str, ...]:
    """The template's distinct prompts in combinatorial order (at most :data:`COUNT_CAP`)."""
    from dynamicprompts.generators import CombinatorialPromptGenerator

    _parse(template)
    prompts = CombinatorialPromptGenerator().generate(template, max_prompts=COUNT_CAP * 4)
    return tuple(dict.fromkeys(prompts))[:COUNT_CAP]


def count_prompts(template: str) -> int:
    """How many distinct prompts a template yields, capped at :data:`COUNT_CAP` (1 000: "1000 or more").

    Counted over its combinatorial expansion and, for random-only parts (``{~a|b}``), over
    :data:`RANDOM_PROBES` random draws too.
    """
    template = validate_template(template)
    return _count(template)


@lru_cache(maxsize=64)
def _count(template: str) -> int:
    distinct = set(_distinct(template))
    if len(distinct) < COUNT_CAP:
        distinct.update(expand(template, RANDOM_PROBES, 0))
    return min(len(distinct), COUNT_CAP)


def _index_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def prompt_for(template: str, index: int, seed: int, mode: str = "random") -> str:
    """The prompt of image ``index`` of a series: deterministic, independent of batch size."""
    return expand_indices(template, [index], seed, mode)[0]


def expand_indices(template: str, indices: list[int], seed: int, mode: str = "random") -> list[str]:
    """``[prompt_for(template, i, seed, mode) for i in indices]``, parsing the template once."""
    _check_mode(mode)
    template = validate_template(template)
    if not indices:
        return []
    if mode == "combinatorial":
        prompts = _distinct(template)
        return [prompts[i % len(prompts)] for i in indices]
    from dynamicprompts.generators import RandomPromptGenerator

    seeds = [_index_seed(seed, i) for i in indices]
    return RandomPromptGenerator().generate(template, len(seeds), seeds=seeds)


def expand(template: str, n: int, seed: int, mode: str = "random") -> list[str]:
    """The prompts of images ``0 … n-1`` of a series (``prompt_for`` for each index)."""
    if n < 0:
        raise InvalidInput(f"the number of prompts must be 0 or more, not {n}")
    return expand_indices(template, list(range(n)), seed, mode)
