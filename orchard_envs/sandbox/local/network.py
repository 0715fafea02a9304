"""Outbound-only network for local sandboxes: their own network namespace behind slirp4netns.

A networked sandbox never shares the host's namespace: there every service on the host's 127.0.0.1
(the env service, Claw services, a Ray head, a model server) would be one connect away. slirp4netns
gives the namespace a tap device routed through a user-mode TCP/IP stack in a host process, with
`--disable-host-loopback` so its gateway (10.0.2.2) does not lead to the host's loopback either: what
the sandbox reaches is what any outside machine could reach, as with Docker's default bridge.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
from pathlib import Path

from orchard_envs.errors import BackendUnavailable, SandboxError

DNS = "10.0.2.3"  # slirp4netns's built-in forwarder to the host's resolver
READY_TIMEOUT = 10.0
RESOLV_CONF = f"nameserver {DNS}\n"


def require_slirp() -> str:
    """The slirp4netns binary's path; BackendUnavailable, saying how to get it, when it is missing."""
    binary = shutil.which("slirp4netns")
    if binary is None:
        raise BackendUnavailable(
            "a local sandbox with network=True needs slirp4netns: apt-get install slirp4netns "
            "(or use --backend docker)"
        )
    return binary


def read_child_pid(fd: int, process: subprocess.Popen) -> int:
    """The host pid of the sandbox's first process, from bwrap's `--info-fd` JSON."""
    data = b""
    while not data.rstrip().endswith(b"}"):
        ready, _, _ = select.select([fd], [], [], READY_TIMEOUT)
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            raise SandboxError(
                f"sandbox failed to start (bwrap exited {process.poll()})" if process.poll() is not None
                else "sandbox did not report its pid in time"
            )
        data += chunk
    return int(json.loads(data)["child-pid"])


class SlirpNetwork:
    """One slirp4netns serving one sandbox's namespace; it exits when `close` is called or when the
    host process that created it dies (its `--exit-fd` pipe closes)."""

    def __init__(self, sandbox_pid: int, log: Path) -> None:
        binary = require_slirp()
        self.log = log
        ready_read, ready_write = os.pipe()
        exit_read, self._exit_write = os.pipe()
        os.set_inheritable(self._exit_write, False)
        argv = [
            binary, "--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox",
            "--enable-seccomp", f"--ready-fd={ready_write}", f"--exit-fd={exit_read}",
            str(sandbox_pid), "tap0",
        ]
        try:
            with open(log, "wb") as stderr:  # a host file: slirp4netns runs outside the sandbox
                self.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    pass_fds=(ready_write, exit_read),
                    env={"PATH": "/usr/bin:/bin"},
                    start_new_session=True,
                )
        finally:
            os.close(ready_write)
            os.close(exit_read)
        try:
            self._wait_ready(ready_read)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(ready_read)

    def _wait_ready(self, fd: int) -> None:
        ready, _, _ = select.select([fd], [], [], READY_TIMEOUT)
        if ready and os.read(fd, 1) == b"1":
            return
        self.process.kill()
        self.process.wait()
        error = self.log.read_text(errors="replace").strip()
        raise SandboxError(f"the sandbox's network (slirp4netns) did not come up: {error or 'timed out'}")

    def close(self) -> None:
        """Stop slirp4netns (closing its exit pipe, then killing it) and reap it."""
        with contextlib.suppress(OSError):
            os.close(self._exit_write)
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def write_resolv_conf(folder: Path) -> Path:
    """The sandbox's /etc/resolv.conf: slirp's forwarder (the host's may name its own loopback)."""
    path = folder / "resolv.conf"
    path.write_text(RESOLV_CONF)
    return path
