"""Rollout throughput: Claw episodes/s with the `hf` agent at -j 1, 4, 8, batching engine vs locked calls.

    .venv/bin/python benchmarks/rollout_throughput.py [--episodes 8] [--jobs 1,4,8] [--turns 3]

Both sides are the same `HFGenerator` checkpoint (the embedded SmolLM2-135M-Instruct on CPU): `batching`
is the rollout engine every agent shares (`agents/rollout/batching.py`: a turn joins the running batch at
its next decode step); `locked` is `batching=False`, the generation path before it (one `model.generate`
per call, calls taking turns). Each cell runs the same episodes (the first `--episodes` tasks of the
`claw-mini` test split, greedy, `--turns` replies of at most `--tokens` tokens) on `-j` envs in threads, so
episode length is fixed by the model's greedy replies; cells alternate between the two sides. Target:
>= 3x the locked episodes/s at -j 8. Writes benchmarks/results/rollout.json and the "rollout" section of
docs/benchmarks.md. Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import queue
import time
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
from common import machine, write_doc_section, write_results

from orchard_envs.agents.hf import HFAgent
from orchard_envs.agents.hf_backend import HFGenerator
from orchard_envs.harnesses import get_harness
from orchard_envs.runner import run_episode
from orchard_envs.tasks.claw.task import load_suite


def run_cell(generator: HFGenerator, task_ids: list[str], jobs: int, turns: int, tokens: int) -> dict:
    """`jobs` envs in threads share the episodes; episodes/s and generated tokens/s over the wall time."""
    envs: queue.Queue = queue.Queue()
    for _ in range(jobs):
        env = gym.make("orchard/Claw-v0", split="test")
        env.reset(options={"task_id": task_ids[0]})  # the service host starts outside the timed part
        envs.put(env)
    agent = HFAgent(generator=generator, max_new_tokens=tokens)

    def one(task_id: str) -> tuple[int, int]:
        env = envs.get()
        try:
            harness = get_harness("tool-calling", max_turns=turns)
            episode = run_episode(env, harness, agent.clone(), task_id=task_id, seed=0)
        finally:
            envs.put(env)
        return len(episode.turns), sum(len(turn.token_ids) for turn in episode.turns)

    started = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        done = list(pool.map(one, task_ids))
    elapsed = time.perf_counter() - started
    while not envs.empty():
        envs.get().close()
    return {
        "jobs": jobs,
        "episodes": len(done),
        "turns": sum(d[0] for d in done),
        "generated_tokens": sum(d[1] for d in done),
        "seconds": elapsed,
        "episodes_per_s": len(done) / elapsed,
        "tokens_per_s": sum(d[1] for d in done) / elapsed,
    }


def main() -> None:
    """Measure every cell, write the JSON and the doc section."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--jobs", default="1,4,8")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    task_ids = [task.task_id for task in load_suite("claw-mini", "test")][: args.episodes]
    sides = {"batching": HFGenerator(device="cpu"), "locked": HFGenerator(device="cpu", batching=False)}
    cells: dict[str, list[dict]] = {name: [] for name in sides}
    for jobs in [int(j) for j in args.jobs.split(",")]:
        for name, generator in sides.items():
            cells[name].append(run_cell(generator, task_ids, jobs, args.turns, args.tokens))
            print(name, cells[name][-1], flush=True)
    speedup = {
        str(b["jobs"]): b["episodes_per_s"] / lk["episodes_per_s"]
        for b, lk in zip(cells["batching"], cells["locked"], strict=True)
    }
    settings = {"episodes": len(task_ids), "max_turns": args.turns, "max_new_tokens": args.tokens}
    path = write_results(
        "rollout",
        {"machine": machine(), "model": sides["batching"].name, "settings": settings, "cells": cells,
         "speedup": speedup},
    )  # fmt: skip
    rows = [
        f"| {b['jobs']} | {lk['episodes_per_s']:.3f} | {b['episodes_per_s']:.3f} | "
        f"{speedup[str(b['jobs'])]:.2f}x | {lk['tokens_per_s']:.1f} | {b['tokens_per_s']:.1f} |"
        for b, lk in zip(cells["batching"], cells["locked"], strict=True)
    ]
    write_doc_section(
        "rollout",
        "## Rollout throughput (CPU)\n\n"
        f"Produced by `benchmarks/rollout_throughput.py` ({machine()['cpus']} cores, "
        f"`{sides['batching'].name}` on CPU). Raw numbers: `benchmarks/results/rollout.json`. "
        f"{len(task_ids)} `claw-mini` test episodes per cell (greedy, at most {args.turns} replies of "
        f"{args.tokens} tokens, `tool-calling` harness), on -j envs in threads; `locked` is "
        "`HFGenerator(batching=False)` (one `model.generate` per call, calls taking turns), `batching` the "
        "rollout engine; both in the same run, cells alternating. Target: >= 3x at -j 8.\n\n"
        "| -j | locked episodes/s | batching episodes/s | speedup | locked tokens/s | batching tokens/s |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows),
    )
    print(path)


if __name__ == "__main__":
    main()
