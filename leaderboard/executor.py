"""Running (task, trial) jobs: `-j` worker threads, each with its own env, harness and agent clone.

Infrastructure faults (a sandbox died, a service went down) are retried on a fresh env up to a limit and
recorded apart from model failures; every finished job goes to `on_result` (the store commits it). A stop
event ends the run between episodes: what has not finished is not recorded and runs again on resume.
`EpisodeWorker` (one worker's env, harness, agent and that retry loop) is shared with the Ray executor.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym

from orchard_envs.agents import get_agent
from orchard_envs.agents.base import Agent
from orchard_envs.episodes import Episode
from orchard_envs.harnesses import get_harness
from orchard_envs.harnesses.base import Harness
from orchard_envs.runner import OnTurn, run_episode


@dataclass(frozen=True)
class Job:
    """One episode to run: a task and a trial number."""

    task_id: str
    trial: int
    category: str | None = None


@dataclass
class EpisodeFactory:
    """How a worker makes its own env, harness and agent (all three hold per-episode state).

    Names and options only, so it pickles to another process or machine (a Ray actor builds its own from
    it); `shared_agent`, when set, is an already-built agent that local workers clone instead, so a loaded
    model is loaded once per process. `portable()` drops it before the factory leaves the process.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    harness_name: str
    agent_name: str
    harness_options: dict[str, Any] = field(default_factory=dict)
    agent_options: dict[str, Any] = field(default_factory=dict)
    shared_agent: Agent | None = None

    def env(self) -> gym.Env:
        """A fresh env for one worker."""
        return gym.make(self.env_id, **self.env_kwargs)

    def harness(self) -> Harness:
        """A fresh harness for one worker."""
        return get_harness(self.harness_name, **self.harness_options)

    def agent(self) -> Agent:
        """An agent for one worker: a clone of the shared one (one model in memory), or a new one."""
        if self.shared_agent is not None:
            return self.shared_agent.clone()
        return get_agent(self.agent_name, **self.agent_options)

    def portable(self) -> EpisodeFactory:
        """This factory without the built agent: what crosses to another process (never a loaded model)."""
        return replace(self, shared_agent=None)


OnResult = Callable[[Job, Episode, int], None]  # job, episode, attempts


class EpisodeWorker:
    """One worker's env, harness and agent, and the infra-retry loop every executor runs a job with."""

    def __init__(self, factory: EpisodeFactory) -> None:
        self.factory = factory
        self.env = factory.env()
        try:
            self.harness = factory.harness()
            self.agent = factory.agent()
        except BaseException:
            self.env.close()
            raise

    def run(
        self,
        job: Job,
        max_infra_retries: int,
        stop: threading.Event | None = None,
        on_turn: OnTurn | None = None,
    ) -> tuple[Episode, int] | None:
        """The job's episode and the attempts it took; None when `stop` came mid-retry (left for resume).
        `on_turn` goes to `run_episode` (an RL trainer's turn forks)."""
        attempts = 0
        while True:
            attempts += 1
            episode = run_episode(
                self.env,
                self.harness,
                self.agent,
                task_id=job.task_id,
                seed=job.trial,
                trial=job.trial,
                on_turn=on_turn,
            )
            stopping = stop is not None and stop.is_set()
            if episode.metadata.status != "infra_error" or attempts > max_infra_retries or stopping:
                break
            self.env.close()  # whatever broke may live in this env's sandbox or services: start clean
            self.env = self.factory.env()
        if stopping and episode.metadata.status == "infra_error":
            return None  # interrupted mid-retry: leave it for the resume rather than record a fault
        return episode, attempts

    def close(self) -> None:
        """Close the worker's env and what it holds (sandboxes)."""
        self.env.close()


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
    worker = EpisodeWorker(factory)
    try:
        while not stop.is_set():
            try:
                job = pending.get_nowait()
            except queue.Empty:
                return
            result = worker.run(job, max_infra_retries, stop)
            if result is None:
                return
            on_result(job, *result)
    finally:
        worker.close()
