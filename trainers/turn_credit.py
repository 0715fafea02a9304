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

from orchard_envs.trainers.advantages import STD_EPSILON, Group, pure_min_form, reward_std
from orchard_envs.trainers.credit import make_scorer

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
