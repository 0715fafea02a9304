"""One X display per sandbox: a jailed Xvfb that only that sandbox's apps and the host can reach.

The X server is started by the host, inside the sandbox's cgroups (its memory and pids count against the
sandbox's limits, and closing the sandbox kills it) and the sandbox's network namespace, under a bubblewrap
jail of its own (read-only system folders, a private /tmp, no capabilities). Two sockets come out of it:

- the abstract socket `@/tmp/.X11-unix/X0`, which exists only in the sandbox's network namespace: the apps
  in the sandbox connect there with `DISPLAY=:0`; no path in the sandbox's files is involved;
- `/tmp/.X11-unix/X0` inside the jail, bound from a fresh 0700 host folder the sandbox never sees: the host
  connects there. The host never opens a path the sandbox can change.

The host's connection is made impervious to server grabs (XTEST GrabControl), so an X client in the
sandbox that grabs the server (which makes every other client wait) cannot hang the host's screenshot or
input. The server itself is trusted code; a sandbox process cannot signal or stop it (other pid namespace).
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from orchard_envs.errors import BackendUnavailable, SandboxError

X_TIMEOUT = 30.0  # seconds one blocking send or receive on the host's X socket may take
START_TIMEOUT = 10.0
MAX_WINDOWS = 50
MAX_TITLE = 200
_CONNECT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Window:
    """A top-level window as the agent is told about it: root coordinates of its client area."""

    window_id: int
    app: str
    title: str
    x: int
    y: int
    width: int
    height: int
    focused: bool

    def line(self, index: int) -> str:
        """One line of the observation's window list."""
        focus = " focused" if self.focused else ""
        return (
            f'[{index}] {self.app} "{self.title}" x={self.x} y={self.y} '
            f"width={self.width} height={self.height}{focus}"
        )


def require_x() -> None:
    """Fail early, naming the packages, when the X server or the jail is missing."""
    for binary, package in (("Xvfb", "xvfb"), ("bwrap", "bubblewrap"), ("nsenter", "util-linux")):
        if shutil.which(binary) is None:
            raise BackendUnavailable(
                f"Desktop-v0 needs {binary}: apt-get install {package} (scripts/setup.sh)"
            )


def netns_member(root_pid: int) -> int:
    """A process under `root_pid` (the sandbox's launcher) that lives in the sandbox's network namespace."""
    mine = os.stat("/proc/self/ns/net").st_ino
    todo = [root_pid]
    while todo:
        pid = todo.pop(0)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino != mine:
                return pid
            for task in os.listdir(f"/proc/{pid}/task"):
                todo += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    raise SandboxError("the sandbox has no process in a network namespace of its own")


def jail_argv(socket_dir: Path, width: int, height: int, ready_fd: int, netns_fd: int) -> list[str]:
    """nsenter + bwrap + Xvfb: the server joins the sandbox's network namespace, nothing else of it."""
    argv = ["nsenter", f"--net=/proc/self/fd/{netns_fd}", "bwrap", "--unshare-all", "--share-net"]
    argv += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            argv += ["--symlink", str(path.readlink()), f"/{name}"]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), f"/{name}"]
    argv += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--tmpfs", "/tmp", "--bind", str(socket_dir), "/tmp/.X11-unix", "--clearenv"]
    argv += ["Xvfb", ":0", "-nolisten", "tcp", "-noreset", "-screen", "0", f"{width}x{height}x24"]
    return [*argv, "-displayfd", str(ready_fd)]


