"""SWE env benchmark: oracle episodes per backend, grading overhead, reset latency, parallel throughput.

    .venv/bin/python benchmarks/swe_env_bench.py [--backends local,docker,remote] [--limit N]

Writes benchmarks/results/swe.json and the "swe" section of docs/benchmarks.md. Timings compare within
one run on one machine; they are never pass/fail tests.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import gymnasium as gym
from common import env_service, machine, percentiles, write_doc_section, write_results

from orchard_envs.agents.swe_oracle import gold_patch_actions
from orchard_envs.sandbox import Backend, get_backend
from orchard_envs.tasks.swe.instance import SWEInstance, load_suite
from orchard_envs.tasks.swe.prepare import REPO_DIR, prepare, sandbox_spec


def oracle_episode(env: gym.Env, task: SWEInstance) -> tuple[float, float]:
    """(episode seconds, reward) for the gold patch replayed through the editor."""
    started = time.perf_counter()
    env.reset(options={"task_id": task.instance_id})
    reward = 0.0
    for action in gold_patch_actions(task.patch):
        _, reward, *_ = env.step(action)
    return time.perf_counter() - started, float(reward)


def bench_episodes(backend: Backend, suite: str, tasks: list[SWEInstance]) -> dict:
    with gym.make("orchard/SWE-v0", suite=suite, backend=backend) as env:
        runs = [oracle_episode(env, task) for task in tasks]
        resets = []
        for task in tasks[:50]:
            started = time.perf_counter()
            env.reset(options={"task_id": task.instance_id})
            resets.append(time.perf_counter() - started)
    seconds = [s for s, _ in runs]
    return {
        "episodes": len(runs),
        "resolved": sum(r for _, r in runs) / len(runs),
        "episode_s_mean": statistics.fmean(seconds),
        "episode_s_p50": statistics.median(seconds),
        "reset_from_prepared_tree": percentiles(resets),
    }


def bench_grading(backend: Backend, suite: str, tasks: list[SWEInstance]) -> dict:
    """The submit step (diff, filter, apply, tests with a report, verdict) vs a bare run of the same tests.

    The bare run is the instance's test command on the FAIL_TO_PASS + PASS_TO_PASS ids in a sandbox that
    is already open and already patched: the floor any grader pays.
    """
    bare, graded = [], []
    with gym.make("orchard/SWE-v0", suite=suite, backend=backend) as env:
        for task in tasks:
            with backend.create(sandbox_spec(prepare(task))) as sandbox:
                sandbox.apply_patch(task.patch, cwd=REPO_DIR)
                sandbox.write_file("/tmp/ids.txt", "\n".join([*task.FAIL_TO_PASS, *task.PASS_TO_PASS]) + "\n")
                started = time.perf_counter()
                sandbox.exec(f"cd {REPO_DIR} && {task.test_cmd} @/tmp/ids.txt", session=False)
                bare.append(time.perf_counter() - started)
            env.reset(options={"task_id": task.instance_id})
            *edits, submit = gold_patch_actions(task.patch)
            for action in edits:
                env.step(action)
            # A real agent thinks for seconds to minutes, time in which the env readies the grading
            # sandbox; the oracle edits in milliseconds, so wait for it to measure grading itself.
            env.unwrapped._grading_sandbox.result()
            started = time.perf_counter()
            _, reward, *_ = env.step(submit)
            graded.append(time.perf_counter() - started)
            assert reward == 1.0, task.instance_id
    return {
        "bare_tests_s_mean": statistics.fmean(bare),
        "grading_s_mean": statistics.fmean(graded),
        "overhead": statistics.fmean(graded) / statistics.fmean(bare) - 1,
        "n": len(tasks),
    }


def bench_parallel(backend: Backend, suite: str, tasks: list[SWEInstance], workers: int) -> dict:
    """Oracle episodes per minute with `workers` envs, each stepping its share of tasks in its own thread."""

    def run_share(share: list[SWEInstance]) -> int:
        with gym.make("orchard/SWE-v0", suite=suite, backend=backend) as env:
            return sum(oracle_episode(env, task)[1] == 1.0 for task in share)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        resolved = sum(pool.map(run_share, [tasks[i::workers] for i in range(workers)]))
    elapsed = time.perf_counter() - started
    return {
        "workers": workers,
        "episodes": len(tasks),
        "resolved": resolved,
        "seconds": elapsed,
        "episodes_per_min": 60 * len(tasks) / elapsed,
    }


def table(results: dict) -> str:
    rows = [
        "| backend | oracle resolved | episode mean s | reset p50 ms | reset p99 ms | grading s "
        "| bare tests s | grading overhead |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["backends"].items():
        e, g = r["episodes"], r["grading"]
        reset = e["reset_from_prepared_tree"]
        rows.append(
            f"| {name} | {e['resolved']:.0%} of {e['episodes']} | {e['episode_s_mean']:.2f} | "
            f"{reset['p50_ms']:.0f} | {reset['p99_ms']:.0f} | {g['grading_s_mean']:.2f} | "
            f"{g['bare_tests_s_mean']:.2f} | {g['overhead']:+.0%} |"
        )
    rows += ["", "| parallel envs (local) | episodes | seconds | episodes/min |", "|---|---|---|---|"]
    for p in results["parallel"]:
        rows.append(
            f"| {p['workers']} | {p['episodes']} | {p['seconds']:.1f} | {p['episodes_per_min']:.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local,docker,remote")
    parser.add_argument("--suite", default="swe-mini")
    parser.add_argument("--limit", type=int, default=0, help="first N instances only (0: all)")
    parser.add_argument("--grading-n", type=int, default=20, help="instances for the grading comparison")
    parser.add_argument("--parallel", default="1,2,4,8")
    args = parser.parse_args()
    tasks = load_suite(args.suite)[: args.limit or None]
    for task in tasks:  # build every prepared tree first: the benchmark measures reuse, not first builds
        prepare(task)
    results: dict = {"machine": machine(), "suite": args.suite, "instances": len(tasks), "backends": {}}
    with ExitStack() as stack:
        for name in args.backends.split(","):
            print(f"benchmarking {name} ...", file=sys.stderr)
            if name == "remote":
                backend = get_backend("remote", **stack.enter_context(env_service("local")))
                name = "remote (service over local)"
            else:
                backend = get_backend(name)
            results["backends"][name] = {
                "episodes": bench_episodes(backend, args.suite, tasks),
                "grading": bench_grading(backend, args.suite, tasks[: args.grading_n]),
            }
            backend.close()
        local = get_backend("local")
        results["parallel"] = [
            bench_parallel(local, args.suite, tasks, int(w)) for w in args.parallel.split(",")
        ]
    write_results("swe", results)
    text = table(results)
    print(text)
    write_doc_section(
        "swe",
        "## SWE env (`orchard/SWE-v0`)\n\nProduced by `benchmarks/swe_env_bench.py` on "
        f"{results['instances']} `{args.suite}` instances ({results['machine']['cpus']} cores). Episode: the "
        "oracle replays the gold patch through `str_replace_editor` and submits (reset, edits, grading). "
        "Reset: from a prepared tree (the sandbox's shell starts in the background). Grading (the first "
        f"{args.grading_n} instances): the submit step (diff, filter, git's reading of it, apply, the tests "
        "with the report stream, verdict) once the grading sandbox made during the episode is up, against "
        "a bare pytest run of the FAIL_TO_PASS + PASS_TO_PASS node ids in an open, patched sandbox "
        "(grading runs their whole files, so at least those tests). "
        "Raw numbers: `benchmarks/results/swe.json`.\n\n" + text,
    )


if __name__ == "__main__":
    main()
