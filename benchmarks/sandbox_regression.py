"""Sandbox latency of this checkout against a baseline checkout, side by side in one run.

    .venv/bin/python benchmarks/sandbox_regression.py --baseline-python /tmp/bvenv/bin/python \
        [--backends local,docker] [--rounds 3] [-n 300]

The baseline is any other install of orchard-envs (e.g. a venv with `pip install -e <worktree of
main>`). Both sides run the very same measurement code (`sandbox_bench.bench_backend`, from this
checkout) in fresh processes; only the library under it differs. Rounds alternate which side goes
first, so a drift in machine load hits both; the table reports the median over rounds of each p50.
Writes benchmarks/results/sandbox_regression.json and its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import machine, write_doc_section, write_results

HERE = Path(__file__).resolve().parent
SIDES = ("baseline", "current")


def worker(backend_name: str, n: int, fork_mb: int) -> None:
    """Measure one backend with whatever orchard_envs this interpreter imports; JSON on stdout."""
    from sandbox_bench import bench_backend

    import orchard_envs
    from orchard_envs.sandbox import get_backend

    results = bench_backend(get_backend(backend_name), n, fork_mb)
    print(json.dumps({"library": str(Path(orchard_envs.__file__).parent), "results": results}))


def run_side(python: str, backend: str, n: int, fork_mb: int) -> dict:
    argv = [python, str(Path(__file__)), "--worker", backend, "-n", str(n), "--fork-mb", str(fork_mb)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=HERE, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{python} failed on {backend}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def headline(measurement: dict) -> tuple[str, float]:
    """The number a row shows: a latency's p50, or a throughput."""
    if "p50_ms" in measurement:
        return "p50 ms", measurement["p50_ms"]
    return "execs/s", measurement["execs_per_s"]


def compare(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Median over rounds of each measurement's headline number, per side, and current/baseline."""
    out: dict[str, dict] = {}
    for name, first in rounds[0]["current"].items():
        unit = headline(first)[0]
        sides = {side: statistics.median(headline(r[side][name])[1] for r in rounds) for side in SIDES}
        out[name] = {"unit": unit, **sides, "ratio": sides["current"] / sides["baseline"]}
    return out


def table(summary: dict[str, dict[str, dict[str, float]]], rounds: int) -> str:
    lines = [
        "## Sandbox latency against the baseline (`benchmarks/sandbox_regression.py`)",
        "",
        f"Median over {rounds} alternating rounds of each p50 (or throughput), both sides measured by the "
        "same code in one run; ratio = this checkout / baseline. "
        "Raw numbers: `benchmarks/results/sandbox_regression.json`.",
        "",
        "| backend | measurement | unit | baseline | this checkout | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for backend, rows in summary.items():
        for name, row in rows.items():
            lines.append(
                f"| {backend} | {name} | {row['unit']} | {row['baseline']:.3f} | {row['current']:.3f} "
                f"| {row['ratio']:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-python", help="interpreter of the baseline install")
    parser.add_argument("--backends", default="local,docker")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=300, help="samples per latency measurement")
    parser.add_argument("--fork-mb", type=int, default=50)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.n, args.fork_mb)
    if not args.baseline_python:
        parser.error("--baseline-python is required (the interpreter of the baseline install)")
    sides = {"baseline": args.baseline_python, "current": sys.executable}
    summary, raw = {}, {}
    for backend in args.backends.split(","):
        rounds = []
        for index in range(args.rounds):
            order = ["baseline", "current"] if index % 2 == 0 else ["current", "baseline"]
            measured = {side: run_side(sides[side], backend, args.n, args.fork_mb) for side in order}
            rounds.append({side: measured[side]["results"] for side in sides})
            raw.setdefault(backend, {}).setdefault("libraries", {s: measured[s]["library"] for s in sides})
        raw[backend]["rounds"] = rounds
        summary[backend] = compare(rounds)
    write_results("sandbox_regression", {"machine": machine(), "summary": summary, "raw": raw})
    markdown = table(summary, args.rounds)
    write_doc_section("sandbox-regression", markdown)
    print(markdown)


if __name__ == "__main__":
    main()
