"""Client handles of a terminal on the env service (`exec(..., pty=True)`), shaped as Orchard Env's SDK.

`ContainerProcess` (blocking; a reader thread) and `AsyncContainerProcess` (asyncio; a reader task)
speak the websocket protocol of `pty_route.py` to our service or to an Orchard Env orchestrator:
`read`, `read_all`, `write_stdin`, `kill`, `resize`, `wait`, `close`, `pid`, `returncode`, `poll`.
The key goes in the `X-API-Key` header, never in the URL (URLs end up in access logs). Needs the
`websockets` package, imported only here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from orchard_envs.errors import BackendUnavailable, ConfigError, SandboxError, SandboxNotFound
from orchard_envs.sandbox.pty import OutputBuffer, signal_number

CONNECT_TIMEOUT = 30.0
MAX_FRAME = 8 * 1024 * 1024  # a base64 frame of the service's largest chunk is far smaller
_CLOSE_ERRORS = {4401: ConfigError, 4404: SandboxNotFound, 4400: ConfigError, 4503: BackendUnavailable}


def pty_url(base_url: str, sandbox_id: str) -> str:
    """The websocket address of a sandbox's terminal endpoint, from the service's HTTP address."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + f"/sandboxes/{quote(sandbox_id, safe='')}/exec/pty"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def init_frame(
    command: str | list[str],
    env: dict[str, str] | None,
    cwd: str | None,
    rows: int,
    cols: int,
    login_shell: bool,
) -> str:
    """Orchard's init frame; a string command runs under `bash -c`, as Orchard's SDK does."""
    cmd = list(command) if isinstance(command, list | tuple) else ["bash", "-c", str(command)]
    frame = {"type": "init", "cmd": cmd, "env": env or {}, "cwd": cwd, "rows": rows, "cols": cols}
    return json.dumps({**frame, "login_shell": login_shell})


