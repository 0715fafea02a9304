"""orchard-bench orchestration overhead against a bare loop over the same env, and scaling with -j.

    .venv/bin/python benchmarks/bench_overhead.py [--suite claw-mini] [--split test] [-k 2]

The bare loop is `run_episode` over every (task, trial) on one env, nothing recorded. orchard-bench runs
the same jobs through its executor and commits every episode to the results store (SQLite, one
transaction each, WAL), as `orchard-bench run` does. Target overhead: <= 5%. With Ray installed, the
same jobs also run with `--executor ray` against a one-node Ray head started here (`ray start --head`),
timed like `orchard-bench run --ray-address`: connecting, starting the actors and their envs included.
Writes benchmarks/results/bench.json and the "bench" section of docs/benchmarks.md. Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
from common import machine, write_doc_section, write_results

from orchard_envs.agents import get_agent
from orchard_envs.harnesses import get_harness
from orchard_envs.leaderboard.executor import EpisodeFactory, Job, OnResult, run_local
from orchard_envs.leaderboard.ray_executor import run_ray
from orchard_envs.leaderboard.ray_head import loopback_head
from orchard_envs.leaderboard.store import ResultsStore
from orchard_envs.leaderboard.suites import load
from orchard_envs.runner import run_episode


def bare_loop(env_id: str, env_kwargs: dict, jobs: list[Job]) -> float:
    harness, agent = get_harness("tool-calling"), get_agent("oracle")
    started = time.perf_counter()  # env start-up counts on both sides: each starts its env's services
    with gym.make(env_id, **env_kwargs) as env:
        for job in jobs:
            run_episode(env, harness, agent, task_id=job.task_id, seed=job.trial, trial=job.trial)
        return time.perf_counter() - started


Executor = Callable[[list[Job], EpisodeFactory, int, OnResult, threading.Event], None]


def bench_run(
    env_id: str, env_kwargs: dict, jobs: list[Job], workers: int, executor: Executor = run_local
) -> float:
    factory = EpisodeFactory(env_id, env_kwargs, "tool-calling", "oracle", shared_agent=get_agent("oracle"))
    with tempfile.TemporaryDirectory() as folder:
        store = ResultsStore.create_or_resume(Path(folder) / "run", {"suite": "bench", "k": 1})
        started = time.perf_counter()
        executor(
            jobs,
            factory,
            workers,
            lambda job, episode, attempts: store.record(
                job.task_id, job.trial, episode, attempts=attempts, category=job.category
            ),
            threading.Event(),
        )
        elapsed = time.perf_counter() - started
        assert len(store.done()) == len(jobs)
        store.close()
    return elapsed


def ray_scaling(env_id: str, env_kwargs: dict, jobs: list[Job], workers: list[int]) -> dict[int, float]:
    if importlib.util.find_spec("ray") is None:
        return {}
    # a token of its own: the head requires it and this process's driver sends it
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=os.urandom(32).hex())
    with loopback_head(num_cpus=os.cpu_count() or 1) as address:
        on_ray = functools.partial(run_ray, address=address)
        return {w: bench_run(env_id, env_kwargs, jobs, w, on_ray) for w in workers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="claw-mini")
    parser.add_argument("--split", default="test")
    parser.add_argument("-k", type=int, default=2)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--ray-workers", default="1,2,4", help="-j values for --executor ray ('' skips)")
    args = parser.parse_args()
    suite = load(args.suite, args.split)
    jobs = [Job(t.task_id, trial, t.category) for t in suite.tasks for trial in range(args.k)]
    kwargs = suite.env_kwargs(args.split, None)
    bare = min(bare_loop(suite.env_id, kwargs, jobs) for _ in range(2))
    one = min(bench_run(suite.env_id, kwargs, jobs, 1) for _ in range(2))
    scaling = {int(w): bench_run(suite.env_id, kwargs, jobs, int(w)) for w in args.workers.split(",")}
    ray_workers = [int(w) for w in args.ray_workers.split(",") if w]
    on_ray = ray_scaling(suite.env_id, kwargs, jobs, ray_workers)
    results = {
        "machine": machine(),
        "suite": args.suite,
        "episodes": len(jobs),
        "bare_loop_s": bare,
        "bench_j1_s": one,
        "overhead": one / bare - 1,
        "scaling_s": scaling,
        "ray_scaling_s": on_ray,
    }
    write_results("bench", results)
    rows = ["| -j | seconds | episodes/min | ray: seconds | ray: episodes/min |", "|---|---|---|---|---|"]
    for w in sorted(scaling.keys() | on_ray.keys()):
        times = (scaling.get(w), on_ray.get(w))
        cells = [f"{t:.2f} | {60 * len(jobs) / t:.0f}" if t else "- | -" for t in times]
        rows.append(f"| {w} | {' | '.join(cells)} |")
    text = "\n".join(rows)
    print(f"bare {bare:.2f} s, bench -j1 {one:.2f} s, overhead {results['overhead']:+.1%}\n{text}")
    write_doc_section(
        "bench",
        "## orchard-bench orchestration (`benchmarks/bench_overhead.py`)\n\n"
        f"{len(jobs)} oracle episodes of `{args.suite}` ({args.split}, k={args.k}), "
        f"{machine()['cpus']} cores, env start-up included on both sides. "
        f"Bare loop (`run_episode` on one env, nothing recorded): {bare:.2f} s; orchard-bench executor with "
        f"-j 1 committing every episode to SQLite: {one:.2f} s, overhead {results['overhead']:+.1%} (target "
        "<= 5%; best of two runs each). Scaling with -j (one env per worker; Claw oracle episodes are "
        "CPU-bound, so 2 cores cap it); the ray columns run the same jobs with `--executor ray` on a "
        "one-node Ray head on this machine, connecting and starting the actors (each with its env) "
        "included:\n\n" + text,
    )


if __name__ == "__main__":
    main()
