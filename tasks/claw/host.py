"""`ServiceHost`: every Claw service in ONE child process, one uvicorn server per service on a loopback port.

One process (not seven) keeps start-up near a single interpreter's import time and lets many hosts run
side by side; its own process group makes `close()` (or interpreter exit) take all of it down at once.
Run as `python -m orchard_envs.tasks.claw.host [--timeout-s S] [--watch-stdin]`: it prints `{service: port}`
as one JSON line when every server listens, and exits on SIGTERM/SIGINT or, with --watch-stdin, when its
stdin closes (the parent died, even by SIGKILL, so no host outlives its owner).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import weakref
from typing import IO, Any

import httpx

from orchard_envs.errors import ConfigError, SandboxError, unknown_name
from orchard_envs.tasks.child_process import read_ports, shutdown, stderr_tail
from orchard_envs.tasks.claw.catalog import SERVICES

STARTUP_TIMEOUT_S = 15.0


class ServiceHost:
    """Handle on a host process: `ServiceHost().start()`, then URLs per service, reset, audit, and close
    (idempotent, also run at interpreter exit)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.urls: dict[str, str] = {}
        self._stderr: IO[bytes] | None = None
        # Keep-alive connections per service: a reset of all services costs a few milliseconds.
        self._client = httpx.Client(timeout=30.0, trust_env=False)
        self._finalizer = weakref.finalize(self, self._client.close)

    def start(self, timeout_s: float = 1.0, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> ServiceHost:
        """Start the child (`timeout_s`: how long a 'timeout' fault makes its call hang) and wait for its
        ports; SandboxError with the child's stderr when it dies or is not up in time."""
        if self.proc is not None:
            raise SandboxError("this ServiceHost was already started; make a new one")
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child, closed by shutdown
        command = [sys.executable, "-m", "orchard_envs.tasks.claw.host", "--timeout-s", str(timeout_s)]
        proc = subprocess.Popen(
            [*command, "--watch-stdin"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
        )
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, shutdown, proc, self._client, stderr)
        self.proc, self._stderr = proc, stderr
        try:
            ports = read_ports(proc, startup_timeout_s, "claw service host")
            self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            self.reset()  # opens the keep-alive connections and warms the routes: later resets are fast
        except BaseException as exc:
            tail = stderr_tail(stderr)
            self.close()
            if isinstance(exc, SandboxError) and "stderr:" not in str(exc):
                raise SandboxError(f"{exc}; stderr: {tail}") from None
            raise
        return self

    def reset(
        self,
        fixtures: dict[str, dict[str, Any]] | None = None,
        faults: dict[str, Any] | None = None,
        now: str | None = None,
    ) -> None:
        """Replace every service's state (services not in `fixtures` start empty) and clear the audits.
        `faults` values may be dicts or pydantic models (a task's `Faults`)."""
        fixtures, faults = fixtures or {}, faults or {}
        for name in [*fixtures, *faults]:
            if name not in self.urls:
                raise unknown_name("claw service", name, self.urls)
        for name, url in self.urls.items():
            payload = {"fixture": _plain(fixtures.get(name)), "faults": _plain(faults.get(name))}
            if now is not None:
                payload["now"] = now
            response = self._request("POST", f"{url}/_reset", json=payload)
            if response.status_code != 200:
                raise ConfigError(f"bad fixture or faults for {name}: {response.json().get('error')}")

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every service's whole state, for `restore` into another host (an env fork)."""
        return {name: self._request("GET", f"{url}/_snapshot").json() for name, url in self.urls.items()}

    def restore(self, snapshots: dict[str, dict[str, Any]]) -> None:
        """Make every service the state `snapshot` recorded (on this host or another)."""
        for name, url in self.urls.items():
            response = self._request("POST", f"{url}/_restore", json=snapshots[name])
            if response.status_code != 200:
                raise SandboxError(f"cannot restore the {name} service: {response.text[:500]}")

    def audit(self) -> dict[str, dict[str, Any]]:
        """Per service: `{"calls": [Call], "state": {collection: records}, "fixture": {...}}`."""
        return {name: self._request("GET", f"{url}/_audit").json() for name, url in self.urls.items()}

    def alive(self) -> bool:
        """Whether the services' process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop the services' process; safe to call twice (it also runs at exit)."""
        self._finalizer()

    def __enter__(self) -> ServiceHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if not self.alive():
            raise SandboxError("the claw service host is not running (not started, closed, or it died)")
        try:
            return self._client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            state = "running" if self.alive() else "not running"
            raise SandboxError(f"claw service host ({state}) did not answer {method} {url}: {exc!r}; "
                               f"stderr: {stderr_tail(self._stderr)}") from exc


def _plain(value: Any) -> Any:
    """JSON-ready form of a fixture or faults given as a dict or as a pydantic model (the task's own)."""
    if value is None:
        return {}
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


# --- the child ---------------------------------------------------------------------------------------


async def _serve_all(timeout_s: float) -> None:
    import uvicorn

    from orchard_envs.tasks.claw.services.base import create_service_app

    class Server(uvicorn.Server):
        def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
            return contextlib.nullcontext()  # the process handles signals once, for all servers

    servers: list[tuple[uvicorn.Server, socket.socket]] = []
    ports: dict[str, int] = {}
    for name in SERVICES:
        service = importlib.import_module(f"orchard_envs.tasks.claw.services.{name}").SERVICE
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say so, and without it
        # Nagle plus delayed ACKs add ~40 ms to every response written in two parts (headers, body).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        ports[name] = sock.getsockname()[1]
        config = uvicorn.Config(
            create_service_app(service, timeout_s=timeout_s), log_level="warning", access_log=False,
            lifespan="off", loop="asyncio", http="h11", ws="none", timeout_keep_alive=60,
        )
        servers.append((Server(config), sock))
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        for task in tasks:
            if task.done():
                task.result()  # a server that failed to start: raise its error
                raise SystemExit(f"a service server exited during start-up: {ports}")
        await asyncio.sleep(0.002)
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    await asyncio.gather(*tasks)


def _exit_when_orphaned() -> None:
    """The parent holds our stdin; EOF means it is gone (even if it was SIGKILLed), so stop serving."""
    sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """Serve every Claw service in this process until signalled (or, with --watch-stdin, orphaned)."""
    parser = argparse.ArgumentParser(description="Run every Claw service on loopback ports (one process).")
    parser.add_argument("--timeout-s", type=float, default=1.0, help="how long a 'timeout' fault hangs")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (parent gone)")
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))  # nothing to flush: services keep no files
    if args.watch_stdin:
        threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    asyncio.run(_serve_all(args.timeout_s))


if __name__ == "__main__":
    main()
