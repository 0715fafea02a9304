"""A short end-to-end run of the sandbox layer: what `orchard-env smoke` (the README's main job) does."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from orchard_envs.errors import OrchardError
from orchard_envs.sandbox import Sandbox, SandboxSpec, get_backend


@dataclass
class Check:
    """One smoke check's outcome and how long it took (ms)."""

    backend: str
    name: str
    ok: bool
    detail: str
    ms: float


def _checks(sandbox: Sandbox) -> list[tuple[str, Callable[[], tuple[bool, str]]]]:
    def session() -> tuple[bool, str]:
        sandbox.exec("cd /tmp && export ORCHARD=ok")
        out = sandbox.exec("pwd; echo $ORCHARD").stdout.split()
        return out == ["/tmp", "ok"], " ".join(out)

    def toolchain() -> tuple[bool, str]:
        result = sandbox.exec("python3 --version && git --version", session=False)
        return result.ok, result.stdout.replace("\n", "; ").strip("; ")

    def timeout() -> tuple[bool, str]:
        result = sandbox.exec("sleep 30", timeout=0.5)
        return result.timed_out, f"exit {result.exit_code}"

    def files_and_patch() -> tuple[bool, str]:
        sandbox.exec(f"cd {sandbox.spec.workdir} && git init -q repo && printf 'a\\n' > repo/f")
        sandbox.apply_patch("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n", cwd=f"{sandbox.spec.workdir}/repo")
        data = sandbox.read_file("repo/f")
        return data == b"b\n", f"patched file reads {data!r}"

    def fork() -> tuple[bool, str]:
        with sandbox.fork() as child:
            out = child.exec("pwd; echo $ORCHARD; cat " + f"{sandbox.spec.workdir}/repo/f").stdout.split()
        return out == [sandbox.spec.workdir, "ok", "b"], " ".join(out)

    def network_off() -> tuple[bool, str]:
        code = "import socket; socket.create_connection(('127.0.0.1', 9), 1)"
        result = sandbox.exec(f'python3 -c "{code}"', session=False)
        return result.exit_code != 0, "connection refused inside the sandbox's own network"

    return [
        ("persistent session", session),
        ("python3 and git", toolchain),
        ("timeout kills", timeout),
        ("files + apply_patch", files_and_patch),
        ("fork", fork),
        ("network off", network_off),
    ]


def run_smoke(backends: list[str]) -> list[Check]:
    """Every check on every backend; a backend that can't start is one failed check, not a crash."""
    results = []
    for name in backends:
        start = time.perf_counter()
        try:
            sandbox = get_backend(name).create(SandboxSpec(ttl=300))
        except OrchardError as exc:
            results.append(Check(name, "create", False, str(exc), (time.perf_counter() - start) * 1e3))
            continue
        results.append(Check(name, "create", True, sandbox.id, (time.perf_counter() - start) * 1e3))
        with sandbox:
            for check_name, check in _checks(sandbox):
                start = time.perf_counter()
                try:
                    ok, detail = check()
                except OrchardError as exc:
                    ok, detail = False, str(exc)
                results.append(Check(name, check_name, ok, detail, (time.perf_counter() - start) * 1e3))
    return results
