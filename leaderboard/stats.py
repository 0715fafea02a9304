"""The numbers a leaderboard ranks by: pass@k, pass^k, bootstrap intervals, and one run's summary.

Definitions are those of docs/bench.md. Both estimators are exact (fractions of binomial coefficients, so
a task solved in every trial gives exactly 1.0), and the bootstrap uses a fixed seed so the same results
always print the same table.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, TypeVar

T = TypeVar("T")
Interval = tuple[float, float]
UNCATEGORIZED = "uncategorized"


def _check(n: int, c: int, k: int, name: str) -> None:
    if not 0 <= c <= n:
        raise ValueError(f"{name} needs 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"{name} needs 1 <= k <= n, got n={n}, k={k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n trials with c passes: 1 - C(n-c, k) / C(n, k), the chance that k trials drawn
    without replacement include a pass; 1.0 when n - c < k (every k-subset holds a pass)."""
    _check(n, c, k, "pass@k")
    if n - c < k:
        return 1.0
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


def pass_hat_k(n: int, c: int, k: int) -> float:
    """pass^k from n trials with c passes: C(c, k) / C(n, k), the chance that k trials drawn without
    replacement all pass (reliability rather than pass@k's capability); 0.0 when c < k."""
    _check(n, c, k, "pass^k")
    return float(Fraction(math.comb(c, k), math.comb(n, k)))


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean with an exactly rounded sum, so resampled means of equal values equal the value."""
    return math.fsum(values) / len(values)


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), on a sorted sequence."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def bootstrap_ci(
    per_task_values: Sequence[T],
    stat: Callable[[Sequence[T]], float] = mean,  # type: ignore[assignment]
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of `stat` over tasks: tasks, not episodes, are resampled, because
    trials of one task are not independent. A fixed seed makes it reproducible."""
    if not per_task_values:
        raise ValueError("a bootstrap interval needs at least one task")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"need 0 < level < 1 and resamples >= 1, got level={level}, resamples={resamples}")
    values = list(per_task_values)
    rng = random.Random(seed)
    draws = sorted(stat(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = (1 - level) / 2
    return _quantile(draws, tail), _quantile(draws, 1 - tail)


def _pooled_rate(counts: Sequence[tuple[int, int]]) -> float:
    """Resolved episodes over all episodes for (n, c) pairs: the success rate of a set of tasks."""
    return sum(c for _, c in counts) / sum(n for n, _ in counts)


def pass_at_k_curve(trials: Mapping[str, tuple[int, int]], max_k: int) -> list[float]:
    """pass@k for k = 1..max_k over tasks given as task -> (n, c); a task with n < k uses k' = n."""
    if not trials:
        return []
    return [mean([pass_at_k(n, c, min(k, n)) for n, c in trials.values()]) for k in range(1, max_k + 1)]


@dataclass(frozen=True)
class RunSummary:
    """One run's results over its tasks; `complete` is False when some task has fewer than k trials (its
    pass@k and pass^k then use k' = its trial count, so they are not yet comparable with complete runs)."""

    k: int
    tasks: int
    episodes: int
    success_rate: float
    success_ci: Interval
    pass_at_k: float
    pass_at_k_ci: Interval
    pass_hat_k: float
    pass_hat_k_ci: Interval
    mean_turns: float
    mean_tokens: float
    mean_seconds: float
    total_cost: float | None
    infra_error_rate: float
    complete: bool
    turn_limit_rate: float = 0.0  # episodes the harness cut at max_turns (ungraded, so failures)
    suspicious_resolves: int = 0  # resolved episodes the grader flagged as suspicious
    statuses: dict[str, int] = field(default_factory=dict)  # episode status -> episodes
    per_category: dict[str, float] = field(default_factory=dict)
    trials: dict[str, tuple[int, int]] = field(default_factory=dict)  # task -> (n trials, c resolved)
    mean_reward: float = 0.0  # the env's reward, averaged over episodes (partial credit shows here)
    mean_reward_ci: Interval = (0.0, 0.0)
    valid_call_rate: float | None = None  # episodes with a valid tool call (`has_valid_tool_call`); None:
    valid_call_ci: Interval | None = None  # the rows do not say (read without their transcripts)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready data."""
        return asdict(self)


def _task_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        entry = counts[row["task_id"]]
        entry[0] += 1
        entry[1] += row.get("resolved") is True
    return {task: (n, c) for task, (n, c) in sorted(counts.items())}


def _per_category(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    seen: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        entry = seen[row.get("category") or UNCATEGORIZED]
        entry[0] += 1
        entry[1] += row.get("resolved") is True
    return {name: c / n for name, (n, c) in sorted(seen.items())}


def is_suspicious_resolve(row: Mapping[str, Any]) -> bool:
    """A resolve the grader doubts (`suspicious`: its reasons, as ResultsStore.rows() reads them): counted
    apart, never hidden; it still counts as resolved."""
    return row.get("resolved") is True and bool(row.get("suspicious"))


# What the env or the harness answers instead of running a call: the env's reply to an invalid action
# (unknown tool, bad or missing arguments; `tool_env.py`) and to a tool that failed, and the harness's note
# for calls after the end. The harnesses wrap observations in these prefixes (text, bash-only).
REFUSED = ("Error:", "Not run:")
OBSERVATION_WRAPPERS = ("<tool_response>\n", "Output:\n")


def _observations(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """The env's answers to tool calls: `tool` messages, and the user messages after the instruction that are
    not a harness's format-error note (text harnesses answer calls as user messages)."""
    seen_instruction, found = False, []
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        if message.get("role") == "tool":
            found.append(text)
        elif message.get("role") == "user":
            if seen_instruction and not text.startswith("Format error:"):
                found.append(text)
            seen_instruction = True
    return found


def has_valid_tool_call(messages: Sequence[Mapping[str, Any]], steps: int) -> bool:
    """True when the env ran at least one well-formed tool call: the harness parsed it (an env step was taken)
    and the env answered with something other than an error (`REFUSED`). A tool that ran and failed also
    answers `Error:`, so this errs on the side of not counting."""
    if steps < 1:
        return False
    for text in _observations(messages):
        for wrapper in OBSERVATION_WRAPPERS:
            text = text.removeprefix(wrapper)
        if not text.lstrip().startswith(REFUSED):
            return True
    return False


def _pooled_mean(groups: Sequence[Sequence[float]]) -> float:
    """The mean over every value of a set of tasks' values (each task's episodes)."""
    return math.fsum(value for group in groups for value in group) / sum(len(group) for group in groups)


def _per_task(
    rows: Iterable[Mapping[str, Any]], value: Callable[[Mapping[str, Any]], float]
) -> list[list[float]]:
    grouped: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        grouped[row["task_id"]].append(value(row))
    return [grouped[task] for task in sorted(grouped)]


def summarize(rows: Sequence[Mapping[str, Any]], k: int, resamples: int = 2000, seed: int = 0) -> RunSummary:
    """Summarize a run's results rows (ResultsStore.rows()): every finished trial counts, infra errors
    included (they are failures to the success rate, and reported apart as the infra-error rate), as do
    harness cuts (`turn_limit`: ungraded, so unresolved). Suspicious resolves count as resolved and are
    also counted apart."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if not rows:
        raise ValueError("no finished episodes")
    trials = _task_counts(rows)
    counts = list(trials.values())
    at_k = [pass_at_k(n, c, min(k, n)) for n, c in counts]
    hat_k = [pass_hat_k(n, c, min(k, n)) for n, c in counts]
    costs = [row["cost"] for row in rows if row.get("cost") is not None]

    def interval(values: Sequence[Any], stat: Callable[[Sequence[Any]], float] = mean) -> Interval:
        return bootstrap_ci(values, stat, resamples=resamples, seed=seed)

    return RunSummary(
        k=k,
        tasks=len(trials),
        episodes=len(rows),
        success_rate=_pooled_rate(counts),
        success_ci=interval(counts, _pooled_rate),
        pass_at_k=mean(at_k),
        pass_at_k_ci=interval(at_k),
        pass_hat_k=mean(hat_k),
        pass_hat_k_ci=interval(hat_k),
        mean_turns=mean([row["turns"] for row in rows]),
        mean_tokens=mean([row["prompt_tokens"] + row["completion_tokens"] for row in rows]),
        mean_seconds=mean([row["seconds"] for row in rows]),
        total_cost=math.fsum(costs) if costs else None,
        infra_error_rate=sum(row["status"] == "infra_error" for row in rows) / len(rows),
        complete=all(n >= k for n, _ in counts),
        turn_limit_rate=sum(row["status"] == "turn_limit" for row in rows) / len(rows),
        suspicious_resolves=sum(is_suspicious_resolve(row) for row in rows),
        statuses=dict(sorted(Counter(str(row["status"]) for row in rows).items())),
        per_category=_per_category(rows),
        trials=trials,
        **_reward_and_calls(rows, interval),
    )


def _reward_and_calls(
    rows: Sequence[Mapping[str, Any]], interval: Callable[[Sequence[Any], Callable[..., float]], Interval]
) -> dict[str, Any]:
    """Mean reward and the valid-call share, each pooled over episodes with a bootstrap over tasks (like the
    success rate); the share only when every row says (`valid_tool_call`)."""
    rewards = _per_task(rows, lambda row: float(row["reward"]))
    found: dict[str, Any] = {
        "mean_reward": _pooled_mean(rewards),
        "mean_reward_ci": interval(rewards, _pooled_mean),
    }
    if all(row.get("valid_tool_call") is not None for row in rows):
        calls = _per_task(rows, lambda row: float(bool(row["valid_tool_call"])))
        found |= {"valid_call_rate": _pooled_mean(calls), "valid_call_ci": interval(calls, _pooled_mean)}
    return found
