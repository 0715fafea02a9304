"""What every benchmark shares: percentiles, atomic JSON results, its section of docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "kernel": platform.release()}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50_ms": pick(0.5) * 1e3,
        "p99_ms": pick(0.99) * 1e3,
        "mean_ms": statistics.fmean(ordered) * 1e3,
        "n": len(ordered),
    }


def write_results(name: str, results: dict) -> Path:
    """benchmarks/results/<name>.json, written atomically."""
    target = RESULTS_DIR / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False) as tmp:
        json.dump(results, tmp, indent=2)
    os.replace(tmp.name, target)
    return target


def write_doc_section(name: str, markdown: str) -> None:
    """Replace (or append) one benchmark's section of docs/benchmarks.md, leaving the others alone."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def add_worker_flags(parser: Any) -> None:
    """The hidden flags `launch_worker` runs a script with (`--worker NAME --spec PATH --result PATH`)."""
    import argparse

    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)


def gpu_or_smoke(smoke: bool) -> str:
    """The device of a one-GPU benchmark: "cuda", or "cpu" for its --smoke check; a clear exit without one."""
    import torch

    if not smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: this benchmark is for one GPU; --smoke checks its path on CPU")
    return "cpu" if smoke else "cuda"


def launch_worker(script: str, name: str, spec_path: Path) -> dict:
    """Run `script --worker name --spec spec_path` in a fresh process (so its peak memory is its own) and
    read the JSON it writes beside the spec; an error row if it failed (its output went to this console)."""
    print(f"--- {name}", flush=True)
    result_path = spec_path.with_name(f"result-{name}.json")
    command = [sys.executable, script, "--worker", name, "--spec", str(spec_path)]
    command += ["--result", str(result_path)]
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(script).resolve().parent), env.get("PYTHONPATH", "")])
    done = subprocess.run(command, env=env, check=False)
    if done.returncode or not result_path.exists():
        return {"error": f"{name} worker exited with status {done.returncode} (its output is above)"}
    return json.loads(result_path.read_text())


@contextmanager
def env_service(backend: str) -> Iterator[dict[str, str]]:
    """A real `orchard-env serve` on a free loopback port, for the remote backend."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key = "bench-" + os.urandom(4).hex()
    cli = Path(sys.executable).with_name("orchard-env")
    server = subprocess.Popen(
        [str(cli), "serve", "--port", str(port), "--api-key", key, "--backend", backend],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                    break
            except OSError:
                time.sleep(0.05)
        yield {"url": f"http://127.0.0.1:{port}", "api_key": key}
    finally:
        server.terminate()
        server.wait(timeout=30)
