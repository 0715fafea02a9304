"""Web-v0 latency and density (a benchmark, not a test): reset and step p50/p99 with one browser kept open
and a fresh context per episode (the env's way) against a fresh Chromium per episode, in the same run; then
oracle episodes/min with 1, 2 and 4 envs in threads, and the memory each env's processes hold.

    .venv/bin/python benchmarks/web_latency.py [--episodes 12] [--envs 1,2,4]

Episodes are the web-mini oracle's (real clicks and typing in real Chromium), round a fixed task list.
Step times include the observation (settle, AX tree, screenshot). Targets: reset <= 300 ms, step <= 150 ms.
Writes benchmarks/results/web.json and the "web" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium as gym
from common import machine, percentiles, write_doc_section, write_results

from orchard_envs.agents.web_oracle import WebOracleAgent
from orchard_envs.envs.web import WebEnv
from orchard_envs.harnesses import get_harness
from orchard_envs.runner import run_episode
from orchard_envs.tasks.web.catalog import load_suite


class Timed(gym.Wrapper):
    """Times every reset and step; `fresh_browser` closes the browser before each reset (the baseline)."""

    def __init__(self, env: WebEnv, fresh_browser: bool = False) -> None:
        super().__init__(env)
        self.fresh_browser = fresh_browser
        self.resets: list[float] = []
        self.steps: list[float] = []
        self.tools: list[str] = []  # each step's tool, to tell which actions make the slow steps

    def reset(self, **kwargs):
        if self.fresh_browser:
            self.env.unwrapped._browser.close()
        started = time.perf_counter()
        out = self.env.reset(**kwargs)
        self.resets.append(time.perf_counter() - started)
        return out

    def step(self, action):
        started = time.perf_counter()
        out = self.env.step(action)
        self.steps.append(time.perf_counter() - started)
        self.tools.append(str(out[4].get("tool")))
        return out


def sample_tasks(count: int) -> list[str]:
    """One task per family, then round again: every site's pages in the sample."""
    tasks = load_suite("web-mini")
    families = list(dict.fromkeys(task.family for task in tasks))
    by_family = {family: [t.task_id for t in tasks if t.family == family] for family in families}
    picked = []
    for index in range(count):
        family = families[index % len(families)]
        picked.append(by_family[family][index // len(families) % len(by_family[family])])
    return picked


def run(env: Timed, task_ids: list[str]) -> list[float]:
    """The oracle on each task; the rewards."""
    harness = get_harness("tool-calling")
    return [run_episode(env, harness, WebOracleAgent(), task_id=t).metadata.reward for t in task_ids]


def latency(task_ids: list[str], fresh_browser: bool) -> dict:
    env = Timed(WebEnv(suite="web-mini", max_steps=80), fresh_browser)
    try:
        run(env, task_ids[:1])  # the site host and (kept) browser start outside the measurement
        env.resets.clear()
        env.steps.clear()
        env.tools.clear()
        rewards = run(env, task_ids)
    finally:
        env.close()
    by_tool: dict[str, list[float]] = {}
    for tool, seconds in zip(env.tools, env.steps, strict=True):
        by_tool.setdefault(tool, []).append(seconds)
    return {
        "reset": percentiles(env.resets),
        "step": percentiles(env.steps),
        "step_by_tool": {tool: percentiles(times) for tool, times in sorted(by_tool.items())},
        "mean_reward": sum(rewards) / len(rewards),
    }


def _descendants_pss() -> int:
    """Proportional set size (shared pages split between their processes) of this process's child
    processes: Chromium's, Playwright's driver, the site hosts."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def density(task_ids: list[str], envs: int) -> dict:
    """`envs` envs in threads (each its own browser: Playwright's sync API is one driver per thread)."""
    wrapped = []

    def worker(share: list[str]) -> list[float]:
        env = Timed(WebEnv(suite="web-mini", max_steps=80))
        wrapped.append(env)
        return run(env, share)

    started = time.perf_counter()
    with ThreadPoolExecutor(envs) as pool:
        futures = [pool.submit(worker, task_ids[i::envs]) for i in range(envs)]
        while not all(f.done() for f in futures):
            time.sleep(0.5)
        memory = _descendants_pss()  # measured at the end, every env still open
        rewards = [r for f in futures for r in f.result()]
    wall = time.perf_counter() - started
    for env in wrapped:
        env.close()
    return {
        "envs": envs,
        "episodes": len(rewards),
        "wall_s": wall,
        "episodes_per_min": 60 * len(rewards) / wall,
        "mean_reward": sum(rewards) / len(rewards),
        "memory_mib_per_env": memory / envs / 2**20,
    }


def main() -> None:
    """Both reset modes, then the density sweep; the JSON and the doc section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--envs", default="1,2,4")
    args = parser.parse_args()
    task_ids = sample_tasks(args.episodes)
    results = {"machine": machine(), "tasks": task_ids}
    results["shared browser, fresh context"] = latency(task_ids, fresh_browser=False)
    results["fresh browser per episode"] = latency(task_ids, fresh_browser=True)
    results["density"] = [density(task_ids, int(n)) for n in args.envs.split(",")]
    path = write_results("web", results)
    modes = ["shared browser, fresh context", "fresh browser per episode"]
    rows = [
        f"| {mode} | {results[mode]['reset']['p50_ms']:.0f} | {results[mode]['reset']['p99_ms']:.0f} | "
        f"{results[mode]['step']['p50_ms']:.0f} | {results[mode]['step']['p99_ms']:.0f} | "
        f"{results[mode]['mean_reward']:.2f} |"
        for mode in modes
    ]
    tools = results["shared browser, fresh context"]["step_by_tool"]
    by_tool = [
        f"| {tool} | {row['n']} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} |" for tool, row in tools.items()
    ]
    dense = [
        f"| {row['envs']} | {row['episodes']} | {row['episodes_per_min']:.1f} | "
        f"{row['memory_mib_per_env']:.0f} | {row['mean_reward']:.2f} |"
        for row in results["density"]
    ]
    write_doc_section(
        "web",
        "## Web-v0 latency\n\n"
        f"Produced by `benchmarks/web_latency.py` ({machine()['cpus']} cores, Debian's Chromium, headless). "
        f"Raw numbers: `benchmarks/results/web.json`. The web-mini oracle on {len(task_ids)} tasks (one per "
        "family, then round again); a step includes its observation (settle, AX tree, screenshot). "
        "Targets: reset <= 300 ms, step <= 150 ms.\n\n"
        "| reset mode | reset p50 ms | reset p99 ms | step p50 ms | step p99 ms | oracle reward |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        "A kept browser's reset makes the next episode's context (~20 ms) once its observation is out, and "
        "Chromium opens that context's tab (~110 ms of its CPU) while the episode runs: an agent that thinks "
        "hides it, the oracle (which does not) pays for it in its first steps. Steps by tool, kept browser "
        "(a `wait` is the oracle's own 300 ms pause; clicks that load a page are the slow ones):\n\n"
        "| tool | steps | p50 ms | p99 ms |\n|---|---|---|---|\n" + "\n".join(by_tool) + "\n\n"
        "Oracle episodes at once (envs in threads, each its own browser); memory is the proportional set "
        "size of the envs' processes (Chromium, Playwright's driver, site hosts) at the end, per env:\n\n"
        "| envs | episodes | episodes/min | MiB per env | oracle reward |\n|---|---|---|---|---|\n"
        + "\n".join(dense),
    )
    print(path)


if __name__ == "__main__":
    main()
