"""The proxy served by uvicorn on a thread of this process: on a Unix socket (what sandboxes reach,
through their forwarder) or a TCP port (what `orchard-proxy` and the benchmark use)."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from orchard_envs.errors import OrchardError
from orchard_envs.proxy.records import Recorder


class ProxyServer:
    """Start with `with ProxyServer(...) as proxy:`; `proxy.recorder` opens episodes."""

    def __init__(self, upstream: Any = None, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.recorder = Recorder()
        self.upstream, self.host, self.port = upstream, host, port
        self.socket_path: Path | None = None
        self._folder: tempfile.TemporaryDirectory | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL of the OpenAI API (`.../v1`); over the Unix socket the host part is nominal."""
        return f"http://{self.host}:{self.port}/v1" if self.port is not None else "http://proxy/v1"

    def start(self) -> ProxyServer:
        """Serve until `stop`; a Unix socket in a fresh 0700 folder unless a port was given."""
        import uvicorn

        from orchard_envs.proxy.app import create_app

        app = create_app(self.recorder, self.upstream)
        options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", "timeout_keep_alive": 120}
        if self.port is None:
            self._folder = tempfile.TemporaryDirectory(prefix="orchard-proxy-")
            os.chmod(self._folder.name, 0o700)
            self.socket_path = Path(self._folder.name) / "proxy.sock"
            options["uds"] = str(self.socket_path)
        else:
            options |= {"host": self.host, "port": self.port}
        self._server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(target=self._server.run, name="orchard-proxy", daemon=True)
        self._thread.start()
        self._wait_started()
        return self

    def _wait_started(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise OrchardError("orchard-proxy did not start")
            time.sleep(0.01)
        if self.port == 0:  # the port the OS chose
            self.port = self._server.servers[0].sockets[0].getsockname()[1]

    def client(self, timeout: float = 600.0) -> Any:
        """A synchronous httpx client to the proxy (over its Unix socket when it has one)."""
        import httpx

        if self.socket_path is not None:
            transport = httpx.HTTPTransport(uds=str(self.socket_path))
            return httpx.Client(transport=transport, base_url="http://proxy", timeout=timeout)
        return httpx.Client(base_url=f"http://{self.host}:{self.port}", timeout=timeout)

    def stop(self) -> None:
        """Stop serving and remove the socket's folder."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
