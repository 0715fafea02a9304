"""The sandbox's one way out: a forwarder inside it, relaying HTTP calls to the proxy over its pty.

A network-less sandbox still has a loopback of its own. `FORWARDER` (stdlib Python, run in the sandbox on a
pseudo-terminal the sandbox made) listens on that loopback and writes each request as a JSON line to its
terminal; `SandboxLink` on the host reads the line, sends the call to the proxy's Unix socket with the
episode's key (set here, never taken from the sandbox), and writes the answer back. The sandbox keeps
`block_network`: it reaches the forwarder and, through it, these two proxy paths, and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchard_envs.errors import SandboxError

ALLOWED = {("POST", "/v1/chat/completions"), ("GET", "/v1/models")}
MAX_LINE = 24 * 1024 * 1024  # a request line over this (a 16 MiB body in base64, with room) is dropped
READY_TIMEOUT = 30.0

FORWARDER = r"""
import base64, http.server, json, os, sys, threading, tty
cfg = json.loads(sys.argv[1])
tty.setraw(0)
out, lock, waiting, count = threading.Lock(), threading.Lock(), {}, [0]
def send(msg):
    data = (json.dumps(msg) + "\n").encode()
    with out:
        while data:
            data = data[os.write(1, data):]
def reader():
    buf = b""
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            os._exit(0)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                msg = json.loads(line)
                slot = waiting[msg["id"]]
            except (ValueError, KeyError, TypeError):
                continue
            slot[1] = msg
            slot[0].set()
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add 40 ms
    def relay(self):
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(size, cfg["max_body"] + 1))
        with lock:
            count[0] += 1
            n = count[0]
        slot = waiting[n] = [threading.Event(), None]
        send({"id": n, "method": self.command, "path": self.path, "body": base64.b64encode(body).decode()})
        slot[0].wait(cfg["timeout"])
        answer = waiting.pop(n)[1] or {"status": 504, "type": "application/json",
            "body": base64.b64encode(b'{"error": {"message": "the proxy did not answer"}}').decode()}
        data = base64.b64decode(answer["body"])
        self.send_response(answer["status"])
        self.send_header("Content-Type", answer["type"])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = relay
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=reader, daemon=True).start()
send({"ready": server.server_address[1]})
server.serve_forever()
"""


def _answer(n: Any, status: int, body: bytes, kind: str = "application/json") -> bytes:
    payload = {"id": n, "status": status, "type": kind, "body": base64.b64encode(body).decode()}
    return (json.dumps(payload) + "\n").encode()


class SandboxLink:
    """The forwarder in one sandbox and the host's end of it, bound to one episode's key."""

    def __init__(self, sandbox: Any, proxy: Any, key: str, *, timeout: float = 600.0) -> None:
        self.proxy, self.key, self.timeout = proxy, key, timeout
        config = json.dumps({"max_body": 16 * 1024 * 1024, "timeout": timeout})
        self.process = sandbox.open_pty(["python3", "-I", "-S", "-c", FORWARDER, config], cwd="/")
        self.relayed = 0  # requests answered (forwarded or refused)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="proxy-link")
        self._client = proxy.client(timeout)
        self._buffer = b""
        self.port = self._await_ready()
        self._thread = threading.Thread(target=self._pump, name="proxy-link", daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """The OpenAI base URL a harness in the sandbox uses."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _lines(self, timeout: float | None) -> list[bytes]:
        chunk = self.process.read(timeout)
        if not chunk:
            raise EOFError
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE:  # a line that never ends: noise, dropped
            self._buffer = b""
        return lines

    def _await_ready(self) -> int:
        try:
            while True:
                for line in self._lines(READY_TIMEOUT):
                    with contextlib.suppress(ValueError, TypeError, KeyError):
                        return int(json.loads(line)["ready"])
        except (TimeoutError, EOFError):
            self.close()
            raise SandboxError(
                "the proxy forwarder did not start in the sandbox (it needs python3)"
            ) from None

    def _pump(self) -> None:
        while True:
            try:
                lines = self._lines(None)
            except (EOFError, SandboxError):
                return
            for line in lines:
                self._pool.submit(self._handle, line)

    def _handle(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            n, method, path = request["id"], str(request["method"]), str(request["path"]).split("?")[0]
            body = base64.b64decode(request["body"])
        except (ValueError, TypeError, KeyError):
            return  # not a request of the forwarder's: ignored
        if (method, path) not in ALLOWED:
            reply = _answer(n, 404, b'{"error": {"message": "only /v1/chat/completions and /v1/models"}}')
        else:
            reply = self._forward(n, method, path, body)
        with contextlib.suppress(SandboxError):
            self.process.write_stdin(reply)
        self.relayed += 1

    def _forward(self, n: Any, method: str, path: str, body: bytes) -> bytes:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        try:
            response = self._client.request(method, path, content=body, headers=headers)
        except Exception as exc:  # the proxy is down or slow: the harness sees a 502 and decides
            return _answer(n, 502, json.dumps({"error": {"message": f"proxy unreachable: {exc}"}}).encode())
        kind = response.headers.get("content-type", "application/json")
        return _answer(n, response.status_code, response.content, kind)

    def close(self) -> None:
        """Stop the forwarder and the host's end."""
        with contextlib.suppress(Exception):
            self.process.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            self._client.close()
