"""Desktop-v0 latency and density (a benchmark, not a test): reset and step p50/p99 with the next desktop
started ahead (prewarm, the default) against a fresh sandbox + Xvfb + openbox + apps at every reset, in the
same run; then how many episodes run at once on this machine's cores and the memory each one holds.

    .venv/bin/python benchmarks/desktop_latency.py [--episodes 12] [--concurrency 1,2,4]

Writes benchmarks/results/desktop.json; docs/desktop.md quotes the table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, percentiles, write_results

TASKS = ["text_replace-00", "sheet_compute-00", "terminal_output-00", "files_rename-00", "multi_app-00"]


def _memory(env) -> int:
    """Bytes the episode's sandbox cgroup holds (apps and its X server, which runs in that cgroup)."""
    for folder in env.session.sandbox.cgroups.dirs:
        for name in ("memory.current", "memory.usage_in_bytes"):  # cgroup v2, v1
            current = Path(folder) / name
            if current.exists():
                return int(current.read_text())
    return 0


def run_episodes(prewarm: bool, episodes: int) -> dict:
    """Oracle episodes round the task list; reset, per-tool step and grading times, memory."""
    from orchard_envs.agents.desktop_oracle import plan
    from orchard_envs.envs.desktop import DesktopEnv

    env = DesktopEnv(prewarm=prewarm)  # step times include the default 0.3 s settle
    resets, steps, grades, memory, rewards = [], {}, [], [], []
    try:
        for index in range(episodes):
            time.sleep(1.0)  # an agent turn between episodes: time for prewarm to start the next desktop
            started = time.perf_counter()
            _, info = env.reset(options={"task_id": TASKS[index % len(TASKS)]})
            resets.append(time.perf_counter() - started)
            names = [tool["function"]["name"] for tool in info["tools"]]
            for action in plan(env.task, names):
                if action["name"] in ("done", "fail"):
                    memory.append(_memory(env))
                started = time.perf_counter()
                _, reward, terminated, _, info = env.step(action)
                spent = time.perf_counter() - started
                if terminated:
                    grades.append(spent)
                    rewards.append(reward)
                elif action["name"] != "wait":
                    steps.setdefault(action["name"], []).append(spent)
    finally:
        env.close()
    return {
        "reset": percentiles(resets),
        "steps": {name: percentiles(samples) for name, samples in steps.items()},
        "grade": percentiles(grades),
        "memory_mib_mean": sum(memory) / max(1, len(memory)) / 2**20,
        "mean_reward": sum(rewards) / max(1, len(rewards)),
    }


def _worker(episodes: int) -> dict:
    return run_episodes(True, episodes)


def density(concurrency: int, episodes: int) -> dict:
    """`concurrency` envs in their own processes, `episodes` each: wall time, throughput, memory."""
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(concurrency) as pool:
        results = pool.map(_worker, [episodes] * concurrency)
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "episodes": concurrency * episodes,
        "wall_s": wall,
        "episodes_per_min": concurrency * episodes / wall * 60,
        "reset_p50_ms": sorted(r["reset"]["p50_ms"] for r in results)[len(results) // 2],
        "memory_mib_per_episode": sum(r["memory_mib_mean"] for r in results) / len(results),
        "mean_reward": sum(r["mean_reward"] for r in results) / len(results),
    }


def main() -> None:
    """Run both reset modes, then the density sweep; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--concurrency", default="1,2,4")
    args = parser.parse_args()
    results = {
        "machine": machine(),
        "tasks": TASKS,
        "loadavg_before": Path("/proc/loadavg").read_text().split()[:3],
    }
    results["prewarm"] = run_episodes(True, args.episodes)
    results["fresh"] = run_episodes(False, args.episodes)
    results["density"] = [density(int(n), 4) for n in args.concurrency.split(",")]
    print(write_results("desktop", results))
    for mode in ("prewarm", "fresh"):
        print(mode, {k: round(v, 1) for k, v in results[mode]["reset"].items()})
    for row in results["density"]:
        print(row)


if __name__ == "__main__":
    main()
