"""The warm pool, and the README's main job (`orchard-env smoke`) run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchard_envs.sandbox import SandboxPool, SandboxSpec


def test_pool_hands_out_ready_independent_sandboxes(local_backend):
    with SandboxPool(local_backend, SandboxSpec(ttl=120), size=2) as pool:
        assert pool.wait_full(timeout=60)
        first, second = pool.acquire(), pool.acquire()
        try:
            assert first.id != second.id
            first.write_file("mine.txt", "1")
            assert second.exec("ls").stdout == ""
            assert pool.wait_full(timeout=60)  # refilled in the background
        finally:
            first.close()
            second.close()


def test_pool_discards_sandboxes_near_their_ttl(local_backend):
    with SandboxPool(local_backend, SandboxSpec(ttl=1.0), size=1) as pool:
        assert pool.wait_full(timeout=60)
        stale = pool._ready.queue[0]
        stale.created_at -= 10
        fresh = pool.acquire()
        try:
            assert fresh is not stale and stale.closed
            assert fresh.exec("echo ok").stdout == "ok\n"
        finally:
            fresh.close()


def test_smoke_command_passes_on_local(local_backend):
    cli = Path(sys.executable).with_name("orchard-env")
    result = subprocess.run([str(cli), "smoke", "--backend", "local"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout and "fork" in result.stdout


def test_smoke_command_reports_unknown_backend_in_one_line():
    cli = Path(sys.executable).with_name("orchard-env")
    result = subprocess.run([str(cli), "smoke", "--backend", "lokal"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "did you mean 'local'" in result.stderr and len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr
