"""Tag prompt templates and their expansion, with the dynamicprompts package.

A template such as ``{blue|black|ripped} jeans on {a white background|a street}`` yields several
prompts. Image *i* of a generation series gets ``prompt_for(template, i, seed, mode)``: it depends
only on the template, the index, the series seed and the mode — never on the batch size or on which
images already exist — so a resumed or extended series gives every image the prompt it would have had.

- ``random``: each index draws its own prompt from a random generator seeded from ``(seed, index)``.
- ``combinatorial``: the prompts in the template's combinatorial order (the last group varies
  fastest), cycled (index ``i`` gets prompt ``i mod n``); the seed does not matter. A template with up
  to :data:`COUNT_CAP` variants is enumerated by dynamicprompts and de-duplicated; a larger one is
  expanded lazily, index → combination over the parse tree (:func:`_Lazy`), so every group varies and
  every option of a 1500-way alternative is used — nothing is ever enumerated in full.

:func:`count_prompts` gives the distinct prompts of a small template and the true number of variants
of a large one (a 20-group ``{a|b}`` template has 1 048 576).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from functools import lru_cache

from core.errors import InvalidInput

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


class _Lazy:
    """Index → prompt over a dynamicprompts parse tree, without enumerating it.

    Literals count 1; a sequence is the product of its parts (the last part varies fastest); a
    variant ``{a|b|c}`` is the sum of its options; ``{k$$…}`` picks ordered k-tuples of distinct
    options joined by its separator. Anything else (wrap commands, ``~`` random groups) is not lazy:
    :meth:`build` returns None and the caller enumerates with dynamicprompts.
    """

    def __init__(self, node):
        from dynamicprompts.commands import LiteralCommand, SequenceCommand, VariantCommand

        self.node = node
        if getattr(node, "sampling_method", None) not in (None,) and not isinstance(node, LiteralCommand):
            from dynamicprompts.enums import SamplingMethod

            if node.sampling_method != SamplingMethod.COMBINATORIAL:
                raise _NotLazy
        if isinstance(node, LiteralCommand):
            self.kind, self.count = "literal", 1
        elif isinstance(node, SequenceCommand):
            self.kind = "sequence"
            self.parts = [_Lazy(t) for t in node.tokens]
            self.count = math.prod(p.count for p in self.parts)
        elif isinstance(node, VariantCommand):
            self.kind = "variant"
            self.options = [_Lazy(v.value) for v in node.variants]
            n = len(self.options)
            self.bounds = [k for k in range(max(node.min_bound, 1), min(node.max_bound, n) + 1)]
            if not self.bounds or (self.bounds != [1] and math.perm(n, max(self.bounds)) > 100_000):
                raise _NotLazy
            self.per_k = [self._count_k(k) for k in self.bounds]
            self.count = sum(self.per_k)
        else:
            raise _NotLazy

    @staticmethod
    def build(template: str) -> "_Lazy | None":
        try:
            return _Lazy(_parse(template))
        except _NotLazy:
            return None

    def _count_k(self, k: int) -> int:
        if k == 1:
            return sum(o.count for o in self.options)
        import itertools

        return sum(math.prod(self.options[i].count for i in perm)
                   for perm in itertools.permutations(range(len(self.options)), k))

    def at(self, index: int) -> str:
        index %= self.count
        if self.kind == "literal":
            return str(self.node.literal)
        if self.kind == "sequence":
            out = []
            for part in reversed(self.parts):
                index, here = divmod(index, part.count)
                out.append(part.at(here))
            return self.node.separator.join(reversed(out))
        for k, n_k in zip(self.bounds, self.per_k):
            if index >= n_k:
                index -= n_k
                continue
            if k == 1:
                for option in self.options:
                    if index < option.count:
                        return option.at(index)
                    index -= option.count
            import itertools

            for perm in itertools.permutations(range(len(self.options)), k):
                size = math.prod(self.options[i].count for i in perm)
                if index >= size:
                    index -= size
                    continue
                picked = []
                for i in reversed(perm):
                    index, here = divmod(index, self.options[i].count)
                    picked.append(self.options[i].at(here))
                return self.node.separator.join(reversed(picked))
        raise AssertionError("index out of range")


class _NotLazy(Exception):
    pass


def _stride(n: int) -> int:
    """A step coprime to ``n`` near ``n`` / golden ratio (1 for tiny ``n``)."""
    a = max(int(n * 0.6180339887498949), 1)
    while math.gcd(a, n) != 1:
        a += 1
    return a


@lru_cache(maxsize=64)
def _lazy(template: str) -> "_Lazy | None":
    """The lazy expander of a template with more than :data:`COUNT_CAP` variants, else None."""
    lazy = _Lazy.build(template)
    return lazy if lazy is not None and lazy.count > COUNT_CAP else None


def count_prompts(template: str) -> int:
    """How many prompts a template yields: its distinct prompts when it has at most :data:`COUNT_CAP`
    variants, else the true number of its variants (combinatorial; not capped).

    Counted over its combinatorial expansion and, for random-only parts (``{~a|b}``), over
    :data:`RANDOM_PROBES` random draws too (those stay capped at :data:`COUNT_CAP`).
    """
    template = validate_template(template)
    lazy = _lazy(template)
    if lazy is not None:
        return lazy.count
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
        lazy = _lazy(template)
        if lazy is not None:
            a = _stride(lazy.count)
            return [lazy.at((i % lazy.count) * a) for i in indices]
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
