"""The recording proxy's added latency per chat completion, against calling the upstream directly.

    .venv/bin/python benchmarks/proxy_overhead.py [-n 500] [--sandbox]

The upstream is a minimal OpenAI-compatible server on loopback (a fixed reply, token ids included), so the
numbers are the proxy's own cost: parsing, recording, forwarding over HTTP. Direct and proxied calls
alternate in the same run, with one keep-alive client each. Target: <= 2 ms added at p50 and p99.
`--sandbox` also times calls from inside a local sandbox through its forwarder (the pty relay), for
reference. Writes benchmarks/results/proxy.json and the "proxy" section of docs/benchmarks.md.
Never a pass/fail test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
from common import machine, percentiles, write_doc_section, write_results

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers import serving
from proxy_helpers import scripted_app

from orchard_envs.proxy.server import ProxyServer
from orchard_envs.proxy.upstream import URLUpstream

BODY = {
    "model": "m",
    "messages": [{"role": "system", "content": "s" * 2000}, {"role": "user", "content": "go"}],
}


def _time(client: httpx.Client, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = client.post("/v1/chat/completions", json=BODY, headers=headers)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    return elapsed


def measure(n: int) -> dict[str, dict[str, float]]:
    """Direct, through the proxy's TCP port, through its Unix socket: interleaved, after a warm-up."""
    samples: dict[str, list[float]] = {"direct": [], "proxy (tcp)": [], "proxy (unix socket)": []}
    with (
        serving(scripted_app()) as upstream,
        ProxyServer(URLUpstream(f"{upstream}/v1"), port=0) as tcp,
        ProxyServer(URLUpstream(f"{upstream}/v1")) as uds,
    ):
        clients = {
            "direct": (httpx.Client(base_url=upstream), {}),
            "proxy (tcp)": (tcp.client(), {"Authorization": f"Bearer {tcp.recorder.open()}"}),
            "proxy (unix socket)": (uds.client(), {"Authorization": f"Bearer {uds.recorder.open()}"}),
        }
        for _ in range(50):
            for client, headers in clients.values():
                _time(client, headers)
        for _ in range(n):
            for name, (client, headers) in clients.items():
                samples[name].append(_time(client, headers))
    return {name: percentiles(values) for name, values in samples.items()}


def measure_sandbox(n: int) -> dict[str, float]:
    """Calls from a local sandbox through its forwarder (python urllib inside, one connection per call)."""
    from orchard_envs.proxy.relay import SandboxLink
    from orchard_envs.sandbox import SandboxSpec, get_backend

    script = (
        "import json, time, urllib.request, sys\n"
        "url, n, out = sys.argv[1], int(sys.argv[2]), []\n"
        f"body = json.dumps({BODY!r}).encode()\n"
        "for _ in range(n + 20):\n"
        "    t = time.perf_counter()\n"
        "    kind = {'Content-Type': 'application/json'}\n"
        "    urllib.request.urlopen(urllib.request.Request(url, data=body, headers=kind)).read()\n"
        "    out.append(time.perf_counter() - t)\n"
        "print(json.dumps(out[20:]))\n"
    )
    import json

    with (
        serving(scripted_app()) as upstream,
        ProxyServer(URLUpstream(f"{upstream}/v1")) as proxy,
        get_backend("local").create(SandboxSpec()) as sandbox,
    ):
        link = SandboxLink(sandbox, proxy, proxy.recorder.open())
        sandbox.write_file("/tmp/bench.py", script)
        result = sandbox.exec(f"python3 /tmp/bench.py {link.base_url}/chat/completions {n}", timeout=600)
        link.close()
    return percentiles(json.loads(result.stdout))


def main() -> None:
    """Measure, write the JSON and the doc section."""
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--sandbox", action="store_true")
    args = parser.parse_args()
    results = measure(args.n)
    if args.sandbox:
        results["sandbox forwarder -> proxy (unix socket)"] = measure_sandbox(min(args.n, 200))
    direct = results["direct"]
    added = {
        name: {"p50_ms": r["p50_ms"] - direct["p50_ms"], "p99_ms": r["p99_ms"] - direct["p99_ms"]}
        for name, r in results.items()
        if name != "direct"
    }
    path = write_results("proxy", {"machine": machine(), "calls": results, "added": added})
    rows = [
        f"| {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {added.get(name, {}).get('p50_ms', 0):+.3f} | "
        f"{added.get(name, {}).get('p99_ms', 0):+.3f} | {r['n']} |"
        for name, r in results.items()
    ]
    write_doc_section(
        "proxy",
        "## Recording proxy\n\n"
        f"Produced by `benchmarks/proxy_overhead.py` ({machine()['cpus']} cores). Raw numbers: "
        "`benchmarks/results/proxy.json`. A chat completion against a fixed-reply upstream on loopback, "
        "direct and through the proxy, alternating in one run; target <= 2 ms added.\n\n"
        "| path | p50 ms | p99 ms | added p50 ms | added p99 ms | n |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows),
    )
    print(path)


if __name__ == "__main__":
    main()
