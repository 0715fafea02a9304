"""Rollouts for RL: groups of episodes run by the same workers and `run_episode` that `orchard-bench` uses.

`jobs` workers (threads), each with its own env and harness and a clone of one `hf` agent, run the
episodes of a round at once; their model calls go to one generator that batches them (the rollout
engine), which shares the policy's weights, so an optimizer step is seen by the next rollout with no copy.
Each episode's seed is its trial number, and its draws come from (run seed, task, trial, turn): a step's
rollouts are a function of the weights and the seed, so a resumed run rolls out the same episodes.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from orchard_envs.episodes import Episode
from orchard_envs.leaderboard.executor import EpisodeFactory, EpisodeWorker, Job
from orchard_envs.runner import OnTurn

MAX_INFRA_RETRIES = 2


class RolloutPool:
    """`workers` episode workers kept across steps (an env's services or sandboxes start once)."""

    def __init__(self, factory: EpisodeFactory, workers: int) -> None:
        self.factory = factory
        self._idle: queue.Queue[EpisodeWorker] = queue.Queue()
        self._all: list[EpisodeWorker] = []
        try:
            for _ in range(workers):
                worker = EpisodeWorker(factory)
                self._all.append(worker)
                self._idle.put(worker)
        except BaseException:
            self.close()
            raise
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rollout")

    def run(self, jobs: list[Job], hooks: list[OnTurn | None] | None = None) -> list[Episode]:
        """Every job's episode, in job order (an infra fault is retried on a fresh env, then recorded);
        `hooks[i]` is job i's `on_turn` (turn forks)."""
        return list(self._threads.map(self._run_one, jobs, hooks or [None] * len(jobs)))

    def _run_one(self, job: Job, hook: OnTurn | None) -> Episode:
        with self._worker() as worker:
            result = worker.run(job, MAX_INFRA_RETRIES, on_turn=hook)
        assert result is not None  # no stop event: a job always ends with an episode
        return result[0]

    @contextmanager
    def _worker(self) -> Iterator[EpisodeWorker]:
        worker = self._idle.get()
        try:
            yield worker
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Close every worker's env."""
        threads = getattr(self, "_threads", None)
        if threads is not None:
            threads.shutdown(wait=True)
        for worker in self._all:
            worker.close()


def rollout_pool(factory: EpisodeFactory, workers: int, executor: str, address: str | None) -> Any:
    """The trainer's episode workers: threads here (`RolloutPool`), or Ray actors (`RayRolloutPool`)."""
    if executor == "ray":
        from orchard_envs.trainers.ray_rollouts import RayRolloutPool

        return RayRolloutPool(factory, workers, address)
    return RolloutPool(factory, workers)


def colocated_generator(model: Any, tokenizer: Any, end_ids: set[int], name: str) -> Any:
    """An `HFGenerator` around the policy being trained (no second copy of the weights, nothing to sync).
    Its generation config is made neutral for sampling; the checkpoint's stays in
    `checkpoint_generation_config`, which the trainer puts back before it exports."""
    from orchard_envs.agents.hf_backend import HFGenerator

    return HFGenerator.from_loaded(model, tokenizer, end_ids, name)


def trial_number(step: int, round_: int, index: int, max_rounds: int, max_group: int) -> int:
    """A trial number unique to (step, round, rollout) within a task: its env seed and draw seeds."""
    return (step * max_rounds + round_) * max_group + index


def rollout_jobs(
    plan: list[tuple[str, int]], step: int, round_: int, max_rounds: int, max_group: int
) -> list[Job]:
    """The jobs of a round's plan: each task's group, trial numbers unique within the run."""
    return [
        Job(task_id, trial_number(step, round_, index, max_rounds, max_group))
        for task_id, size in plan
        for index in range(size)
    ]


def generated_tokens(episodes: list[Episode]) -> int:
    """Tokens the policy sampled in these episodes."""
    return sum(int(episode.metadata.tokens.get("completion", 0)) for episode in episodes)


def describe(episodes: list[Episode]) -> dict[str, Any]:
    """How the round's episodes ended, by status."""
    counts: dict[str, int] = {}
    for episode in episodes:
        counts[episode.metadata.status] = counts.get(episode.metadata.status, 0) + 1
    return counts
