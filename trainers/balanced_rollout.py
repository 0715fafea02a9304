"""Balanced Adaptive Rollout: which tasks to roll out, how many times, and which groups to train on.

Orchard names the method but does not publish it; this is ours, in four rules.

1. A running pass-rate estimate per task: the mean of a Beta(1, 1) prior updated with every rollout (a pass
   is a reward at or above the success threshold), with old evidence decayed (`decay` per observation of the
   task) so the estimate follows the policy as it improves.
2. Tasks are drawn without replacement with weight P(a group has reward variance) = 1 - p^k - (1 - p)^k
   under the estimate p and group size k, floored at `floor` so solved and hopeless tasks are still probed
   now and then (the policy moves). A task near 50% is drawn most; one at 0% or 100% rarely.
3. Group size grows with the task's uncertainty: k = min + round((max - min) * 4 p (1 - p)), so a task near
   50% gets `max_group_size` rollouts and a solved or hopeless one `min_group_size` (a cheap probe).
4. Zero-variance groups are dropped (no gradient); the kept groups of a step are balanced between positive
   (mean reward above the group's midpoint target 0.5) and negative ones: each round tilts the draw toward
   tasks on the side the step lacks, and when more groups were kept than needed, the batch alternates sides.

Everything random comes from a generator seeded by (seed, step, round), so a resumed run draws the same.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from orchard_envs.trainers.advantages import Group

PASS_RATE_BINS = 10


@dataclass
class Estimate:
    """Decayed pass/fail evidence of one task."""

    passes: float = 0.0
    fails: float = 0.0

    @property
    def pass_rate(self) -> float:
        """Posterior mean under a uniform prior."""
        return (1.0 + self.passes) / (2.0 + self.passes + self.fails)

    @property
    def seen(self) -> float:
        """Effective number of observations."""
        return self.passes + self.fails


@dataclass(frozen=True)
class RolloutSettings:
    """The knobs of the procedure."""

    group_size: int
    min_group_size: int
    max_group_size: int
    success_threshold: float
    balanced: bool
    floor: float = 0.05
    decay: float = 0.9


class BalancedRollout:
    """Plans each round's (task, group size) pairs and keeps the per-task estimates."""

    def __init__(self, task_ids: Sequence[str], settings: RolloutSettings, seed: int) -> None:
        self.task_ids = list(task_ids)
        self.settings, self.seed = settings, seed
        self.estimates = {task_id: Estimate() for task_id in self.task_ids}

    def plan(
        self, count: int, step: int, round_: int, positives: int, negatives: int
    ) -> list[tuple[str, int]]:
        """`count` distinct tasks (fewer if the suite is smaller) with the group size of each."""
        rng = random.Random(f"{self.seed}:{step}:{round_}")
        count = min(count, len(self.task_ids))
        if not self.settings.balanced:
            return [(task_id, self.settings.group_size) for task_id in rng.sample(self.task_ids, count)]
        weights = {task_id: self._weight(task_id, positives, negatives) for task_id in self.task_ids}
        chosen: list[str] = []
        for _ in range(count):  # weighted draws without replacement
            left = [task_id for task_id in self.task_ids if task_id not in chosen]
            chosen.append(rng.choices(left, [weights[task_id] for task_id in left])[0])
        return [(task_id, self.group_size(task_id)) for task_id in chosen]

    def group_size(self, task_id: str) -> int:
        """Rollouts for this task: more the nearer its pass rate is to 50%."""
        s = self.settings
        if not s.balanced:
            return s.group_size
        p = self.estimates[task_id].pass_rate
        return s.min_group_size + round((s.max_group_size - s.min_group_size) * 4 * p * (1 - p))

    def observe(self, group: Group) -> None:
        """Fold a group's outcomes into its task's estimate."""
        estimate = self.estimates.setdefault(group.task_id, Estimate())
        for reward in group.rewards:
            estimate.passes *= self.settings.decay
            estimate.fails *= self.settings.decay
            if reward >= self.settings.success_threshold:
                estimate.passes += 1
            else:
                estimate.fails += 1

    def select(self, kept: list[Group], count: int) -> list[Group]:
        """At most `count` of the kept groups, alternating positive and negative ones while both last."""
        if len(kept) <= count:
            return list(kept)
        positive = [g for g in kept if is_positive(g)]
        negative = [g for g in kept if not is_positive(g)]
        chosen: list[Group] = []
        while len(chosen) < count:
            for side in (positive, negative) if len(chosen) % 2 == 0 else (negative, positive):
                if side:
                    chosen.append(side.pop(0))
                    break
        return chosen

    def histogram(self) -> list[int]:
        """How many tasks have a pass-rate estimate in each tenth of [0, 1]."""
        bins = [0] * PASS_RATE_BINS
        for estimate in self.estimates.values():
            bins[min(int(estimate.pass_rate * PASS_RATE_BINS), PASS_RATE_BINS - 1)] += 1
        return bins

    def state_dict(self) -> dict[str, list[float]]:
        """The estimates, for a resumable state."""
        return {task_id: [e.passes, e.fails] for task_id, e in self.estimates.items()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        """Restore the estimates of a saved run."""
        for task_id, (passes, fails) in state.items():
            self.estimates[task_id] = Estimate(passes, fails)

    def _weight(self, task_id: str, positives: int, negatives: int) -> float:
        p = self.estimates[task_id].pass_rate
        k = self.group_size(task_id)
        useful = max(1 - p**k - (1 - p) ** k, self.settings.floor)
        lacking_positive, lacking_negative = positives < negatives, negatives < positives
        if (lacking_positive and p >= 0.5) or (lacking_negative and p < 0.5):
            useful *= 2  # tilt toward the side this step has fewer groups of
        return useful


def is_positive(group: Group) -> bool:
    """A group that mostly succeeded (it teaches from its failures); negative ones teach from successes."""
    rewards = group.rewards
    return sum(rewards) / len(rewards) >= 0.5
