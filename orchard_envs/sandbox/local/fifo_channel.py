"""Shells inside a running bubblewrap sandbox, reached through FIFOs in its state directory.

The sandbox's main process is a tiny bash broker: it reads a name on a control FIFO and starts
`bash` with stdin/stdout/stderr on three FIFOs of that name. Every shell (the persistent session and
each one-shot exec) thus shares the sandbox's namespaces, cgroups and limits without a new bwrap.

The sandbox sees the control folder read-only, so it cannot swap a FIFO for a link or a file; the
host still opens every FIFO relative to the folder's fd, without following links, and only once
`fstat` says it is a FIFO (see `open_fifo`), so a folder someone could write would not be trusted.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import threading
import uuid
from pathlib import Path

from orchard_envs.errors import SandboxError
from orchard_envs.sandbox import procs
from orchard_envs.sandbox.shell import STDERR, STDOUT, ChannelClosed

CONTROL = "control"
SANDBOX_CTL_DIR = "/.orchard"
OPEN_TIMEOUT = 10.0

BROKER = f"""exec 3<>{SANDBOX_CTL_DIR}/{CONTROL}
while read -r name <&3; do
  case "$name" in ''|*[!A-Za-z0-9_-]*) continue ;; esac
  bash --noprofile --norc >{SANDBOX_CTL_DIR}/"$name".out 2>{SANDBOX_CTL_DIR}/"$name".err \
    <{SANDBOX_CTL_DIR}/"$name".in 3<&- &
done
"""


def make_control(ctl_dir: Path) -> None:
    """Create the control FIFO through which the sandbox's broker is asked for new shells."""
    os.mkfifo(ctl_dir / CONTROL, 0o600)


def open_folder(ctl_dir: Path) -> int:
    """An O_PATH fd of the control folder, the anchor every FIFO is opened relative to."""
    return os.open(ctl_dir, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def pin_fifo(folder: int, name: str) -> int:
    """An O_PATH fd of the FIFO `name` (a link is not followed); anything else there is refused."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise SandboxError(f"{name} in the sandbox's control folder is not a FIFO; refusing to open it")
    return fd


def reopen(pinned: int, flags: int) -> int:
    """Open the very inode `pinned` refers to (through /proc/self/fd, so no path is walked again)."""
    return os.open(f"/proc/self/fd/{pinned}", flags | os.O_CLOEXEC)


def open_fifo(folder: int, name: str, flags: int) -> int:
    """Open the FIFO `name` under `folder` without following links (pin, then reopen that inode)."""
    pinned = pin_fifo(folder, name)
    try:
        return reopen(pinned, flags)
    finally:
        os.close(pinned)


class FifoChannel:
    """One bash in the sandbox; implements shell.Channel."""

    def __init__(self, ctl_dir: Path, sandbox_root_pid: int) -> None:
        self.root_pid = sandbox_root_pid
        self.name = "s" + uuid.uuid4().hex[:12]
        names = [f"{self.name}.{s}" for s in ("out", "err", "in")]
        self.nspid: int | None = None
        self._fds: dict[int, int] = {}
        folder = open_folder(ctl_dir)
        pinned: list[int] = []
        try:
            for name in names:
                os.mkfifo(name, 0o600, dir_fd=folder)
                pinned.append(pin_fifo(folder, name))
            _request_shell(folder, self.name)
            # Same order as the broker's redirections (out, err, in), so the blocking opens pair up.
            out = _open_or_give_up(pinned[0], os.O_RDONLY)
            err = _open_or_give_up(pinned[1], os.O_RDONLY)
            self._in = _open_or_give_up(pinned[2], os.O_WRONLY)
        finally:
            for fd in pinned:
                os.close(fd)
            for name in names:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=folder)
            os.close(folder)
        for fd in (out, err):
            os.set_blocking(fd, False)
        self._fds = {out: STDOUT, err: STDERR}
        self._poll = select.poll()
        for fd in self._fds:
            self._poll.register(fd, select.POLLIN | select.POLLHUP)

    def send(self, data: bytes) -> None:
        """Write to the shell's stdin; ChannelClosed once the shell exited."""
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._in, view) :]
        except (BrokenPipeError, OSError) as exc:
            raise ChannelClosed(f"shell exited: {exc}") from exc

    def recv(self, timeout: float) -> list[tuple[int, bytes]]:
        """As shell.Channel.recv, over the stdout and stderr FIFOs."""
        if not self._fds:
            raise ChannelClosed("shell exited")
        chunks: list[tuple[int, bytes]] = []
        for fd, _ in self._poll.poll(timeout * 1000):
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if data:
                chunks.append((self._fds[fd], data))
            else:
                self._poll.unregister(fd)
                os.close(fd)
                del self._fds[fd]
        if not chunks and not self._fds:
            raise ChannelClosed("shell exited")
        return chunks

    def host_pid(self) -> int | None:
        """The shell's pid on the host (found from its pid in the sandbox), or None if unknown or gone."""
        if self.nspid is None:
            return None
        return procs.find_by_nspid(self.root_pid, self.nspid)

    def kill(self) -> None:
        """SIGKILL the shell itself (it is stuck in a builtin loop)."""
        pid = self.host_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Close every FIFO end; safe to call twice."""
        for fd in [*self._fds, getattr(self, "_in", None)]:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fds = {}
        self._in = None


def _request_shell(folder: int, name: str) -> None:
    try:  # the broker holds the control FIFO open; if nobody reads it, the sandbox is gone
        fd = open_fifo(folder, CONTROL, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise SandboxError(f"the sandbox is not running (it may have passed its TTL): {exc}") from exc
    try:
        os.write(fd, name.encode() + b"\n")
    finally:
        os.close(fd)


def _open_or_give_up(pinned: int, flags: int) -> int:
    """Open a FIFO end, which blocks until the peer opens the other end; give up if it never does."""
    result: dict[str, int] = {}

    def opener() -> None:
        with contextlib.suppress(OSError):
            result["fd"] = reopen(pinned, flags)

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    thread.join(OPEN_TIMEOUT)
    if thread.is_alive():  # unblock the thread by opening both ends ourselves, then fail
        with contextlib.suppress(OSError):
            os.close(reopen(pinned, os.O_RDWR | os.O_NONBLOCK))
        thread.join(1)
        if "fd" in result:
            os.close(result["fd"])
        raise SandboxError("the sandbox did not start a shell in time; it may have died (TTL or OOM)")
    if "fd" not in result:
        raise SandboxError("the sandbox's shell FIFO could not be opened")
    return result["fd"]