class XDisplay:
    """The X server of one sandbox and the host's Xlib connection to it."""

    def __init__(self, sandbox: Any, width: int = 1024, height: int = 768) -> None:
        require_x()
        self.sandbox, self.width, self.height = sandbox, width, height
        self.socket_dir = Path(tempfile.mkdtemp(prefix="orchard-x-"))  # 0700, host-only
        self.process: subprocess.Popen | None = None
        self.xlib: Any = None
        try:
            self._start()
            self.xlib = connect(self.socket_path)
        except BaseException:
            self.close()
            raise

    @property
    def socket_path(self) -> Path:
        """The host's way in: a socket in a folder only the host can see."""
        return self.socket_dir / "X0"

    def _start(self) -> None:
        netns = os.open(f"/proc/{netns_member(self.sandbox.process.pid)}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        ready_read, ready_write = os.pipe()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (kept open while Xvfb runs; closed in close)
        try:
            argv = jail_argv(self.socket_dir, self.width, self.height, ready_write, netns)
            script = self.sandbox.cgroups.enter_script() + 'exec "$@"'
            self.process = subprocess.Popen(
                ["sh", "-c", script, "sh", *argv],
                pass_fds=(netns, ready_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                start_new_session=True,
            )
        finally:
            os.close(netns)
            os.close(ready_write)
        self._ready_fd = ready_read  # kept open: Xvfb writes the number and its newline separately
        if not _read_line(ready_read, START_TIMEOUT):
            self._log.seek(0)
            tail = self._log.read()[-2000:].decode(errors="replace")
            raise SandboxError(f"Xvfb did not start (exit status {self.process.poll()}): {tail}")

    def alive(self) -> bool:
        """Whether the X server still runs."""
        return self.process is not None and self.process.poll() is None

    def screenshot(self) -> np.ndarray:
        """The whole screen as an H x W x 3 uint8 array (RGB)."""
        from Xlib import X

        image = self.xlib.screen().root.get_image(0, 0, self.width, self.height, X.ZPixmap, 0xFFFFFFFF)
        pixels = np.frombuffer(image.data, np.uint8)
        if pixels.size != self.width * self.height * 4:
            raise SandboxError(f"the X server sent a {pixels.size}-byte screenshot, not 32-bit pixels")
        return np.ascontiguousarray(pixels.reshape(self.height, self.width, 4)[:, :, 2::-1])

    def windows(self) -> list[Window]:
        """The window manager's client list (titles and sizes are the apps' own words: clipped)."""
        display = self.xlib
        root = display.screen().root
        listed = root.get_full_property(display.intern_atom("_NET_CLIENT_LIST"), 0)
        active = root.get_full_property(display.intern_atom("_NET_ACTIVE_WINDOW"), 0)
        focused = int(active.value[0]) if active is not None and len(active.value) else 0
        found = []
        for window_id in list(listed.value if listed is not None else [])[:MAX_WINDOWS]:
            with contextlib.suppress(Exception):  # a window may close while it is being read
                found.append(self._window(int(window_id), int(window_id) == focused))
        return found

    def _window(self, window_id: int, focused: bool) -> Window:
        display = self.xlib
        window = display.create_resource_object("window", window_id)
        name = window.get_full_property(display.intern_atom("_NET_WM_NAME"), 0)
        title = name.value.decode("utf-8", "replace") if name is not None else str(window.get_wm_name() or "")
        wm_class = window.get_wm_class() or ("", "")
        geometry = window.get_geometry()
        origin = window.translate_coords(display.screen().root, 0, 0)
        return Window(
            window_id,
            str(wm_class[-1])[:MAX_TITLE],
            title[:MAX_TITLE].replace("\n", " "),
            -int(origin.x),
            -int(origin.y),
            int(geometry.width),
            int(geometry.height),
            focused,
        )

    def close(self) -> None:
        """Drop the host's connection and stop the X server; safe to call twice."""
        if self.xlib is not None:
            with contextlib.suppress(Exception):
                self.xlib.close()
            self.xlib = None
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        if getattr(self, "_ready_fd", None) is not None:
            os.close(self._ready_fd)
            self._ready_fd = None
        if getattr(self, "_log", None) is not None:
            self._log.close()


def _read_line(fd: int, timeout: float) -> bytes:
    """Bytes from `fd` up to a newline, or what came before the timeout or end of file."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 16) if ready else b""
        if not chunk:
            break
        data += chunk
    return data.strip()


def connect(path: Path) -> Any:
    """An Xlib Display over the socket at `path` (python-xlib only knows /tmp/.X11-unix paths), immune to
    other clients' server grabs."""
    import Xlib.display
    import Xlib.support.unix_connect as unix_connect

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(X_TIMEOUT)
    sock.connect(str(path))
    with _CONNECT_LOCK:
        original = unix_connect.get_socket
        unix_connect.get_socket = lambda *args: sock
        try:
            display = Xlib.display.Display(":0")
        finally:
            unix_connect.get_socket = original
    display.xtest_grab_control(True)
    display.sync()
    return display
