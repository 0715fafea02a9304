"""A warm pool: sandboxes for a known spec created ahead of time, so acquiring one is a queue pop."""

from __future__ import annotations

import contextlib
import queue
import threading
import time

from orchard_envs.sandbox.base import Backend, Sandbox
from orchard_envs.sandbox.spec import SandboxSpec

# A pooled sandbox closer than this to its TTL is thrown away rather than handed out.
TTL_MARGIN = 0.5


class SandboxPool:
    """Keeps `size` ready sandboxes (session started) of one spec; refills in a background thread.

    Sandboxes are never reused: `acquire` hands one out and the caller closes it, which is what makes
    episodes independent. When the pool is empty, `acquire` creates one synchronously.
    """

    def __init__(self, backend: Backend, spec: SandboxSpec, size: int = 4) -> None:
        self.backend = backend
        self.spec = spec
        self.size = size
        self._ready: queue.Queue[Sandbox] = queue.Queue()
        self._wanted = threading.Event()
        self._stopped = threading.Event()
        self._filler = threading.Thread(target=self._fill, name="orchard-pool", daemon=True)
        self._filler.start()
        self._wanted.set()

    def _fresh(self) -> Sandbox:
        sandbox = self.backend.create(self.spec)
        sandbox.warm()
        return sandbox

    def _fill(self) -> None:
        while not self._stopped.is_set():
            self._wanted.wait(timeout=1.0)
            self._wanted.clear()
            while not self._stopped.is_set() and self._ready.qsize() < self.size:
                try:
                    self._ready.put(self._fresh())
                except Exception:  # a failing backend must not kill the thread; acquire will raise
                    time.sleep(1.0)
                    break

    def acquire(self) -> Sandbox:
        """A ready sandbox; yours to close."""
        while True:
            try:
                sandbox = self._ready.get_nowait()
            except queue.Empty:
                self._wanted.set()
                return self._fresh()
            self._wanted.set()
            if time.monotonic() - sandbox.created_at < self.spec.ttl * (1 - TTL_MARGIN):
                return sandbox
            sandbox.close()

    def wait_full(self, timeout: float = 60.0) -> bool:
        """Block until the pool holds `size` sandboxes (for benchmarks and tests)."""
        deadline = time.monotonic() + timeout
        while self._ready.qsize() < self.size and time.monotonic() < deadline:
            time.sleep(0.01)
        return self._ready.qsize() >= self.size

    def close(self) -> None:
        """Stop the filler and close every ready sandbox not yet handed out."""
        self._stopped.set()
        self._wanted.set()
        self._filler.join(timeout=30)
        while True:
            try:
                sandbox = self._ready.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                sandbox.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
