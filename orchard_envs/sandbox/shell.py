"""A persistent bash session driven over a byte channel, the fast path for agent commands.

Each command is sent as `eval $'...'` followed by a sentinel line carrying a per-command nonce, the
exit status and `$PWD`; the sentinel is echoed on stderr too, so both streams are known to be complete.
The channel (pipes, FIFOs, a Docker attach socket) only moves bytes; this module owns the protocol.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from orchard_envs.errors import ConfigError, SandboxError
from orchard_envs.sandbox.spec import ExecResult, SessionState

STDOUT, STDERR = 1, 2
TIMEOUT_EXIT_CODE = 124
KILL_GRACE_SECONDS = 2.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ChannelClosed(SandboxError):
    """The shell on the other end of the channel exited."""


class Channel(Protocol):
    """A bidirectional byte pipe to a bash process reading commands on its stdin."""

    def send(self, data: bytes) -> None:
        """Write bytes to the shell's stdin; ChannelClosed if it exited."""

    def recv(self, timeout: float) -> list[tuple[int, bytes]]:
        """Chunks as (STDOUT|STDERR, bytes) that arrived within `timeout`; raises ChannelClosed at EOF."""
        ...

    def close(self) -> None:
        """Release the pipe; safe to call twice."""

    # Optional: `kill()` SIGKILLs the shell itself; `exit_code` is the shell's status once it ended.


def bash_quote(text: str) -> str:
    """ANSI-C quote any text so bash reads it back byte for byte, newlines and quotes included."""
    out = ["$'"]
    for ch in text:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif code < 32 or code == 127:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


class CappedBuffer:
    """Keeps the head and the tail of a stream up to `cap` bytes and counts what it dropped."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap - cap // 4
        self.tail_cap = cap // 4
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        """Count `data`, keeping what fits in the head and the latest bytes of the tail."""
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_cap:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def truncated(self) -> bool:
        """Whether bytes were dropped between head and tail."""
        return self.total > len(self.head) + min(len(self.tail), self.tail_cap)

    def text(self) -> str:
        """The kept bytes as text, with a marker saying how much was omitted when truncated."""
        tail = bytes(self.tail[-self.tail_cap :]) if self.tail_cap else b""
        if not self.truncated:
            return (bytes(self.head) + tail).decode("utf-8", errors="replace")
        omitted = self.total - len(self.head) - len(tail)
        marker = f"\n[... output truncated: {omitted} bytes omitted of {self.total} ...]\n"
        return bytes(self.head).decode("utf-8", errors="replace") + marker + tail.decode(
            "utf-8", errors="replace"
        )


class _MarkerStream:
    """Feeds a stream into a CappedBuffer until a marker line appears, without ever missing a split marker."""

    def __init__(self, marker: bytes, cap: int) -> None:
        self.marker = marker
        self.buffer = CappedBuffer(cap)
        self.pending = bytearray()
        self.line: bytes | None = None  # the marker line's payload once complete

    def feed(self, data: bytes) -> None:
        if self.line is not None:
            return  # output after the marker belongs to background jobs; drop it
        self.pending += data
        at = self.pending.find(self.marker)
        if at < 0:
            keep = len(self.marker) - 1
            if len(self.pending) > keep:
                self.buffer.feed(bytes(self.pending[: len(self.pending) - keep]))
                del self.pending[: len(self.pending) - keep]
            return
        end = self.pending.find(b"\n", at)
        if end < 0:
            if at:
                self.buffer.feed(bytes(self.pending[:at]))
                del self.pending[:at]
            return
        self.buffer.feed(bytes(self.pending[:at]))
        self.line = bytes(self.pending[at + len(self.marker) : end])
        self.pending.clear()

    def flush(self) -> None:
        """On timeout or EOF: whatever arrived is output."""
        if self.line is None and self.pending:
            self.buffer.feed(bytes(self.pending))
            self.pending.clear()


class ShellSession:
    """Runs commands one at a time in one long-lived bash over `channel`.

    `run` raises ChannelClosed only when the shell was already gone, so the command never ran and
    the owner may retry it in a new shell; a shell that dies during a command ends `run` normally.

    `kill_command(since)` must kill every process the current command started (its process tree);
    it is called on timeout. If bash itself is stuck (a builtin loop), the session is declared dead and
    `alive` turns False; the owner then starts a new one in `cwd`.
    """

    def __init__(
        self,
        channel: Channel,
        max_output: int = 1024 * 1024,
        kill_command: Callable[[float], None] | None = None,
        cwd: str = "/",
    ) -> None:
        self.channel = channel
        self.max_output = max_output
        self.kill_command = kill_command
        self.cwd = cwd
        self.alive = True

    def run(
        self,
        command: str,
        timeout: float | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ExecResult:
        """One command in the session (cwd, env for this call only); on timeout its processes are killed."""
        if not self.alive:
            raise ChannelClosed("the shell session has ended")
        marker = b"\x1eORCHARD" + secrets.token_hex(8).encode() + b" "
        script = self._script(command, cwd, env, marker.decode()).encode()
        start = time.monotonic()
        boot_start = time.clock_gettime(time.CLOCK_BOOTTIME)
        out, err = _MarkerStream(marker, self.max_output), _MarkerStream(marker, self.max_output)
        streams = {STDOUT: out, STDERR: err}
        deadline = None if timeout is None else start + timeout
        timed_out = False
        try:
            self.channel.send(script)
        except ChannelClosed:  # the shell died between commands: this one never ran
            self.alive = False
            raise
        try:
            while out.line is None or err.line is None:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    if timed_out:  # the grace period after killing passed: bash itself is stuck
                        self.abandon()
                        break
                    timed_out = True
                    if self.kill_command is not None:
                        self.kill_command(boot_start)
                    deadline = now + KILL_GRACE_SECONDS
                wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - now))
                for stream, chunk in self.channel.recv(wait):
                    streams[stream].feed(chunk)
        except ChannelClosed:
            self.alive = False
        out.flush()
        err.flush()
        exit_code = TIMEOUT_EXIT_CODE if timed_out else self._parse_status(out.line)
        return ExecResult(
            exit_code=exit_code,
            stdout=out.buffer.text(),
            stderr=err.buffer.text(),
            duration=time.monotonic() - start,
            timed_out=timed_out,
            truncated=out.buffer.truncated or err.buffer.truncated,
        )

    def _parse_status(self, line: bytes | None) -> int:
        if line is None:  # bash died without reporting (killed)
            code = getattr(self.channel, "exit_code", None)
            return 137 if code is None else code
        status, _, rest = line.decode("utf-8", errors="replace").partition(" ")
        if rest[1:]:
            self.cwd = rest[1:]
        if rest[:1] == "E":  # the command ran `exit`: this shell is gone
            self.close()
        return int(status)

    @staticmethod
    def _script(command: str, cwd: str | None, env: dict[str, str] | None, marker: str) -> str:
        body = f"eval {bash_quote(command)}"
        bad = [key for key in env or {} if not _ENV_NAME.match(key)]
        if bad:
            raise ConfigError(f"invalid environment variable name(s) {bad}: use letters, digits and _")
        if cwd or env:
            prefix = "".join(f"export {k}={bash_quote(v)}; " for k, v in (env or {}).items())
            if cwd:
                prefix = f"cd {bash_quote(cwd)} && " + prefix
            body = f"( {prefix}{body} )"
        mark = bash_quote(marker)

        def report(status: str, how: str) -> str:
            return f"printf '%s%d {how}%s\\n' {mark} \"{status}\" \"$PWD\"; printf '%s\\n' {mark} >&2"

        # The EXIT trap reports the status when the command runs `exit`, which ends this shell ('E').
        return (
            f"trap {bash_quote(report('$?', 'E'))} EXIT\n"
            f"{body} </dev/null\n"
            f"__orchard_s=$?; trap - EXIT; {report('$__orchard_s', 'R')}\n"
        )

    def state(self) -> SessionState:
        """The session's cwd and exports, for fork/snapshot."""
        result = self.run("export -p", timeout=10)
        return SessionState(cwd=self.cwd, exports=result.stdout)

    def abandon(self) -> None:
        """Kill the shell itself (channels that can, do) and close: used when bash is stuck."""
        kill = getattr(self.channel, "kill", None)
        if kill is not None:
            kill()
        self.close()

    def close(self) -> None:
        """End the session; later runs raise ChannelClosed."""
        self.alive = False
        self.channel.close()
