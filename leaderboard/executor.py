"""Running (task, trial) jobs: `-j` worker threads, each with its own env, harness and agent clone.

Infrastructure faults (a sandbox died, a service went down) are retried on a fresh env up to a limit and
recorded apart from model failures; every finished job goes to `on_result` (the store commits it). A stop
event ends the run between episodes: what has not finished is not recorded and runs again on resume.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from orchard_envs.agents.base import Agent
from orchard_envs.episodes import Episode
from orchard_envs.harnesses.base import Harness
from orchard_envs.runner import run_episode


@dataclass(frozen=True)
class Job:
    task_id: str
    trial: int
    category: str | None = None


@dataclass
class EpisodeFactory:
    """How a worker makes its own env, harness and agent (all three hold per-episode state)."""

    env_id: str
    env_kwargs: dict[str, Any]
    harness: Callable[[], Harness]
    agent: Agent

    def env(self) -> gym.Env:
        return gym.make(self.env_id, **self.env_kwargs)


OnResult = Callable[[Job, Episode, int], None]  # job, episode, attempts


def run_local(
    jobs: list[Job],
    factory: EpisodeFactory,
    workers: int,
    on_result: OnResult,
    stop: threading.Event,
    max_infra_retries: int = 2,
) -> None:
    """Run every job unless `stop` is set; the first exception of any worker is raised here."""
    pending: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        pending.put(job)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            _worker(pending, factory, on_result, stop, max_infra_retries)
        except BaseException as exc:  # a setup mistake (ConfigError) or a bug: stop everyone, report it
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, name=f"bench-{i}", daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.2)  # short waits keep the main thread responsive to Ctrl-C
    if failures:
        raise failures[0]


def _worker(
    pending: queue.Queue[Job],
    factory: EpisodeFactory,
    on_result: OnResult,
    stop: threading.Event,
    max_infra_retries: int,
) -> None:
    env, harness, agent = factory.env(), factory.harness(), factory.agent.clone()
    try:
        while not stop.is_set():
            try:
                job = pending.get_nowait()
            except queue.Empty:
                return
            attempts = 0
            while True:
                attempts += 1
                episode = run_episode(env, harness, agent, task_id=job.task_id, seed=job.trial)
                if episode.metadata.status != "infra_error" or attempts > max_infra_retries or stop.is_set():
                    break
                env.close()  # whatever broke may live in this env's sandbox or services: start clean
                env = factory.env()
            if stop.is_set() and episode.metadata.status == "infra_error":
                return  # interrupted mid-retry: leave it for the resume rather than record a fault
            on_result(job, episode, attempts)
    finally:
        env.close()
