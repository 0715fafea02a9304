"""`--executor ray`: the episodes run in Ray actors, anywhere on a cluster; the driver records them.

Each of the `-j` actors builds its own env, harness and agent from the factory's names and options (a
loaded model or a live env never crosses the wire) and runs one job at a time with the same infra-retry
loop as the local threads. Episodes come back as rows and the driver commits each to the one SQLite store
as it arrives: the store is what makes a run exactly-once, so a killed driver resumes on either executor.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from collections import deque
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from orchard_envs.episodes import Episode
from orchard_envs.errors import ConfigError, OrchardError
from orchard_envs.leaderboard.executor import EpisodeFactory, EpisodeWorker, Job, OnResult

ACTOR_CPUS = 0.5  # an episode mostly waits on sandboxes, services or a model server: two per core
CONNECT_TIMEOUT_S = 5.0  # ray.init itself waits minutes on an address where nothing answers
CLOSE_TIMEOUT_S = 30.0
POLL_S = 0.2  # short waits keep the driver responsive to Ctrl-C
# Ray sends its token to an explicit address only when told to (and a `ray start` cluster may require one)
AUTH_HINT = " (a cluster with token authentication also needs RAY_AUTH_MODE=token and its token)"
DEFAULT_PORTS = {"ray": 10001, "": 6379}  # Ray Client (ray://) and the GCS of `ray start --head`


def require_ray() -> ModuleType:
    """Ray, or the one-line fix when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'orchard-envs[ray]'") from None
    return ray


def check_address(address: str | None) -> None:
    """Fail fast, before a run is created, when Ray is missing or nothing answers at `address`."""
    require_ray()
    if not address or address in ("auto", "local"):
        return  # start a local Ray, or the one `ray start` left on this machine: ray.init checks it
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one (`ray start --head`) "
            "or fix --ray-address / RAY_ADDRESS"
        ) from None


class EpisodeActor:
    """Lives in a Ray worker process: one env, harness and agent of its own, built there."""

    def __init__(self, factory: EpisodeFactory, max_infra_retries: int) -> None:
        self.factory = factory
        self.max_infra_retries = max_infra_retries
        self.worker: EpisodeWorker | None = None

    def start(self) -> bool:
        """Build the env, harness and agent; the driver hands out jobs only to actors that answered."""
        if self.worker is None:
            self.worker = EpisodeWorker(self.factory)
        return True

    def run(self, job: Job) -> tuple[Job, dict[str, Any], int]:
        """Run one job on this actor, retrying infrastructure faults; the episode comes back as a row."""
        self.start()  # again after Ray restarted this actor in a new process
        assert self.worker is not None
        result = self.worker.run(job, self.max_infra_retries)  # no stop here: the driver stops handing out
        assert result is not None
        episode, attempts = result
        return job, episode.to_row(), attempts

    def close(self) -> None:
        """Close the actor's worker, if it started one."""
        if self.worker is not None:
            self.worker.close()


def run_ray(
    jobs: list[Job],
    factory: EpisodeFactory,
    workers: int,
    on_result: OnResult,
    stop: threading.Event,
    max_infra_retries: int = 2,
    address: str | None = None,
) -> None:
    """Run every job on `workers` Ray actors unless `stop` is set; `on_result` is called in this thread.

    `address` is a running cluster (`host:port`, `ray://host:port`, `auto`); None starts a local Ray that
    ends with the run. After `stop`, the running episodes finish and are recorded; nothing new starts.
    """
    if not jobs:
        return
    ray = require_ray()
    check_address(address)
    connect(ray, address, workers)
    try:
        _drive(ray, jobs, factory.portable(), workers, on_result, stop, max_infra_retries)
    finally:
        ray.shutdown()


def connect(ray: ModuleType, address: str | None, workers: int) -> None:
    """Join the cluster at `address`, or start a local Ray with room for `workers` actors."""
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:  # enough CPUs for every actor, even with -j above the core count (episodes mostly wait)
            cpus = max(os.cpu_count() or 1, math.ceil(workers * ACTOR_CPUS))
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        where = address or "a local Ray"
        hint = "" if not address or os.environ.get("RAY_AUTH_MODE") else AUTH_HINT
        raise ConfigError(f"cannot start the Ray executor on {where}: {_first_line(exc)}{hint}") from None


def _drive(
    ray: ModuleType,
    jobs: list[Job],
    factory: EpisodeFactory,
    workers: int,
    on_result: OnResult,
    stop: threading.Event,
    max_infra_retries: int,
) -> None:
    # a worker process that dies (OOM, a lost node) is an infra fault too: Ray restarts it and reruns its job
    retries = max_infra_retries
    options = ray.remote(num_cpus=ACTOR_CPUS, max_restarts=retries, max_task_retries=retries)
    actors = [options(EpisodeActor).remote(factory, retries) for _ in range(min(workers, len(jobs)))]
    pending = deque(jobs)
    calls: dict[Any, tuple[Any, Job | None]] = {actor.start.remote(): (actor, None) for actor in actors}
    finished = False
    try:
        while True:
            running = sum(job is not None for _, job in calls.values())
            if not running and (stop.is_set() or not pending):
                break  # actors still starting (or waiting for room on the cluster) are not needed
            done, _ = ray.wait(list(calls), num_returns=1, timeout=POLL_S)
            for ref in done:
                actor, job = calls.pop(ref)
                result = result_of(ray, ref)
                if job is not None:
                    _, row, attempts = result
                    on_result(job, Episode.from_row(row), attempts)
                if pending and not stop.is_set():
                    following = pending.popleft()
                    calls[actor.run.remote(following)] = (actor, following)
        finished = True
    finally:
        if finished:  # idle actors close their envs (sandboxes, services); otherwise just end them
            starting = [actor for actor, _ in calls.values()]
            closing = [actor.close.remote() for actor in actors if actor not in starting]
            if closing:
                ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for actor in actors:
            ray.kill(actor)


def result_of(ray: ModuleType, ref: Any) -> Any:
    """A call's result; an Orchard error raised in an actor comes back as itself (one line for the user)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, OrchardError):
            raise exc.cause from None
        raise
    except ray.exceptions.RayActorError as exc:
        raise OrchardError(
            f"a Ray worker died ({_first_line(exc)}); what finished is recorded: run the same command "
            "to resume"
        ) from None


def _host_port(address: str) -> tuple[str, int]:
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ConfigError(f"--ray-address {address!r} is not host:port or ray://host:port")
    return parts.hostname, port


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
