"""The parent's side of a host process (Claw's services, the web sites): a child in its own process group
that prints its ports as one JSON line, writes its stderr to a file, and is killed with its group."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from typing import IO

import httpx

from orchard_envs.errors import SandboxError


def read_ports(proc: subprocess.Popen[bytes], timeout_s: float, what: str) -> dict[str, int]:
    """The `{name: port}` JSON line the child prints once every server listens (SandboxError if it
    exits first or takes longer than `timeout_s`); `what` names the child in the error."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxError(f"{what} did not come up within {timeout_s:g} s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            if not line:
                raise SandboxError(f"{what} exited with {proc.wait()} before listening")
            return {name: int(port) for name, port in json.loads(line).items()}


def stderr_tail(stderr: IO[bytes] | None, limit: int = 4000) -> str:
    """The end of what the child wrote to its stderr file, for an error message."""
    if stderr is None or stderr.closed:
        return ""
    stderr.seek(0, os.SEEK_END)
    size = stderr.tell()
    stderr.seek(max(0, size - limit))
    return stderr.read().decode("utf-8", "replace").strip()


def shutdown(proc: subprocess.Popen[bytes], client: httpx.Client | None, stderr: IO[bytes] | None) -> None:
    """Kill the whole process group and reap it; safe to call twice (a finalizer runs it once)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    if client is not None:
        client.close()
    if stderr is not None:
        stderr.close()
