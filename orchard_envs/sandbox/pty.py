"""Processes on a pseudo-terminal inside a sandbox, for programs that need a tty (REPLs, pagers, ctrl-C).

The terminal is made inside the sandbox, never on the host: a fresh shell of the sandbox (the same
channel its one-shot commands use) `exec`s a small Python relay (`RELAY`) that opens a pty in the
sandbox's own devpts, forks the command onto it and relays bytes. The host only moves bytes over the
channel: stdin frames and control (resize, signals) as JSON lines in, raw terminal output out, and the
relay's status (the command's pid, its exit) as JSON lines on the channel's stderr. Signals are sent by
the relay inside the sandbox's pid namespace, so no host pid is ever taken from the sandbox.

`PtyProcess` has the shape of Orchard Env's `ContainerProcess` (`read`, `read_all`, `write_stdin`,
`kill`, `resize`, `wait`, `close`), and so has the client's handle of a remote pty.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchard_envs.errors import SandboxError
from orchard_envs.sandbox.shell import STDOUT, Channel, ChannelClosed, bash_quote

START_TIMEOUT = 15.0
CLOSE_GRACE = 5.0  # how long a closed pty's relay may take to exit before the host lets go
MAX_STATUS_LINE = 4096  # the relay's status lines are short; longer ones are noise from the sandbox
_NAMED = ("HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP", "WINCH")
SIGNALS = {name: int(getattr(signal, "SIG" + name)) for name in _NAMED}

# Runs inside the sandbox as `python3 -c RELAY CONFIG_JSON`: its stdin, stdout and stderr are the channel.
RELAY = r"""
import fcntl, json, os, select, signal, struct, sys, termios, time
cfg = json.loads(sys.argv[1])
def tell(**msg):
    os.write(2, (json.dumps(msg) + "\n").encode())
def resize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
try:
    os.chdir(cfg["cwd"])
except OSError as e:
    tell(error="cannot enter the working directory %s: %s" % (cfg["cwd"], e.strerror)); sys.exit(1)
master, slave = os.openpty()
resize(slave, cfg["rows"], cfg["cols"])
started_r, started_w = os.pipe()  # close-on-exec: EOF once the command runs (or failed to)
pid = os.fork()
if pid == 0:
    os.close(master); os.close(started_r); os.setsid(); fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)  # a background job's ignored ctrl-C must not reach the command
    for n in (0, 1, 2):
        os.dup2(slave, n)
    if slave > 2:
        os.close(slave)
    env = dict(os.environ); env.update(cfg["env"])
    try:
        os.execvpe(cfg["argv"][0], cfg["argv"], env)
    except OSError as e:
        os.write(2, ("%s: %s\n" % (cfg["argv"][0], e.strerror)).encode()); os._exit(127)
os.close(slave); os.close(started_w)
os.read(started_r, 1)  # so a signal sent after "ready" finds the command's own session and group
os.close(started_r)
tell(pid=pid)
def signal_all(sig):
    groups = {pid}
    try:
        groups.add(os.tcgetpgrp(master))
    except OSError:
        pass
    for group in groups - {0, 1, os.getpgrp()}:  # 0 would be the relay's own group: the sandbox's
        try:
            os.killpg(group, sig)
        except OSError:
            pass
def handle(line):
    msg = json.loads(line)
    if "in" in msg:
        data = memoryview(bytes.fromhex(msg["in"]))
        while data:
            data = data[os.write(master, data):]
    elif "resize" in msg:
        resize(master, *msg["resize"])
    elif "signal" in msg:
        signal_all(msg["signal"])
    elif "quit" in msg:
        signal_all(signal.SIGKILL); sys.exit(0)
def relay_output():  # one read of the terminal to stdout; False once its every writer is gone
    try:
        data = os.read(master, 65536)
    except OSError:
        return False
    if not data:
        return False
    while data:
        data = data[os.write(1, data):]
    return True
status, open_out, pending = None, True, b""
while status is None:
    ready, _, _ = select.select([0, master] if open_out else [0], [], [], 0.05)
    if master in ready:
        open_out = relay_output()
    if 0 in ready:
        chunk = os.read(0, 65536)
        if not chunk:
            signal_all(signal.SIGKILL); sys.exit(0)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            handle(line)
    done, st = os.waitpid(pid, os.WNOHANG)
    status = st if done else None
# The command ended: drain what it wrote (the kernel may still be moving it) until the terminal hangs
# up, or goes quiet (or 2 s pass) while a background job keeps it open.
until = time.monotonic() + 2
while open_out and time.monotonic() < until and select.select([master], [], [], 0.2)[0]:
    open_out = relay_output()
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
tell(exit=code)
"""


class Sink(Protocol):
    """Where a pty's output goes: the service forwards it to a websocket, a local caller buffers it."""

    def data(self, chunk: bytes) -> None:
        """A chunk of output."""

    def done(self, code: int | None, error: str | None) -> None:
        """The end: the exit code (None if unknown) and an error if the session broke."""


