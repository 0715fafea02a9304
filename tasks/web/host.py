"""`SiteHost`: the four web sites in ONE child process, one uvicorn server (one loopback origin) per site.

As Claw's `ServiceHost`: the child prints `{site: port}` as one JSON line when every server listens, lives
in its own process group, and exits when its stdin closes (the parent died). The parent resets a site's
database per episode and reads its state for grading through `/_control/*`, which answers only requests
carrying a random token the parent hands the child in its environment; a page in the browser cannot know
it, so the agent can neither reset nor read the grader's view.
Run as `python -m orchard_envs.tasks.web.host --watch-stdin` (token in ORCHARD_WEB_TOKEN).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import IO, Any

import httpx

from orchard_envs.envs.verdict import Verdict
from orchard_envs.errors import SandboxError, unknown_name
from orchard_envs.tasks.child_process import read_ports, shutdown, stderr_tail
from orchard_envs.tasks.web.grading import grade_state, with_judge
from orchard_envs.tasks.web.judge import WebJudge
from orchard_envs.tasks.web.sites import SITE_NAMES
from orchard_envs.tasks.web.sites.common import CONTROL_HEADER, EPISODE_HEADER
from orchard_envs.tasks.web.task import WebTask

STARTUP_TIMEOUT_S = 20.0
TOKEN_ENV = "ORCHARD_WEB_TOKEN"


class SiteHost:
    """Handle on the sites' process: `SiteHost().start()`, then `reset(task)` per episode, `grade(...)` at
    its end, `close()` (idempotent, also run at interpreter exit)."""

    def __init__(self, judge: WebJudge | None = None) -> None:
        self.judge = judge  # an optional LLM judge for tasks that opt in (expected["judge"]); never alone
        self.proc: subprocess.Popen[bytes] | None = None
        self.urls: dict[str, str] = {}
        self.last_reset_s = 0.0  # seconds the last reset took (databases only), for benchmarks
        self.episode = ""  # the current episode's id, new at every reset (see `headers`)
        self._token = secrets.token_hex(16)
        self._stderr: IO[bytes] | None = None
        self._client = httpx.Client(timeout=30.0, trust_env=False, headers={CONTROL_HEADER: self._token})
        self._finalizer = weakref.finalize(self, self._client.close)

    def start(self, startup_timeout_s: float = STARTUP_TIMEOUT_S) -> SiteHost:
        """Start the child and wait for its ports; SandboxError with its stderr when it fails."""
        if self.proc is not None:
            raise SandboxError("this SiteHost was already started; make a new one")
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child, closed by shutdown
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchard_envs.tasks.web.host", "--watch-stdin"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
            env={**os.environ, TOKEN_ENV: self._token},
        )
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, shutdown, proc, self._client, stderr)
        self.proc, self._stderr = proc, stderr
        try:
            ports = read_ports(proc, startup_timeout_s, "web site host")
            self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            for name in self.urls:
                self._reset_site(name, 0)  # opens the keep-alive connections: later resets are fast
        except BaseException as exc:
            tail = stderr_tail(stderr)
            self.close()
            if isinstance(exc, SandboxError) and "stderr:" not in str(exc):
                raise SandboxError(f"{exc}; stderr: {tail}") from None
            raise
        return self

    def reset(self, task: WebTask) -> str:
        """Reset every site's database to the task's seed (one request: the sites share a process), so
        nothing an earlier episode wrote on any site is left; returns the absolute start URL."""
        if task.site not in self.urls:
            raise unknown_name("web site", task.site, self.urls)
        began = time.perf_counter()
        self.episode = secrets.token_hex(16)
        self._reset_site(task.site, task.seed)  # the child resets every site's database on this request
        self.last_reset_s = time.perf_counter() - began
        return self.urls[task.site] + task.start_path

    def headers(self) -> dict[str, str]:
        """What every request of the current episode's browser context carries: the sites refuse a request
        (or a write) of another episode, so a tab of the last one that is still closing changes nothing."""
        return {EPISODE_HEADER: self.episode}

    def origins(self) -> list[str]:
        """The origins an episode may visit: every site of this host."""
        return list(self.urls.values())

    def state(self, site: str) -> dict[str, list[dict[str, Any]]]:
        """The grading tables of one site, as the site holds them now."""
        return self._request("GET", f"{self.urls[site]}/_control/state").json()["tables"]

    def grade(
        self,
        task: WebTask,
        *,
        page_url: str,
        answer: str | None,
        infeasible_reason: str | None,
        page: Any = None,
    ) -> Verdict:
        """Grade the episode from the site's own state and the answer; with a judge and a task that opts in,
        the judge's verdict on the final page (`page`, a Playwright page) is one more check."""
        began = time.perf_counter()
        state = self.state(task.site)
        fetched = time.perf_counter()
        verdict = grade_state(task, state, answer=answer, infeasible_reason=infeasible_reason)
        verdict.timings.update({"state": fetched - began, "grade": time.perf_counter() - fetched})
        if self.judge is not None and task.expected.get("judge") and not task.infeasible:
            text = page.inner_text("body") if page is not None else f"(page {page_url})"
            verdict = with_judge(verdict, *self.judge.judge(task, answer, text))
        return verdict

    def alive(self) -> bool:
        """Whether the sites' process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Stop the sites' process; safe to call twice (it also runs at exit)."""
        self._finalizer()

    def __enter__(self) -> SiteHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reset_site(self, name: str, seed: int) -> None:
        body = {"seed": seed, "episode": self.episode}
        response = self._request("POST", f"{self.urls[name]}/_control/reset", json=body)
        if response.status_code != 200:
            raise SandboxError(f"web site {name} refused the reset: {response.status_code} {response.text}")

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if not self.alive():
            raise SandboxError("the web site host is not running (not started, closed, or it died)")
        try:
            return self._client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise SandboxError(
                f"web site host did not answer {method} {url}: {exc!r}; stderr: {stderr_tail(self._stderr)}"
            ) from exc


