"""Bug injection: each operator fires where it should and nowhere excluded; every mutant is a minimal,
compiling, AST-changing edit; finding and sampling are deterministic."""

from __future__ import annotations

import ast
import bisect
import fractions
import heapq
import inspect
import random
import shlex
import textwrap
import warnings
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchard_envs.tasks.swe.mutate import OPERATORS, Mutation, find_mutations, sample_mutations

QUEUE = '''\
"""A small queue library: 1 module docstring with numbers 2 and 3."""
from __future__ import annotations

import functools
import logging
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger(__name__)
LIMIT = 10 + 1  # module level: never mutated
if LIMIT > 5:
    LIMIT = LIMIT - 1


class Queue:
    """A bounded queue of 3 items."""

    size: int = 3
    twice = size * 2

    def __init__(self, items: list[int] | None = None, cap: int = 5) -> None:
        self.items = list(items or [])
        self.cap = cap

    def __repr__(self) -> str:
        return "Queue(%r, cap=%d)" % (self.items, self.cap + 1) if self.cap > 0 else "Queue()"

    def take(self, n: int = 1) -> list[int]:
        """Take up to n items, 2 at a time."""
        assert n >= 0 and n < 100, "n must be >= 0"
        if n < len(self.items) and self.cap > 0:
            taken = self.items[:n]
        else:
            taken = list(self.items)
        del self.items[: len(taken)]
        log.debug("took %d of %d items", len(taken), n + 1)
        warnings.warn("take() is slow", stacklevel=2)
        return taken

    @functools.lru_cache(maxsize=128)  # noqa: B019
    def label(self, prefix: str = "q", width: int = 8) -> str:
        name = "café ✓"; padded = name.ljust(width * 2)  # é before the sites on this line
        return prefix + padded if width > 0 else prefix


def merge(first, second, limit=4):
    """Merge two sorted lists."""
    out = []
    i = j = 0
    while i < len(first) or j < len(second):
        if j >= len(second) or (i < len(first) and first[i] <= second[j]):
            out.append(first[i])
            i += 1
        elif first is not None:
            out.append(second[j])
            j += 1
    total = (
        len(first)
        + len(second)
    )
    result = combine(
        first,  # the first — ü
        second,
        3,
    )
    out.extend([]); out.sort()
    return out[: limit - 1], total, result


def outer(values):
    def inner(x):
        if x in values:
            return x - 1
        return not x

    if __name__ == "__main__":
        print(inner(1), inner(2))
    if TYPE_CHECKING:
        values = values * 3
    return [inner(v) for v in values if v != 0]


def combine(a, b, c):
    return a, b, c


if __name__ == "__main__":
    print(merge([1, 2], [3]))
'''

SOURCES = {"queue.py": QUEUE, "queue_crlf.py": QUEUE.replace("\n", "\r\n")}


@pytest.fixture(scope="module")
def queue_mutations() -> list[Mutation]:
    return find_mutations(QUEUE, "queue.py")


def _changed(mutation: Mutation, source: str = QUEUE) -> str:
    return source[mutation.start : mutation.end]


def _of(mutations: list[Mutation], operator: str, function: str | None = None) -> list[Mutation]:
    return [m for m in mutations if m.operator == operator and function in (None, m.function)]


def _span_of(snippet: str, source: str = QUEUE) -> tuple[int, int]:
    assert source.count(snippet) == 1, snippet
    start = source.index(snippet)
    return start, start + len(snippet)


def _overlapping(mutations: list[Mutation], snippet: str) -> list[Mutation]:
    start, end = _span_of(snippet)
    return [m for m in mutations if m.start < end and start < m.end]


