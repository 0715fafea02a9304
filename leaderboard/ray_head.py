"""A one-node Ray cluster on loopback, for tests and benchmarks of `--executor ray`.

`ray start --head --block` runs as ONE child process that we end (SIGTERM takes its node processes with
it), so nothing is left behind and no other Ray on the machine is touched (`ray stop` would kill them all).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def loopback_head(num_cpus: int, env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[str]:
    """Its address (`127.0.0.1:PORT`) while it runs; `env` is added to the head's environment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    log = Path(temp) / "head.log"
    command = [
        str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
        "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(num_cpus),
        "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp,
    ]  # fmt: skip
    with log.open("w") as output:
        head = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in log.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed:\n{log.read_text()}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