class OutputBuffer:
    """Buffered output and exit status with Orchard's ContainerProcess reading calls (thread-safe)."""

    def __init__(self) -> None:
        self._chunks: queue.Queue[bytes] = queue.Queue()
        self._exited = threading.Event()
        self._code: int | None = None
        self._error: str | None = None

    # -- the Sink side -----------------------------------------------------------------------------
    def data(self, chunk: bytes) -> None:
        """Buffer a chunk; empty chunks are dropped, as b"" means the end to readers."""
        if chunk:
            self._chunks.put(chunk)

    def done(self, code: int | None, error: str | None) -> None:
        """Record the exit once (later calls are ignored) and wake a blocked read."""
        if self._exited.is_set():
            return
        self._code, self._error = code, error
        self._exited.set()
        self._chunks.put(b"")  # wakes a blocked read

    # -- the reading side --------------------------------------------------------------------------
    @property
    def returncode(self) -> int | None:
        """The exit code once the process ended (negative: killed by that signal), else None."""
        return self._code if self._exited.is_set() else None

    def poll(self) -> int | None:
        """The exit code if the process ended, else None; never blocks."""
        return self.returncode

    def read(self, timeout: float | None = None) -> bytes:
        """The next chunk of output; b"" once the process ended and all output was read."""
        if self._exited.is_set() and self._chunks.empty():
            return b""
        try:
            chunk = self._chunks.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output within {timeout}s") from None
        if not chunk:
            self._chunks.put(b"")  # keep the end marker for the next reader
        return chunk

    def read_all(self, timeout: float | None = None) -> bytes:
        """All output until the process ends; TimeoutError if it has not ended within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        parts = []
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            chunk = self.read(left)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; TimeoutError if still running, SandboxError if the session broke."""
        if not self._exited.wait(timeout):
            raise TimeoutError(f"the process did not exit within {timeout}s")
        if self._error is not None:
            raise SandboxError(f"pty session failed: {self._error}")
        return -1 if self._code is None else self._code


@dataclass
class PtyRequest:
    """What to start: Orchard's init frame, less its transport."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = "/"
    rows: int = 24
    cols: int = 80

    def relay_command(self) -> str:
        """The shell line that replaces the shell with the pty relay, configured for this request."""
        env = {"TERM": "xterm-256color", **self.env}
        config = {"argv": self.argv, "env": env, "cwd": self.cwd, "rows": self.rows, "cols": self.cols}
        return f"exec python3 -c {bash_quote(RELAY)} {bash_quote(json.dumps(config))}\n"


class _StatusLines:
    """Splits the relay's stderr into JSON status messages, keeping a short tail of anything else."""

    def __init__(self) -> None:
        self.pending = b""
        self.noise = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        if len(self.pending) > MAX_STATUS_LINE:
            self.noise, self.pending = (self.noise + self.pending)[-MAX_STATUS_LINE:], b""
        found = []
        for line in lines:
            try:
                message = json.loads(line) if len(line) <= MAX_STATUS_LINE else None
            except ValueError:
                message = None
            if isinstance(message, dict):
                found.append(message)
            else:
                self.noise = (self.noise + line + b"\n")[-MAX_STATUS_LINE:]
        return found

    def text(self) -> str:
        return (self.noise + self.pending).decode(errors="replace").strip()