# --- the child ---------------------------------------------------------------------------------------


async def _serve_all(token: str) -> None:
    import uvicorn

    from orchard_envs.tasks.web.sites.common import SiteDB, create_site_app

    class Server(uvicorn.Server):
        def capture_signals(self) -> contextlib.nullcontext[None]:  # type: ignore[override]
            return contextlib.nullcontext()  # the process handles signals once, for all servers

    servers: list[tuple[uvicorn.Server, socket.socket]] = []
    ports: dict[str, int] = {}
    group: list[SiteDB] = []
    for name in SITE_NAMES:
        site = importlib.import_module(f"orchard_envs.tasks.web.sites.{name}").SITE
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY: see claw
        sock.bind(("127.0.0.1", 0))
        ports[name] = sock.getsockname()[1]
        app, _ = create_site_app(site, token, group)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_keep_alive=60,
        )
        servers.append((Server(config), sock))
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    while not all(server.started for server, _ in servers):
        for task in tasks:
            if task.done():
                task.result()
                raise SystemExit(f"a site server exited during start-up: {ports}")
        await asyncio.sleep(0.002)
    sys.stdout.write(json.dumps(ports) + "\n")
    sys.stdout.flush()
    await asyncio.gather(*tasks)


def _exit_when_orphaned() -> None:
    sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """Serve every site in this process until signalled (or, with --watch-stdin, orphaned)."""
    parser = argparse.ArgumentParser(description="Run the web sites on loopback ports (one process).")
    parser.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (parent gone)")
    args = parser.parse_args(argv)
    token = os.environ.pop(TOKEN_ENV, "")
    if not token:
        raise SystemExit(f"{TOKEN_ENV} must hold the control token")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))
    if args.watch_stdin:
        threading.Thread(target=_exit_when_orphaned, daemon=True).start()
    asyncio.run(_serve_all(token))


if __name__ == "__main__":
    main()