def _check_mutant(mutation: Mutation, source: str) -> None:
    """The invariants every mutant keeps: a splice at [start, end) that compiles and changes the AST."""
    mutant = mutation.apply(source)
    assert mutant.startswith(source[: mutation.start])
    assert mutant.endswith(source[mutation.end :])
    assert mutant == source[: mutation.start] + mutation.replacement + source[mutation.end :]
    assert 0 <= mutation.start <= mutation.end <= len(source)
    assert mutation.operator in OPERATORS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile(mutant, mutation.path, "exec")
    assert ast.dump(ast.parse(mutant)) != ast.dump(ast.parse(source))
    line_starts = [0] + [i + 1 for i, ch in enumerate(source.replace("\r\n", " \n")) if ch == "\n"]
    assert mutation.lineno == bisect.bisect_right(line_starts, mutation.start)


# --- each operator fires where expected ---------------------------------------------------------------


def test_flip_comparison(queue_mutations):
    flips = {(m.function, _changed(m), m.replacement) for m in _of(queue_mutations, "flip_comparison")}
    assert ("Queue.take", "<", "<=") in flips
    assert ("Queue.take", ">", ">=") in flips
    assert ("merge", ">=", ">") in flips
    assert ("merge", "<=", "<") in flips
    assert ("merge", "is not", "is") in flips
    assert ("outer.inner", "in", "not in") in flips
    assert ("Queue.label", ">", ">=") in flips


def test_off_by_one(queue_mutations):
    changes = {(m.function, _changed(m), m.replacement) for m in _of(queue_mutations, "off_by_one")}
    assert {("merge", "0", "1"), ("merge", "1", "2"), ("merge", "1", "0"), ("merge", "3", "4")} <= changes
    assert ("Queue.label", "2", "3") in changes  # after non-ASCII text on the same line
    assert ("outer.inner", "1", "2") in changes
    assert not any(m.replacement == "-1" for m in _of(queue_mutations, "off_by_one"))  # no n-1 for 0


def test_swap_arguments_keeps_the_text_between(queue_mutations):
    [swap] = _of(queue_mutations, "swap_arguments", "merge")
    assert _changed(swap) == "first,  # the first — ü\n        second"
    assert swap.replacement == "second,  # the first — ü\n        first"
    assert swap.lineno == QUEUE[: swap.start].count("\n") + 1
    assert "'first' and 'second' of 'combine'" in swap.description


def test_remove_statement(queue_mutations):
    removed = {_changed(m) for m in _of(queue_mutations, "remove_statement")}
    assert "        self.items = list(items or [])\n" in removed
    assert "            i += 1\n" in removed
    assert "    total = (\n        len(first)\n        + len(second)\n    )\n" in removed  # multi-line
    assert "            out.append(first[i])\n" in removed
    assert not any("out.extend" in text for text in removed)  # shares its line with out.sort()
    assert not any("return" in text or "del " in text for text in removed)


def test_remove_branch(queue_mutations):
    branches = {_changed(m): m for m in _of(queue_mutations, "remove_branch")}
    assert "        else:\n            taken = list(self.items)\n" in branches
    elif_branch = "        elif first is not None:\n            out.append(second[j])\n            j += 1\n"
    assert elif_branch in branches
    assert branches[elif_branch].description.startswith("remove elif branch")
    whole_if = "        if x in values:\n            return x - 1\n"
    assert whole_if in branches and branches[whole_if].replacement == ""


def test_invert_condition(queue_mutations):
    inverted = {(_changed(m), m.replacement) for m in _of(queue_mutations, "invert_condition")}
    assert ("n < len(self.items) and self.cap > 0", "not (n < len(self.items) and self.cap > 0)") in inverted
    assert ("i < len(first) or j < len(second)", "not (i < len(first) or j < len(second))") in inverted
    assert ("width > 0", "not (width > 0)") in inverted  # ternary
    assert ("x in values", "not (x in values)") in inverted


def test_swap_bool_operator(queue_mutations):
    swaps = {(m.function, _changed(m), m.replacement) for m in _of(queue_mutations, "swap_bool_operator")}
    assert ("Queue.take", "and", "or") in swaps
    assert ("merge", "or", "and") in swaps
    assert ("merge", "and", "or") in swaps


