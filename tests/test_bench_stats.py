"""orchard-bench statistics: the estimators against brute force, the bootstrap, and run summaries."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchard_envs.leaderboard.stats import (
    bootstrap_ci,
    mean,
    pass_at_k,
    pass_at_k_curve,
    pass_hat_k,
    summarize,
)


@st.composite
def trials(draw: Any, max_n: int = 40) -> tuple[int, int, int]:
    n = draw(st.integers(1, max_n))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@given(trials())
def test_pass_at_k_properties(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    value = pass_at_k(n, c, k)
    assert 0.0 <= value <= 1.0
    # The numerically stable product form of 1 - C(n-c, k) / C(n, k)
    expected = 1.0 if n - c < k else 1.0 - math.prod(1 - k / i for i in range(n - c + 1, n + 1))
    assert value == pytest.approx(expected, abs=1e-9)
    assert pass_at_k(n, n, k) == 1.0 and pass_at_k(n, 0, k) == 0.0
    if c < n:
        assert pass_at_k(n, c + 1, k) >= value
    if k < n:
        assert pass_at_k(n, c, k + 1) >= value
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)


@given(trials())
def test_pass_hat_k_properties(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    value = pass_hat_k(n, c, k)
    assert 0.0 <= value <= pass_at_k(n, c, k) <= 1.0
    assert pass_hat_k(n, n, k) == 1.0 and pass_hat_k(n, 0, k) == 0.0
    assert value == pytest.approx(math.comb(c, k) / math.comb(n, k), abs=1e-12)
    if c < n:
        assert pass_hat_k(n, c + 1, k) >= value
    if k < n:
        assert pass_hat_k(n, c, k + 1) <= value
    assert pass_hat_k(n, c, 1) == pytest.approx(c / n)
    if c < k:
        assert value == 0.0


@given(trials(max_n=10))
def test_estimators_equal_enumeration_over_all_k_subsets(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(outcomes, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets), abs=1e-12)
    assert pass_hat_k(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets), abs=1e-12)


def test_estimators_are_exact_at_the_ends() -> None:
    assert pass_at_k(200, 199, 100) == 1.0  # n - c < k
    assert pass_hat_k(200, 200, 150) == 1.0
    assert pass_at_k(3, 1, 2) == 2 / 3 and pass_hat_k(3, 2, 2) == 1 / 3


@pytest.mark.parametrize("n, c, k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4), (0, 0, 1)])
def test_estimators_refuse_impossible_counts(n: int, c: int, k: int) -> None:
    for estimator in (pass_at_k, pass_hat_k):
        with pytest.raises(ValueError):
            estimator(n, c, k)


def test_pass_hat_k_is_the_unordered_chance_not_the_first_k() -> None:
    # Claw's old definition took the first k trials in order; C(c,k)/C(n,k) does not depend on the order.
    assert pass_hat_k(4, 3, 3) == 0.25
    assert pass_hat_k(3, 3, 3) == 1.0 and pass_hat_k(3, 2, 3) == 0.0
    assert pass_hat_k(1, 0, 1) == 0.0


# ---------------------------------------------------------------- bootstrap


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.integers(0, 5))
def test_bootstrap_interval_is_ordered_within_range_and_reproducible(values: list[float], seed: int) -> None:
    low, high = bootstrap_ci(values, resamples=200, seed=seed)
    assert min(values) - 1e-12 <= low <= high <= max(values) + 1e-12
    assert bootstrap_ci(values, resamples=200, seed=seed) == (low, high)


def test_bootstrap_interval_of_constant_values_is_the_value() -> None:
    assert bootstrap_ci([1 / 3] * 7) == (1 / 3, 1 / 3)


def test_bootstrap_interval_narrows_with_more_tasks_and_covers_the_mean() -> None:
    few = [1.0, 0.0] * 5
    many = few * 20
    low_few, high_few = bootstrap_ci(few)
    low_many, high_many = bootstrap_ci(many)
    assert low_few <= 0.5 <= high_few and low_many <= 0.5 <= high_many
    assert high_many - low_many < high_few - low_few
    assert bootstrap_ci(many, level=0.5)[1] - bootstrap_ci(many, level=0.5)[0] < high_many - low_many


def test_bootstrap_takes_any_statistic_and_refuses_nothing_to_resample() -> None:
    pairs = [(3, 3), (3, 0), (1, 1)]  # (n, c): a pooled rate is a ratio, not a mean of rates
    low, high = bootstrap_ci(pairs, lambda s: sum(c for _, c in s) / sum(n for n, _ in s))
    assert 0.0 <= low <= 4 / 7 <= high <= 1.0
    with pytest.raises(ValueError):
        bootstrap_ci([])
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], level=1.0)


# ---------------------------------------------------------------- summaries


def row(task: str, trial: int, resolved: bool | None, **overrides: Any) -> dict[str, Any]:
    base = {
        "task_id": task,
        "trial": trial,
        "status": "submitted",
        "resolved": resolved,
        "reward": float(bool(resolved)),
        "steps": 4,
        "turns": 5,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cost": None,
        "seconds": 2.0,
        "attempts": 1,
        "category": "email",
        "split": "test",
        "error": "",
        "episode_id": f"{task}-{trial}",
        "finished_at": "2025-01-01T00:00:00+00:00",
    }
    return {**base, **overrides}


def test_summarize_by_hand() -> None:
    rows = [
        row("a", 0, True, turns=3, cost=0.5),
        row("a", 1, True, turns=7, cost=0.25),
        row("a", 2, False, category="email"),
        row("b", 0, False, category="calendar", status="infra_error", prompt_tokens=0, completion_tokens=0),
        row("b", 1, None, category="calendar", seconds=8.0),
        row("b", 2, True, category="calendar"),
    ]
    summary = summarize(rows, k=2)
    assert (summary.tasks, summary.episodes, summary.k, summary.complete) == (2, 6, 2, True)
    assert summary.success_rate == pytest.approx(3 / 6)
    # a: n=3 c=2; b: n=3 c=1
    assert summary.pass_at_k == pytest.approx((1.0 + (1 - 1 / 3)) / 2)
    assert summary.pass_hat_k == pytest.approx((1 / 3 + 0.0) / 2)
    assert summary.mean_turns == pytest.approx((3 + 7 + 5 * 4) / 6)
    assert summary.mean_tokens == pytest.approx(120 * 5 / 6)
    assert summary.mean_seconds == pytest.approx((2.0 * 5 + 8.0) / 6)
    assert summary.total_cost == pytest.approx(0.75)
    assert summary.infra_error_rate == pytest.approx(1 / 6)
    assert summary.per_category == {"calendar": pytest.approx(1 / 3), "email": pytest.approx(2 / 3)}
    assert summary.trials == {"a": (3, 2), "b": (3, 1)}
    for point, (low, high) in [
        (summary.success_rate, summary.success_ci),
        (summary.pass_at_k, summary.pass_at_k_ci),
        (summary.pass_hat_k, summary.pass_hat_k_ci),
    ]:
        assert 0.0 <= low <= point <= high <= 1.0
    assert summary.to_dict()["trials"] == {"a": (3, 2), "b": (3, 1)}


def test_summarize_with_fewer_than_k_trials_uses_k_prime_and_says_so() -> None:
    rows = [row("a", 0, True), row("a", 1, False), row("a", 2, True), row("b", 0, False, category=None)]
    summary = summarize(rows, k=3)
    assert not summary.complete
    # a: k=3 over n=3 -> pass@3 = 1, pass^3 = 0; b: k'=1 over n=1 -> 0, 0
    assert summary.pass_at_k == pytest.approx(0.5) and summary.pass_hat_k == 0.0
    assert summary.total_cost is None
    assert summary.per_category == {"email": pytest.approx(2 / 3), "uncategorized": 0.0}


def test_summarize_refuses_nothing() -> None:
    with pytest.raises(ValueError, match="no finished episodes"):
        summarize([], k=1)
    with pytest.raises(ValueError):
        summarize([row("a", 0, True)], k=0)


def test_pass_at_k_curve_rises_with_k() -> None:
    curve = pass_at_k_curve({"a": (4, 1), "b": (4, 0), "c": (2, 2)}, 4)
    assert curve[0] == pytest.approx(mean([1 / 4, 0.0, 1.0]))
    assert all(later >= earlier for earlier, later in itertools.pairwise(curve))
    assert curve[-1] == pytest.approx(mean([1.0, 0.0, 1.0]))
    assert pass_at_k_curve({}, 3) == []
