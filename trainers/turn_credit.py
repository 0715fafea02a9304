"""Credit below the episode: one advantage per assistant turn instead of one per rollout.

`pure`: PURE-style min-form credit over step rewards. The step rewards come from the credit-assignment
scorer the SFT trainer uses (`trainers/credit`: good and recovery steps 1, unnecessary ones 0.5, mistakes
0), the episode's reward closes the list, and a turn's value is the minimum from it to the end, so a
later mistake caps the value of every step that led to it (a sum would let repeated good steps mask it).
A turn's advantage is its value minus the group's mean reward, scaled as the episode advantages are.

`turn-fork` (`fork_values`): at chosen turns the env is forked (`env.fork()`: a sandbox fork for SWE, a
copy of the services' state for Claw) and k continuations are rolled out from there; their mean return is
the value of the state after that turn, and the turn's advantage is the value after it minus the value
before it (the group mean for the first), so each turn is judged by what it changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from orchard_envs.errors import OrchardError
from orchard_envs.runner import TurnPoint, continue_episode
from orchard_envs.trainers.advantages import STD_EPSILON, Group, pure_min_form, reward_std
from orchard_envs.trainers.credit import make_scorer

log = logging.getLogger(__name__)

STEP_REWARDS = {"good": 1.0, "recovery": 1.0, "unnecessary": 0.5, "mistake": 0.0}


def pure_credit(groups: list[Group], scale: bool) -> None:
    """Set every rollout's per-turn advantages from min-form values of its scored steps."""
    scorer = make_scorer("heuristic")
    for group in groups:
        rewards = group.rewards
        mean = sum(rewards) / len(rewards)
        spread = reward_std(rewards) + STD_EPSILON if scale else 1.0
        for rollout in group.rollouts:
            labels = scorer.score(rollout.episode)
            values = pure_min_form([STEP_REWARDS[label.label] for label in labels], rollout.reward)
            pairs = zip(labels, values, strict=True)
            rollout.turn_advantages = {label.message_index: (value - mean) / spread for label, value in pairs}


class TurnForks:
    """An `on_turn` hook for one rollout: after each of its first `turns` replies, fork the env `samples`
    times and play each fork to the end with a fresh harness and agent; `values[i]` is the mean return
    after reply i. A fork that fails (a sandbox that will not fork) leaves that turn unvalued, not the
    rollout failed."""

    def __init__(
        self, make_harness: Callable[[], Any], make_agent: Callable[[], Any], turns: int, samples: int
    ) -> None:
        self.make_harness, self.make_agent = make_harness, make_agent
        self.turns, self.samples = turns, samples
        self.values: dict[int, float] = {}
        self.continuations = 0

    def __call__(self, point: TurnPoint) -> None:
        """Value the state after this reply, if it is one of the first `turns`."""
        if point.replies > self.turns:
            return
        returns = []
        for sample in range(self.samples):
            try:
                fork = point.env.unwrapped.fork()
            except OrchardError as exc:
                log.warning("turn %d of %s: the env did not fork (%s)", point.replies, point.task_id, exc)
                return
            try:
                trial = continuation_trial(point.trial, point.replies, sample)
                reward, _ = continue_episode(fork, self.make_harness(), self.make_agent(), point, trial=trial)
                returns.append(reward)
            finally:
                fork.close()
        self.continuations += len(returns)
        self.values[point.replies] = sum(returns) / len(returns)


def continuation_trial(trial: int, replies: int, sample: int) -> int:
    """The draw trial of a continuation: negative, so never one of the run's own (non-negative) trials."""
    return -(trial * 10_000 + replies * 100 + sample + 1)


def fork_credit(groups: list[Group], scale: bool) -> None:
    """Per-turn advantages from forked values: a reply's advantage is the value after it minus the value
    before it. Before the first reply the value is the group's mean reward; after the last, or after a
    reply nobody forked at, it is the rollout's own reward."""
    for group in groups:
        rewards = group.rewards
        baseline = sum(rewards) / len(rewards)
        spread = reward_std(rewards) + STD_EPSILON if scale else 1.0
        for rollout in group.rollouts:
            forked = rollout.fork_values
            replies = [i for i, m in enumerate(rollout.episode.messages) if m["role"] == "assistant"]
            before = baseline
            for number, message_index in enumerate(replies, start=1):
                after = forked.get(number, rollout.reward)
                rollout.turn_advantages[message_index] = (after - before) / spread
                before = forked.get(number, before)
