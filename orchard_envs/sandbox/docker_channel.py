"""One `docker exec` attach stream as a shell.Channel: Docker's multiplexed frames, demultiplexed."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import socket
import struct
import time
from typing import Any

import docker.errors
import requests

from orchard_envs.sandbox import procs
from orchard_envs.sandbox.shell import STDERR, STDOUT, ChannelClosed

_HEADER = struct.Struct(">BxxxL")  # Docker's multiplexed stream: stream type, 3 pad bytes, length
_READ_CHUNK = 256 * 1024
_SEND_TIMEOUT = 30.0
DOCKER_ERRORS = (docker.errors.DockerException, requests.RequestException)


class ExecChannel:
    """One `docker exec` attach stream as a shell.Channel: stdin in, demultiplexed stdout/stderr out.

    Docker frames output as an 8-byte header (stream, 0, 0, 0, big-endian length) plus payload; frames
    may be split across socket reads, so bytes are buffered until a frame is complete.
    """

    def __init__(self, api: Any, exec_id: str, sock_io: Any) -> None:
        self.api = api
        self.exec_id = exec_id
        self._sock_io = sock_io  # keeps the HTTP response (and so the socket) alive
        self._sock: socket.socket = getattr(sock_io, "_sock", sock_io)
        self._sock.setblocking(False)
        self._readable = select.poll()  # poll, not select: a process may hold more than 1024 fds
        self._readable.register(self._sock, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(self._sock, select.POLLOUT)
        self._buffer = bytearray(_already_buffered(sock_io))
        self._eof = False
        self._closed = False
        self._pid = 0
        # Whether send() first looks for a shell that died: only where no other thread reads the stream
        # (a pty's reader thread polls it all the time, and one poll object cannot be polled twice).
        self.check_before_send = True

    @classmethod
    def open(
        cls,
        api: Any,
        container_id: str,
        argv: list[str],
        stdin: bool = False,
        workdir: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecChannel:
        """Create and attach a `docker exec` of `argv` in the container."""
        created = api.exec_create(
            container_id, argv, stdin=stdin, stdout=True, stderr=True, tty=False,
            workdir=workdir, environment=env,
        )
        return cls(api, created["Id"], api.exec_start(created["Id"], socket=True))

    # Channel protocol ------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write to the exec's stdin; ChannelClosed if the shell's stream already ended."""
        if self.check_before_send and self._readable.poll(0):  # cheap: notice a shell that died
            self._fill()
        if self._eof or self._closed:
            raise ChannelClosed("the shell's stream ended before this command was sent")
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view) :]
            except BlockingIOError:
                if not self._writable.poll(_SEND_TIMEOUT * 1000):
                    raise ChannelClosed("the shell stopped reading its input") from None
            except OSError as exc:
                raise ChannelClosed(f"the shell's stream is gone ({exc})") from None

    def recv(self, timeout: float) -> list[tuple[int, bytes]]:
        """Complete frames that arrive within `timeout`; ChannelClosed once the stream ended."""
        deadline = time.monotonic() + timeout
        while True:
            frames = self._frames()
            if frames:
                return frames
            if self._eof or self._closed:
                raise ChannelClosed("the process closed its output")
            remaining = deadline - time.monotonic()
            if self._readable.poll(max(0, math.ceil(remaining * 1000))):
                self._fill()
            elif remaining <= 0:
                return []

    def close_stdin(self) -> None:
        """End the process's stdin (Docker closes it on the exec's half-closed socket); output still flows."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Shut the stream down from the top, so no finaliser writes to a closed socket later."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        # Close from the top (requests response -> http.client reader -> socket), or the reader's
        # finaliser later flushes into an already-closed socket and complains.
        response = getattr(self._sock_io, "_response", None)
        for closable in (response, self._sock_io, self._sock):
            if closable is not None:
                with contextlib.suppress(OSError, ValueError):
                    closable.close()

    def kill(self) -> None:
        """SIGKILL the exec'd process and everything below it (e.g. a shell stuck in a builtin loop)."""
        pid = self.host_pid if self.running() else 0
        if pid:
            procs.kill_started_since(pid, 0.0)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # process state -----------------------------------------------------------------------------------
    @property
    def host_pid(self) -> int:
        """The exec'd process's pid on the host (0 if Docker doesn't report one yet)."""
        for _ in range(50):
            if self._pid:
                break
            with contextlib.suppress(*DOCKER_ERRORS):
                self._pid = int(self.api.exec_inspect(self.exec_id).get("Pid") or 0)
            if not self._pid:
                time.sleep(0.005)
        return self._pid

    def running(self) -> bool:
        """Whether Docker still reports the exec running; False when Docker cannot be asked."""
        try:
            return bool(self.api.exec_inspect(self.exec_id).get("Running"))
        except DOCKER_ERRORS:
            return False

    @property
    def exit_code(self) -> int | None:
        """The process's exit status once Docker has it (waits up to 2 s after the stream ends)."""
        deadline = time.monotonic() + 2.0
        while True:
            try:
                info = self.api.exec_inspect(self.exec_id)
            except DOCKER_ERRORS:
                return None
            if not info.get("Running") or time.monotonic() > deadline:
                code = info.get("ExitCode")
                return None if code is None else int(code)
            time.sleep(0.002)

    # framing -------------------------------------------------------------------------------------------
    def _fill(self) -> None:
        while True:
            try:
                chunk = self._sock.recv(_READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._eof = True
                return
            self._buffer += chunk

    def _frames(self) -> list[tuple[int, bytes]]:
        frames: list[tuple[int, bytes]] = []
        buf, pos = self._buffer, 0
        while len(buf) - pos >= _HEADER.size:
            kind, size = _HEADER.unpack_from(buf, pos)
            end = pos + _HEADER.size + size
            if len(buf) < end:
                break
            stream = STDERR if kind == STDERR else STDOUT
            payload = bytes(buf[pos + _HEADER.size : end])
            if frames and frames[-1][0] == stream:
                frames[-1] = (stream, frames[-1][1] + payload)
            else:
                frames.append((stream, payload))
            pos = end
        del buf[:pos]
        return frames


def _already_buffered(sock_io: Any) -> bytes:
    """Bytes http.client read past the 101 response headers into its buffer before we took the socket."""
    reader = sock_io
    for attribute in ("_response", "raw", "_fp", "fp"):  # requests -> urllib3 -> http.client -> reader
        reader = getattr(reader, attribute, None)
    if reader is None:
        return b""
    try:
        peeked = reader.peek()  # the socket is non-blocking by now: this never waits
        return reader.read(len(peeked)) if peeked else b""
    except (OSError, ValueError):
        return b""


