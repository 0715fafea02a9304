"""From rollout rewards to advantages: group-relative baselines, the DAPO overlong penalty, zero-variance.

A group is one task's rollouts under one policy. Every loss option subtracts the group's mean reward;
`grpo` and `dapo` also divide by the group's standard deviation (unbiased, as TRL computes it), `dr_grpo`
does not (Dr. GRPO: the division weights easy and hopeless tasks up). A group whose rewards are all equal has
zero advantages and no gradient, so it is dropped before training rather than costing a forward pass.
Per-turn credit (`turn_values`) replaces the one episode advantage with one per assistant turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchard_envs.episodes import Episode

# Rewards are sums of a few terms in [0, 1]; two rewards closer than this differ by rounding, not by outcome.
EQUAL_REWARDS = 1e-9
STD_EPSILON = 1e-4  # keeps a group of two nearly equal rewards from getting huge advantages


@dataclass
class Rollout:
    """One episode of a group, its (shaped) reward and, with per-turn credit, each turn's advantage."""

    episode: Episode
    reward: float
    turn_advantages: dict[int, float] = field(default_factory=dict)  # assistant message index -> advantage
    fork_values: dict[int, float] = field(default_factory=dict)  # reply number -> mean return of its forks

    def advantage_of(self, message_index: int, episode_advantage: float) -> float:
        """The turn's own advantage where credit assigned one, else the episode's."""
        return self.turn_advantages.get(message_index, episode_advantage)


@dataclass
class Group:
    """The rollouts of one task at one step."""

    task_id: str
    rollouts: list[Rollout]

    @property
    def rewards(self) -> list[float]:
        """Each rollout's reward, in order."""
        return [rollout.reward for rollout in self.rollouts]

    def has_variance(self) -> bool:
        """Whether the rewards differ (else every advantage is zero)."""
        rewards = self.rewards
        return len(rewards) > 1 and max(rewards) - min(rewards) > EQUAL_REWARDS


def group_advantages(rewards: Sequence[float], scale: bool) -> list[float]:
    """Reward minus the group mean, divided by the group's std when `scale`."""
    mean = sum(rewards) / len(rewards)
    centred = [reward - mean for reward in rewards]
    if not scale or len(rewards) < 2:
        return centred
    spread = reward_std(rewards) + STD_EPSILON
    return [c / spread for c in centred]


def reward_std(rewards: Sequence[float]) -> float:
    """The group's unbiased standard deviation (0 for a single reward)."""
    if len(rewards) < 2:
        return 0.0
    mean = sum(rewards) / len(rewards)
    return math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1))


def overlong_penalty(completion_tokens: int, limit: int | None, buffer: int) -> float:
    """DAPO's soft overlong punishment: 0 up to `limit - buffer` tokens, then linear down to -1 at
    `limit` and beyond. Applied per episode (the tokens of all its turns), since the episode is the sample."""
    if limit is None:
        return 0.0
    start = limit - buffer
    if completion_tokens <= start:
        return 0.0
    return max(-1.0, (start - completion_tokens) / buffer)


def shaped_reward(episode: Episode, overlong_limit: int | None, overlong_buffer: int) -> float:
    """The episode's reward plus the overlong penalty (when a limit is set)."""
    tokens = int(episode.metadata.tokens.get("completion", 0))
    return float(episode.metadata.reward) + overlong_penalty(tokens, overlong_limit, overlong_buffer)


def pure_min_form(step_rewards: Sequence[float], final_reward: float) -> list[float]:
    """PURE-style min-form credit: a turn's return is the minimum of the step rewards from it to the end
    (the final reward counts as the last step), so one later bad step caps the value of every turn before
    it instead of being averaged away, and a high step reward cannot be farmed by repetition."""
    values = [*step_rewards, final_reward]
    returns = []
    running = math.inf
    for value in reversed(values):
        running = min(running, value)
        returns.append(running)
    returns.reverse()
    return returns[: len(step_rewards)]