def _frame(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def _stdin_frame(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return _frame("stdin", data=base64.b64encode(raw).decode("ascii"))


def _signal_frame(signal_name: str) -> str:
    signal_number(signal_name)  # an unknown name fails here, not silently on the server
    return _frame("signal", sig=str(signal_name).upper().removeprefix("SIG"))


def _connect_error(exc: Exception, url: str) -> Exception:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status is not None:
        return SandboxError(f"the env service refused the terminal at {url}: HTTP {status}")
    if isinstance(exc, OSError | TimeoutError):
        return BackendUnavailable(f"cannot reach the env service's terminal at {url}: {exc}")
    return SandboxError(f"cannot open the terminal at {url}: {type(exc).__name__}: {exc}")


class _Frames:
    """What a server frame means for the handle: shared by the blocking and the async handle."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.refusal: Exception | None = None
        self._refused_with = ""

    def apply(self, raw: str | bytes, out: Any) -> bool:
        """Feed one frame; True when the session is over."""
        try:
            frame = json.loads(raw)
        except ValueError:
            return False
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "stdout":
            out.data(base64.b64decode(frame.get("data") or ""))
        elif kind == "ready":
            self.pid = frame.get("pid")
        elif kind == "exit":
            out.done(int(frame.get("code", -1)), None)
            return True
        elif kind == "error":
            message = str(frame.get("message") or "unknown error")
            if self.pid is None:  # a refusal: its close code, which follows, says which error it is
                self._refused_with = message
                return False
            out.done(None, message)
            return True
        return False

    def closed(self, code: int | None, reason: str, out: Any) -> None:
        """The server closed the connection (after a refusal, or without an exit frame)."""
        if self.pid is None:
            cls = _CLOSE_ERRORS.get(code or 0, SandboxError)
            why = self._refused_with or reason or "no reason given"
            self.refusal = cls(f"the terminal was refused: {why} (close code {code})")
        out.done(None, f"the connection closed (code {code}) before the process exited")


class ContainerProcess:
    """A process on a terminal in a remote sandbox (blocking API, safe to use from several threads)."""

    def __init__(
        self, url: str, init: str, headers: dict[str, str], timeout: float = CONNECT_TIMEOUT
    ) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        self._stack = contextlib.ExitStack()  # websockets wants its connection used as a context
        try:
            self._ws = self._stack.enter_context(
                connect(url, additional_headers=headers, open_timeout=timeout, max_size=MAX_FRAME)
            )
        except Exception as exc:
            raise _connect_error(exc, url) from exc
        self._out = OutputBuffer()
        self._frames = _Frames()
        self._started = threading.Event()
        self._lock = threading.Lock()
        with contextlib.suppress(ConnectionClosed):  # a refusal may close it first; the reader says why
            self._ws.send(init)
        self._reader = threading.Thread(target=self._read_frames, name="orchard-pty-client", daemon=True)
        self._reader.start()
        if not self._started.wait(timeout):
            self.close()
            raise SandboxError(f"the terminal at {url} did not start within {timeout:g}s")
        if self._frames.refusal is not None:
            self.close()
            raise self._frames.refusal

    def _read_frames(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for raw in self._ws:
                over = self._frames.apply(raw, self._out)
                if self._frames.pid is not None or over:
                    self._started.set()
                if over:
                    return
            self._frames.closed(self._ws.close_code, self._ws.close_reason or "", self._out)
        except ConnectionClosed as exc:
            self._frames.closed(exc.rcvd.code if exc.rcvd else None, str(exc), self._out)
        finally:
            self._out.done(None, "the connection ended")
            self._started.set()

    def _send(self, frame: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            with self._lock:
                self._ws.send(frame)
        except ConnectionClosed:
            if self._out.returncode is None:
                raise SandboxError("the terminal's connection is closed") from None

    # -- Orchard's ContainerProcess API ----------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The command's pid inside the sandbox."""
        return self._frames.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the command ended (negative: killed by that signal), else None."""
        return self._out.returncode

    def poll(self) -> int | None:
        """The exit code if the command exited, else None; never blocks."""
        return self._out.poll()

    def write_stdin(self, data: bytes | str) -> None:
        """Send keystrokes or text to the terminal (str is UTF-8 encoded)."""
        self._send(_stdin_frame(data))

    def read(self, timeout: float | None = None) -> bytes:
        """The next chunk of output; b"" once the command ended and all output was read."""
        return self._out.read(timeout)

    def read_all(self, timeout: float | None = None) -> bytes:
        """All output until the command exits; TimeoutError if it runs past `timeout`."""
        return self._out.read_all(timeout)

    def kill(self, signal_name: str = "TERM") -> None:
        """Signal the command by name ('TERM', 'KILL', 'INT'...); an unknown name raises here."""
        self._send(_signal_frame(signal_name))

    def resize(self, rows: int, cols: int) -> None:
        """Change the terminal's size, as a resized window would (the program gets SIGWINCH)."""
        self._send(_frame("resize", rows=int(rows), cols=int(cols)))

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; TimeoutError if still running after `timeout`, SandboxError if the session broke."""
        return self._out.wait(timeout)

    def close(self) -> None:
        """Close the connection; the service then kills what still runs on the terminal."""
        self._stack.close()
        self._reader.join(5)

    def __enter__(self) -> ContainerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _AsyncOutput:
    """OutputBuffer's reading calls for asyncio (one event loop)."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.exited = asyncio.Event()
        self.code: int | None = None
        self.error: str | None = None

    def data(self, chunk: bytes) -> None:
        if chunk:
            self.chunks.put_nowait(chunk)

    def done(self, code: int | None, error: str | None) -> None:
        if not self.exited.is_set():
            self.code, self.error = code, error
            self.exited.set()
            self.chunks.put_nowait(b"")


class AsyncContainerProcess:
    """The asyncio twin of ContainerProcess; create it with `await AsyncContainerProcess.connect(...)`."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws
        self._out = _AsyncOutput()
        self._frames = _Frames()
        self._started = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, url: str, init: str, headers: dict[str, str], timeout: float = CONNECT_TIMEOUT
    ) -> AsyncContainerProcess:
        """Open the terminal's websocket and send `init`; connection errors become Orchard errors."""
        from websockets.asyncio.client import connect

        try:
            ws = await connect(url, additional_headers=headers, open_timeout=timeout, max_size=MAX_FRAME)
        except Exception as exc:
            raise _connect_error(exc, url) from exc
        from websockets.exceptions import ConnectionClosed

        self = cls(ws)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(init)
        self._reader = asyncio.create_task(self._read_frames())
        try:
            await asyncio.wait_for(self._started.wait(), timeout)
        except TimeoutError:
            await self.close()
            raise SandboxError(f"the terminal at {url} did not start within {timeout:g}s") from None
        if self._frames.refusal is not None:
            await self.close()
            raise self._frames.refusal
        return self

    async def _read_frames(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self._ws:
                over = self._frames.apply(raw, self._out)
                if self._frames.pid is not None or over:
                    self._started.set()
                if over:
                    return
            self._frames.closed(self._ws.close_code, self._ws.close_reason or "", self._out)
        except ConnectionClosed as exc:
            self._frames.closed(exc.rcvd.code if exc.rcvd else None, str(exc), self._out)
        finally:
            self._out.done(None, "the connection ended")
            self._started.set()

    async def _send(self, frame: str) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(frame)
        except ConnectionClosed:
            if self.returncode is None:
                raise SandboxError("the terminal's connection is closed") from None

    @property
    def pid(self) -> int | None:
        """The command's pid inside the sandbox."""
        return self._frames.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the command exited, else None."""
        return self._out.code if self._out.exited.is_set() else None

    def poll(self) -> int | None:
        """The exit code if the command exited, else None; never blocks."""
        return self.returncode

    async def write_stdin(self, data: bytes | str) -> None:
        """As ContainerProcess.write_stdin."""
        await self._send(_stdin_frame(data))

    async def read(self, timeout: float | None = None) -> bytes:
        """As ContainerProcess.read: b"" once the command exited and all was read."""
        if self._out.exited.is_set() and self._out.chunks.empty():
            return b""
        try:
            chunk = await asyncio.wait_for(self._out.chunks.get(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no output within {timeout}s") from None
        if not chunk:
            self._out.chunks.put_nowait(b"")
        return chunk

    async def read_all(self, timeout: float | None = None) -> bytes:
        """As ContainerProcess.read_all."""

        async def everything() -> bytes:
            parts = []
            while chunk := await self.read():
                parts.append(chunk)
            return b"".join(parts)

        try:
            return await asyncio.wait_for(everything(), timeout)
        except TimeoutError:
            raise TimeoutError(f"the process did not exit within {timeout}s") from None

    async def kill(self, signal_name: str = "TERM") -> None:
        """As ContainerProcess.kill."""
        await self._send(_signal_frame(signal_name))

    async def resize(self, rows: int, cols: int) -> None:
        """As ContainerProcess.resize."""
        await self._send(_frame("resize", rows=int(rows), cols=int(cols)))

    async def wait(self, timeout: float | None = None) -> int:
        """The exit code (-1 if none came); SandboxError if the session broke, TimeoutError on `timeout`."""
        try:
            await asyncio.wait_for(self._out.exited.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"the process did not exit within {timeout}s") from None
        if self._out.error is not None:
            raise SandboxError(f"pty session failed: {self._out.error}")
        return -1 if self._out.code is None else self._out.code

    async def close(self) -> None:
        """Close the connection (the service kills what still runs) and let the reader task finish."""
        await self._ws.close()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)

    async def __aenter__(self) -> AsyncContainerProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