class PtyProcess:
    """A command on a terminal inside a sandbox; see the module docstring.

    Output goes to `sink` (default: an OutputBuffer, read through this object's `read`/`wait`).
    """

    def __init__(self, channel: Channel, request: PtyRequest, sink: Sink | None = None) -> None:
        self._channel = channel
        self._buffer = sink if sink is not None else OutputBuffer()
        self._lock = threading.Lock()  # one writer on the channel at a time
        self._status = _StatusLines()
        self._closed = False
        self._finished = False
        self._code: int | None = None
        self.pid: int | None = None
        try:
            channel.send(request.relay_command().encode())
            self.pid = self._await_start()
        except BaseException:
            channel.close()
            raise
        self._reader = threading.Thread(target=self._pump, name="orchard-pty", daemon=True)
        self._reader.start()

    # -- starting ----------------------------------------------------------------------------------
    def _take(self, chunks: list[tuple[int, bytes]]) -> None:
        """One batch from the channel: output to the sink, status lines into pid / exit code."""
        for stream, data in chunks:
            if stream == STDOUT:
                self._buffer.data(data)
                continue
            for message in self._status.feed(data):
                if self.pid is None and "error" in message:
                    raise SandboxError(f"the pty did not start: {message['error']}")
                if self.pid is None and isinstance(message.get("pid"), int):
                    self.pid = message["pid"]
                if isinstance(message.get("exit"), int):
                    self._code = message["exit"]

    def _await_start(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while self.pid is None:
            if time.monotonic() > deadline:
                raise SandboxError(f"the pty did not start within {START_TIMEOUT:.0f}s")
            try:
                self._take(self._channel.recv(0.1))
            except ChannelClosed:
                raise SandboxError(self._start_failure()) from None
        return self.pid

    def _start_failure(self) -> str:
        said = self._status.text()
        if "python3" in said and ("not found" in said or "No such file" in said):
            return f"a pty needs python3 inside the sandbox image, and it has none ({said})"
        return f"the pty did not start: {said or 'its shell exited at once'}"

    # -- output ------------------------------------------------------------------------------------
    def _pump(self) -> None:
        """Read until the relay's end of the channel (after its exit line, so no output is left behind).

        The only thread that reads and closes the channel, so no fd is closed under a reader.
        """
        error: str | None = None
        since: float | None = None
        try:
            while True:
                if self._closed or self._code is not None:  # the relay exits at once after either
                    since = since or time.monotonic()
                    if time.monotonic() - since > CLOSE_GRACE:
                        break
                self._take(self._channel.recv(0.2))
        except ChannelClosed:
            if self._code is None and not self._closed:
                said = self._status.text()
                error = "the process ended without an exit status" + (f": {said}" if said else "")
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._finished = True
                self._channel.close()
            self._buffer.done(self._code, error)

    # -- input and control -------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        with self._lock:
            if self._closed or self._finished:
                raise SandboxError("the pty is closed" if self._closed else "the process has exited")
            self._channel.send(json.dumps(message).encode() + b"\n")

    def write_stdin(self, data: bytes | str) -> None:
        """Type `data` into the terminal (b"\\x03" is ctrl-C, as on a keyboard)."""
        raw = data.encode() if isinstance(data, str) else data
        if raw:
            self._send({"in": raw.hex()})

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size; the foreground program gets SIGWINCH."""
        self._send({"resize": [_dimension(rows), _dimension(cols)]})

    def kill(self, signal_name: str = "TERM") -> None:
        """Signal the command's process group and the terminal's foreground group."""
        self._send({"signal": signal_number(signal_name)})

    def close(self) -> None:
        """End the session: the relay kills what runs on the terminal. Safe to call twice.

        `wait()` then answers the exit code if the command had ended, else -1 (as Orchard's SDK).
        """
        with self._lock:
            if self._closed or self._finished:
                self._closed = True
                return
            self._closed = True
            with contextlib.suppress(SandboxError):
                self._channel.send(b'{"quit": 1}\n')

    def __enter__(self) -> PtyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading (when the sink is the built-in buffer) --------------------------------------------
    def _own_buffer(self) -> OutputBuffer:
        if not isinstance(self._buffer, OutputBuffer):
            raise SandboxError("this pty's output goes to a sink; read it there")
        return self._buffer

    @property
    def returncode(self) -> int | None:
        """As OutputBuffer.returncode."""
        return self._own_buffer().returncode

    def poll(self) -> int | None:
        """As OutputBuffer.poll."""
        return self._own_buffer().poll()

    def read(self, timeout: float | None = None) -> bytes:
        """As OutputBuffer.read; only for a process started without a sink of its own."""
        return self._own_buffer().read(timeout)

    def read_all(self, timeout: float | None = None) -> bytes:
        """As OutputBuffer.read_all."""
        return self._own_buffer().read_all(timeout)

    def wait(self, timeout: float | None = None) -> int:
        """As OutputBuffer.wait."""
        return self._own_buffer().wait(timeout)


def _dimension(value: int) -> int:
    number = int(value)
    if not 1 <= number <= 10000:
        raise SandboxError(f"a terminal dimension must be between 1 and 10000, not {value}")
    return number


def signal_number(name: str | int) -> int:
    """Orchard names signals as TERM, KILL, INT, HUP, QUIT (SIG prefix and numbers accepted too)."""
    if isinstance(name, int):
        return name
    key = str(name).upper().removeprefix("SIG")
    if key.isdigit():
        return int(key)
    if key not in SIGNALS:
        raise SandboxError(f"unknown signal {name!r}; known: {', '.join(SIGNALS)}")
    return SIGNALS[key]


def open_pty(
    sandbox: Any,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    rows: int = 24,
    cols: int = 80,
    sink: Sink | None = None,
) -> PtyProcess:
    """Start `argv` on a terminal inside `sandbox` (a local or docker sandbox)."""
    if not argv or not all(isinstance(part, str) for part in argv):
        raise SandboxError("a pty command is a non-empty list of strings, e.g. ['bash']")
    make = getattr(sandbox, "shell_channel", None)
    if make is None:
        raise SandboxError(f"the {sandbox.backend_name} backend has no pty (local, docker and remote have)")
    request = PtyRequest(
        list(argv), dict(env or {}), sandbox.abspath(cwd or "."), _dimension(rows), _dimension(cols)
    )
    return PtyProcess(make(), request, sink)
