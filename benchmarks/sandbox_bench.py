"""Sandbox layer benchmark: latency, throughput and density per backend, beside plain baselines.

    .venv/bin/python benchmarks/sandbox_bench.py [--backends local,docker,remote] [--density 500]

Writes benchmarks/results/sandbox.json and prints (and writes docs/benchmarks.md) a Markdown table.
Timings are for comparison within one run on one machine; they are never pass/fail tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import env_service, machine, percentiles, write_doc_section, write_results

from orchard_envs.sandbox import Backend, SandboxPool, SandboxSpec, get_backend


def timed(fn: Callable[[], object], n: int, warmup: int = 3) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return percentiles(samples)


def used_memory_mib() -> float:
    lines = Path("/proc/meminfo").read_text().splitlines()
    info = {line.split(":")[0]: int(line.split()[1]) for line in lines}
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def bench_baselines(n: int) -> dict[str, dict]:
    out = {"subprocess.run(true)": timed(lambda: subprocess.run(["true"]), n)}
    bwrap = [
        "bwrap",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--unshare-all",
        "/bin/true",
    ]
    out["bwrap one-shot true"] = timed(lambda: subprocess.run(bwrap), n)
    try:
        import docker

        client = docker.from_env()
        container = client.containers.run("orchard-base:bookworm", "sleep 600", detach=True, remove=True)
        try:
            argv = ["docker", "exec", container.id, "true"]
            out["docker exec true (CLI)"] = timed(lambda: subprocess.run(argv), max(10, n // 10))
        finally:
            container.kill()
    except Exception as exc:  # docker missing: the table says so
        out["docker exec true (CLI)"] = {"error": str(exc)}
    return out


def bench_backend(backend: Backend, n: int, fork_mb: int) -> dict[str, dict]:
    spec = SandboxSpec()
    out: dict[str, dict] = {}

    def create_close() -> None:
        backend.create(spec).close()

    out["create+close"] = timed(create_close, max(5, n // 20), warmup=1)
    sandbox = backend.create(spec)
    try:
        sandbox.warm()
        out["session exec true"] = timed(lambda: sandbox.exec("true"), n)
        out["one-shot exec true"] = timed(lambda: sandbox.exec("true", session=False), max(10, n // 10))
        payload = bytes(4096)
        out["write_file 4 KiB"] = timed(lambda: sandbox.write_file("probe.bin", payload), max(20, n // 5))
        out["read_file 4 KiB"] = timed(lambda: sandbox.read_file("probe.bin"), max(20, n // 5))
        sandbox.exec(
            f"head -c {fork_mb << 20} /dev/urandom > blob && mkdir -p src && seq 1 2000 | "
            "xargs -I{} sh -c 'echo {} > src/f{}'",
            timeout=300,
        )
        forks = []

        def fork() -> None:
            forks.append(sandbox.fork())

        out[f"fork ({fork_mb} MB work tree)"] = timed(fork, 5, warmup=1)
        for child in forks:
            child.close()
    finally:
        sandbox.close()
    with SandboxPool(backend, spec, size=8) as pool:
        pool.wait_full(timeout=120)
        acquired = []
        out["pool acquire"] = timed(lambda: acquired.append(pool.acquire()), 8, warmup=0)
        for s in acquired:
            s.close()
    out["32 sandboxes x 100 execs"] = concurrent_throughput(backend, spec, 32, 100)
    return out


def concurrent_throughput(backend: Backend, spec: SandboxSpec, sandboxes: int, execs: int) -> dict:
    boxes = [backend.create(spec) for _ in range(sandboxes)]
    try:
        for box in boxes:
            box.warm()

        def work(box) -> None:
            for _ in range(execs):
                box.exec("true")

        start = time.perf_counter()
        with ThreadPoolExecutor(sandboxes) as pool:
            list(pool.map(work, boxes))
        elapsed = time.perf_counter() - start
    finally:
        for box in boxes:
            box.close()
    return {"execs_per_s": sandboxes * execs / elapsed, "seconds": elapsed}


def density(backend: Backend, count: int) -> dict:
    before = used_memory_mib()
    boxes = []
    start = time.perf_counter()
    try:
        for _ in range(count):
            box = backend.create(SandboxSpec())
            box.warm()
            boxes.append(box)
        created = time.perf_counter() - start
        used = used_memory_mib() - before
        alive = sum(box.exec("echo ok").stdout == "ok\n" for box in boxes)
    finally:
        for box in boxes:
            box.close()
    return {
        "sandboxes": count,
        "alive": alive,
        "seconds_to_create": created,
        "memory_mib": used,
        "mib_per_sandbox": used / max(1, count),
    }


def table(results: dict) -> str:
    rows = ["| backend | measurement | p50 ms | p99 ms | other |", "|---|---|---|---|---|"]
    for backend, measures in results["latency"].items():
        for name, value in measures.items():
            if "error" in value:
                rows.append(f"| {backend} | {name} | | | {value['error'][:60]} |")
            elif "p50_ms" in value:
                p50, p99 = value["p50_ms"], value["p99_ms"]
                rows.append(f"| {backend} | {name} | {p50:.3f} | {p99:.3f} | n={value['n']} |")
            else:
                rows.append(f"| {backend} | {name} | | | {value['execs_per_s']:.0f} execs/s |")
    for backend, value in results["density"].items():
        rows.append(
            f"| {backend} | density: idle sandboxes with live sessions | | | "
            f"{value['alive']}/{value['sandboxes']} "
            f"alive, {value['mib_per_sandbox']:.1f} MiB each, created in {value['seconds_to_create']:.0f} s |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="local,docker,remote")
    parser.add_argument("-n", type=int, default=500, help="samples per latency measurement")
    parser.add_argument("--density", type=int, default=500, help="idle sandboxes for the local density test")
    parser.add_argument("--docker-density", type=int, default=50)
    parser.add_argument("--fork-mb", type=int, default=50)
    args = parser.parse_args()
    results: dict = {
        "machine": machine(),
        "latency": {"baseline": bench_baselines(args.n)},
        "density": {},
    }
    for name in args.backends.split(","):
        print(f"benchmarking {name} ...", file=sys.stderr)
        if name == "remote":
            with env_service("local") as conn:
                results["latency"]["remote (service over local)"] = bench_backend(
                    get_backend("remote", **conn), max(50, args.n // 5), args.fork_mb
                )
            continue
        backend = get_backend(name)
        results["latency"][name] = bench_backend(backend, args.n, args.fork_mb)
        count = args.density if name == "local" else args.docker_density
        if count:
            results["density"][name] = density(backend, count)
    write_results("sandbox", results)
    text = table(results)
    print(text)
    write_doc_section(
        "sandbox",
        "## Sandbox layer\n\nProduced by `benchmarks/sandbox_bench.py` "
        f"({results['machine']['cpus']} cores, kernel {results['machine']['kernel']}). "
        "Raw numbers: `benchmarks/results/sandbox.json`.\n\n" + text,
    )


if __name__ == "__main__":
    main()
