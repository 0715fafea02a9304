"""Rollout throughput: Claw episodes/s with the `hf` agent at -j 1, 4, 8, batching engine vs locked calls.

    .venv/bin/python benchmarks/rollout_throughput.py [--episodes 8] [--jobs 1,4,8] [--turns 2] [--tokens 64]

Every side is the same `HFGenerator` checkpoint (the embedded SmolLM2-135M-Instruct on CPU): `locked` is
`batching=False`, the generation path before the rollout engine (one `model.generate` per call, calls
taking turns); `batching` is the rollout engine (`agents/rollout/batching.py`: a turn joins the running
batch at its next decode step) without its prefix cache; `batching + prefix cache` is the default, which
also prefills only the new tokens of a turn that extends a finished one (`rollout/prefix_cache.py`; the
cache is emptied at the start of each cell, so no cell reuses another's episodes). Each cell runs the
same episodes (the first `--episodes` tasks of the `claw-mini` test split, greedy, `--turns` replies of at
most `--tokens` tokens) on `-j` envs in threads; cells alternate between the sides. Target:
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
    if generator.engine is not None and generator.engine.prefix is not None:
        generator.engine.prefix.clear()

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
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    task_ids = [task.task_id for task in load_suite("claw-mini", "test")][: args.episodes]
    sides = {
        "locked": HFGenerator(device="cpu", batching=False),
        "batching": HFGenerator(device="cpu", prefix_cache_mib=0),
        "batching + prefix cache": HFGenerator(device="cpu"),
    }
    cells: dict[str, list[dict]] = {name: [] for name in sides}
    for jobs in [int(j) for j in args.jobs.split(",")]:
        for name, generator in sides.items():
            cells[name].append(run_cell(generator, task_ids, jobs, args.turns, args.tokens))
            print(name, cells[name][-1], flush=True)
    speedup = {
        name: {
            str(c["jobs"]): c["episodes_per_s"] / lk["episodes_per_s"]
            for c, lk in zip(cells[name], cells["locked"], strict=True)
        }
        for name in sides
        if name != "locked"
    }
    settings = {"episodes": len(task_ids), "max_turns": args.turns, "max_new_tokens": args.tokens}
    path = write_results(
        "rollout",
        {"machine": machine(), "model": sides["batching"].name, "settings": settings, "cells": cells,
         "speedup": speedup},
    )  # fmt: skip
    rows = []
    for index, jobs in enumerate(c["jobs"] for c in cells["locked"]):
        per_side = [cells[name][index] for name in sides]
        rates = " | ".join(f"{c['episodes_per_s']:.3f}" for c in per_side)
        gains = " | ".join(f"{speedup[name][str(jobs)]:.2f}x" for name in speedup)
        rows.append(f"| {jobs} | {rates} | {gains} |")
    names = list(sides)
    header = [f"{n} episodes/s" for n in names] + [f"{n} speedup" for n in speedup]
    write_doc_section(
        "rollout",
        "## Rollout throughput (CPU)\n\n"
        f"Produced by `benchmarks/rollout_throughput.py` ({machine()['cpus']} cores, "
        f"`{sides['batching'].name}` on CPU). Raw numbers: `benchmarks/results/rollout.json`. "
        f"{len(task_ids)} `claw-mini` test episodes per cell (greedy, at most {args.turns} replies of "
        f"{args.tokens} tokens, `tool-calling` harness), on -j envs in threads, every side in the same run, "
        "cells alternating. `locked`: `HFGenerator(batching=False)` (one `model.generate` per call, calls "
        "taking turns); `batching`: the rollout engine without its prefix cache; `batching + prefix cache`: "
        "the default (a turn that extends a finished one prefills only its new tokens; emptied per cell). "
        "Target: >= 3x the locked episodes/s at -j 8.\n\n"
        f"| -j | {' | '.join(header)} |\n|{'---|' * (1 + len(header))}\n" + "\n".join(rows),
    )
    print(path)


if __name__ == "__main__":
    main()