def test_swap_arithmetic(queue_mutations):
    swaps = {(m.function, _changed(m), m.replacement) for m in _of(queue_mutations, "swap_arithmetic")}
    assert ("Queue.label", "*", "/") in swaps  # after non-ASCII text on the same line
    assert ("merge", "+=", "-=") in swaps
    assert ("merge", "+", "-") in swaps  # the multi-line sum
    assert ("merge", "-", "+") in swaps
    assert ("outer.inner", "-", "+") in swaps
    assert ("Queue.label", "+", "-") in swaps  # `prefix + padded`: neither side is a str literal
    assert not _of(queue_mutations, "swap_arithmetic", "Queue.__repr__")
    mixed = "def f(a):\n    b = 'x' + a\n    return a + b'y' + f'{a}'\n"
    assert not _of(find_mutations(mixed), "swap_arithmetic")


def test_every_operator_fires(queue_mutations):
    assert set(OPERATORS) <= {m.operator for m in queue_mutations}


# --- and nowhere excluded -----------------------------------------------------------------------------


def test_only_inside_functions(queue_mutations):
    assert all(m.function for m in queue_mutations)
    first_def = QUEUE.index("    def __init__")
    last_def_end = QUEUE.index('\n\nif __name__ == "__main__":')
    assert all(first_def < m.start < last_def_end for m in queue_mutations)
    assert not _overlapping(queue_mutations, "    twice = size * 2")


@pytest.mark.parametrize(
    "snippet",
    [
        '"""Take up to n items, 2 at a time."""',  # docstring
        'assert n >= 0 and n < 100, "n must be >= 0"',
        'log.debug("took %d of %d items", len(taken), n + 1)',
        'warnings.warn("take() is slow", stacklevel=2)',
        "@functools.lru_cache(maxsize=128)",  # decorator
        'def label(self, prefix: str = "q", width: int = 8) -> str:',  # defaults and annotations
        "def take(self, n: int = 1) -> list[int]:",
        '    if __name__ == "__main__":\n        print(inner(1), inner(2))\n',
        "    if TYPE_CHECKING:\n        values = values * 3\n",
    ],
)
def test_excluded_sites(queue_mutations, snippet):
    assert not _overlapping(queue_mutations, snippet)


def test_repr_is_never_mutated(queue_mutations):
    assert not [m for m in queue_mutations if m.function.endswith("__repr__")]


def test_qualified_function_names(queue_mutations):
    names = {m.function for m in queue_mutations}
    assert names == {"Queue.__init__", "Queue.take", "Queue.label", "merge", "outer", "outer.inner"}


# --- every mutant is a valid minimal edit ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_mutant_is_a_compiling_minimal_edit(name):
    source = SOURCES[name]
    mutations = find_mutations(source, name)
    assert mutations
    for mutation in mutations:
        assert mutation.path == name
        _check_mutant(mutation, source)


def test_crlf_source_gets_the_same_mutations(queue_mutations):
    crlf = find_mutations(SOURCES["queue_crlf.py"], "queue.py")
    assert [(m.operator, m.lineno, m.function) for m in crlf] == [
        (m.operator, m.lineno, m.function) for m in queue_mutations
    ]
    removed = [m for m in crlf if m.operator == "remove_statement"]
    assert all(_changed(m, SOURCES["queue_crlf.py"]).endswith("\r\n") for m in removed)


NAMES = st.sampled_from(["a", "b", "x1", "ñame", "δ"])
ATOMS = (
    NAMES
    | st.integers(0, 300).map(str)
    | st.text(alphabet="aé✓ —", max_size=4).map(repr)
    | st.tuples(NAMES, NAMES).map(lambda p: f"g({p[0]}, {p[1]})")
)
BINARY = st.sampled_from(["+", "-", "*", "/", "<", "<=", "==", "is not", "in", "and", "or"])


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(inner, BINARY, inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        ternary = st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})")
        negated = inner.map(lambda e: f"(not {e})")
        return binary | ternary | negated

    return st.recursive(ATOMS, extend, max_leaves=5)


