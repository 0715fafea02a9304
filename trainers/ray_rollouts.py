"""`--executor ray`: the GRPO trainer's episodes run in Ray actors, so envs can live anywhere on a cluster.

Each actor builds its own env, harness and `hf` agent from the factory's names and options, as orchard-bench's
Ray executor does (`leaderboard.ray_executor`, whose connection and error handling this shares); the agent
samples from the served policy (`--engine server`), which the trainer sends the new weights after every
step, so a loaded model never crosses the wire. Actors live for the whole run (an env's services or
sandboxes start once). Turn forks run in the actor that holds the rollout's env; their values come back
with the episode. Episodes are a function of the weights and (seed, task, trial), so the curve is the one
the thread workers give.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from orchard_envs.episodes import Episode
from orchard_envs.leaderboard.executor import EpisodeFactory, Job
from orchard_envs.leaderboard.ray_executor import (
    ACTOR_CPUS,
    CLOSE_TIMEOUT_S,
    EpisodeActor,
    check_address,
    connect,
    require_ray,
    result_of,
)
from orchard_envs.trainers.rollouts import MAX_INFRA_RETRIES


class RolloutActor(EpisodeActor):
    """orchard-bench's episode actor, with an RL rollout's turn forks."""

    def rollout(
        self, job: Job, forks: tuple[int, int] | None
    ) -> tuple[dict[str, Any], dict[int, float], int]:
        """Run one rollout; (the episode as a row, its turn values, the continuations they took)."""
        from orchard_envs.trainers.turn_credit import TurnForks

        self.start()  # again after Ray restarted this actor in a new process
        assert self.worker is not None
        hook = TurnForks(self.factory.harness, self.factory.agent, *forks) if forks else None
        result = self.worker.run(job, self.max_infra_retries, on_turn=hook)
        assert result is not None  # no stop event: a job always ends with an episode
        return result[0].to_row(), (hook.values if hook else {}), (hook.continuations if hook else 0)


class RayRolloutPool:
    """`workers` Ray actors kept across steps; `run` has the thread pool's signature."""

    def __init__(self, factory: EpisodeFactory, workers: int, address: str | None) -> None:
        self.factory = factory
        self._ray = ray = require_ray()
        check_address(address)
        connect(ray, address, workers)
        try:
            options = ray.remote(
                num_cpus=ACTOR_CPUS, max_restarts=MAX_INFRA_RETRIES, max_task_retries=MAX_INFRA_RETRIES
            )
            portable = factory.portable()
            self._actors = [options(RolloutActor).remote(portable, MAX_INFRA_RETRIES) for _ in range(workers)]
            for ref in [actor.start.remote() for actor in self._actors]:
                result_of(ray, ref)  # a setup mistake (an unknown env, no server) is raised here, once
        except BaseException:
            ray.shutdown()
            raise

    def run(self, jobs: list[Job], hooks: list[Any] | None = None) -> list[Episode]:
        """Every job's episode, in job order; `hooks[i]` (a TurnForks) gets job i's turn values."""
        hooks = hooks or [None] * len(jobs)
        ray, idle = self._ray, deque(self._actors)
        episodes: list[Episode | None] = [None] * len(jobs)
        calls: dict[Any, tuple[Any, int]] = {}
        following = 0
        while following < len(jobs) or calls:
            while idle and following < len(jobs):
                hook = hooks[following]
                forks = (hook.turns, hook.samples) if hook is not None else None
                actor = idle.popleft()
                calls[actor.rollout.remote(jobs[following], forks)] = (actor, following)
                following += 1
            done, _ = ray.wait(list(calls), num_returns=1)
            for ref in done:
                actor, index = calls.pop(ref)
                row, values, continuations = result_of(ray, ref)
                episodes[index] = Episode.from_row(row)
                if hooks[index] is not None:
                    hooks[index].values.update(values)
                    hooks[index].continuations += continuations
                idle.append(actor)
        return [episode for episode in episodes if episode is not None]

    def close(self) -> None:
        """Close every actor's env, then end the actors and this process's Ray connection."""
        ray = self._ray
        closing = [actor.close.remote() for actor in self._actors]
        ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for actor in self._actors:
            ray.kill(actor)
        ray.shutdown()
