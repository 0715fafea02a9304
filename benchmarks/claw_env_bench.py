"""Claw env benchmark: oracle steps/s and episodes/min (1 and 8 parallel envs), reset latency.

    .venv/bin/python benchmarks/claw_env_bench.py [--limit N] [--parallel 1,8]

Reset is measured two ways in the same run: Orchard's (services stay up; the fixtures load through each
service's `/_reset`) against the baseline of starting a fresh service host per episode. Writes
benchmarks/results/claw.json and the "claw" section of docs/benchmarks.md. Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
from common import machine, percentiles, write_doc_section, write_results

from orchard_envs.tasks.claw.host import ServiceHost
from orchard_envs.tasks.claw.task import ClawTask, load_suite


def oracle_episode(env: gym.Env, task: ClawTask) -> tuple[int, float, bool]:
    """(steps, reset seconds, passed) for the task's oracle plan sent straight to the env."""
    started = time.perf_counter()
    env.reset(options={"task_id": task.task_id})
    reset = time.perf_counter() - started
    info: dict = {}
    for action in task.oracle:
        *_, info = env.step(action.model_dump())
    return len(task.oracle), reset, bool(info.get("grading", {}).get("resolved"))


def run_episodes(tasks: list[ClawTask], workers: int, repeat: int) -> dict:
    """`workers` envs in threads, each running its share of `repeat` passes over the tasks."""
    jobs = [task for _ in range(repeat) for task in tasks]
    shares = [jobs[i::workers] for i in range(workers)]
    envs = [gym.make("orchard/Claw-v0", task_ids=[t.task_id for t in tasks]) for _ in range(workers)]
    for env in envs:  # the service hosts start here, outside the timed part
        env.reset(options={"task_id": tasks[0].task_id})
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        work = zip(envs, shares, strict=True)
        outcomes = list(pool.map(lambda pair: [oracle_episode(pair[0], t) for t in pair[1]], work))
    elapsed = time.perf_counter() - started
    for env in envs:
        env.close()
    flat = [o for share in outcomes for o in share]
    return {
        "workers": workers,
        "episodes": len(flat),
        "passed": sum(o[2] for o in flat) / len(flat),
        "seconds": elapsed,
        "episodes_per_min": 60 * len(flat) / elapsed,
        "steps_per_s": sum(o[0] for o in flat) / elapsed,
        "reset": percentiles([o[1] for o in flat]),
    }


def fresh_host_resets(tasks: list[ClawTask], n: int) -> dict:
    """Baseline: a new service host (process + servers) per episode, then the same fixture load."""
    samples = []
    for task in tasks[:n]:
        started = time.perf_counter()
        with ServiceHost().start() as host:
            host.reset(task.fixtures, task.faults)
            samples.append(time.perf_counter() - started)
    return percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="claw-mini")
    parser.add_argument("--limit", type=int, default=0, help="first N tasks only (0: all)")
    parser.add_argument("--parallel", default="1,8")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--fresh", type=int, default=10, help="episodes for the fresh-host baseline")
    args = parser.parse_args()
    tasks = load_suite(args.suite)[: args.limit or None]
    results = {
        "machine": machine(),
        "suite": args.suite,
        "tasks": len(tasks),
        "parallel": [run_episodes(tasks, int(w), args.repeat) for w in args.parallel.split(",")],
        "fresh_host_reset": fresh_host_resets(tasks, args.fresh),
    }
    write_results("claw", results)
    rows = [
        "| parallel envs | episodes | oracle passed | episodes/min | env steps/s | reset p50 ms "
        "| reset p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in results["parallel"]:
        rows.append(
            f"| {p['workers']} | {p['episodes']} | {p['passed']:.0%} | {p['episodes_per_min']:.0f} | "
            f"{p['steps_per_s']:.0f} | {p['reset']['p50_ms']:.1f} | {p['reset']['p99_ms']:.1f} |"
        )
    fresh = results["fresh_host_reset"]
    text = "\n".join(rows)
    print(text)
    write_doc_section(
        "claw",
        "## Claw env (`orchard/Claw-v0`)\n\nProduced by `benchmarks/claw_env_bench.py` on "
        f"{len(tasks)} `{args.suite}` tasks x {args.repeat} ({machine()['cpus']} cores). Episode: the "
        "task's oracle plan sent straight to the env (reset, each tool call over HTTP, grading). Reset "
        "(target <= 100 ms): services stay up and the fixtures load through each service's `/_reset`. "
        f"Baseline, same run: a fresh service host per episode, p50 {fresh['p50_ms']:.0f} ms, p99 "
        f"{fresh['p99_ms']:.0f} ms. Raw numbers: `benchmarks/results/claw.json`.\n\n" + text,
    )


if __name__ == "__main__":
    main()