def _statements(indent: str) -> st.SearchStrategy[str]:
    expr = _expressions()
    simple = st.one_of(
        st.tuples(NAMES, expr).map(lambda t: f"{indent}{t[0]} = {t[1]}  # ç {t[0]}"),
        st.tuples(NAMES, expr).map(lambda t: f"{indent}{t[0]} += {t[1]}"),
        st.tuples(expr, expr).map(lambda t: f"{indent}h({t[0]},\n{indent}  {t[1]})"),
        expr.map(lambda e: f'{indent}s = "ü"; t = {e}'),
    )
    branch = st.tuples(expr, simple, st.booleans()).map(
        lambda t: f"{indent}if {t[0]}:\n    {t[1]}" + (f"\n{indent}else:\n    {t[1]}" if t[2] else "")
    )
    return simple | branch


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.lists(_statements("    "), min_size=1, max_size=5))
def test_generated_functions_give_valid_minimal_edits(body):
    source = "def f(a, b, x1, ñame, δ):\n" + "\n".join(body) + "\n    return a\n"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mutations = find_mutations(source, "gen.py")
    for mutation in mutations:
        _check_mutant(mutation, source)
        assert mutation.function == "f"


# --- determinism and sampling -------------------------------------------------------------------------


def test_find_is_deterministic_and_ordered(queue_mutations):
    again = find_mutations(QUEUE, "queue.py")
    assert again == queue_mutations
    keys = [(m.start, m.end) for m in queue_mutations]
    assert keys == sorted(keys)


def test_sample_is_deterministic_and_spread(queue_mutations):
    first = sample_mutations(queue_mutations, random.Random(7), 12)
    assert first == sample_mutations(queue_mutations, random.Random(7), 12)
    assert len(first) == 12 and len(set(first)) == 12
    assert len({m.operator for m in first}) == len(OPERATORS)  # round-robin: every operator first
    one_each = sample_mutations(queue_mutations, random.Random(3), len(OPERATORS))
    assert sorted(m.operator for m in one_each) == sorted(OPERATORS)
    seeds = {tuple(sample_mutations(queue_mutations, random.Random(s), 5)) for s in range(5)}
    assert len(seeds) > 1


def test_sample_respects_limit(queue_mutations):
    assert sample_mutations(queue_mutations, random.Random(0), 0) == []
    assert sample_mutations([], random.Random(0), 5) == []
    everything = sample_mutations(queue_mutations, random.Random(0), 10_000)
    assert sorted(everything, key=queue_mutations.index) == queue_mutations


def test_sample_spreads_over_functions():
    source = "def f(a):\n" + "    a = a + 1\n" * 20 + "    return a\n\n\ndef g(a):\n    return a - 1\n"
    mutations = [m for m in find_mutations(source) if m.operator == "swap_arithmetic"]
    assert Counter(m.function for m in mutations) == {"f": 20, "g": 1}
    picked = sample_mutations(mutations, random.Random(0), 2)
    assert {m.function for m in picked} == {"f", "g"}


# --- robustness on real library code ------------------------------------------------------------------


@pytest.mark.parametrize("module", [textwrap, shlex, fractions, heapq, bisect], ids=lambda m: m.__name__)
def test_stdlib_mutants_compile(module):
    source = inspect.getsource(module)
    mutations = find_mutations(source, module.__name__ + ".py")
    assert len({m.operator for m in mutations}) >= 6
    for mutation in mutations:
        mutant = mutation.apply(source)
        assert mutant[: mutation.start] == source[: mutation.start]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(mutant, mutation.path, "exec")
