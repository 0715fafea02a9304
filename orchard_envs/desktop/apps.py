"""The applications of a desktop episode, started inside its sandbox, and the session that holds them.

`DesktopSession` is one episode's desktop: a fresh sandbox (network off, files only in the sandbox), its
X display (see display.py) and the window manager, with the apps a task's config launches. Apps start as
sandbox processes with `DISPLAY=:0` (the display's abstract socket in the sandbox's network namespace).
The terminal is `stterm` (suckless st): xterm refuses to start as uid 0 without CAP_SETGID, which is what
a local sandbox's processes are.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchard_envs.desktop.display import Window, XDisplay
from orchard_envs.errors import ConfigError, SandboxError, unknown_name
from orchard_envs.sandbox.spec import SandboxSpec

FONTS_CONF = """<?xml version="1.0"?>
<fontconfig><dir>/usr/share/fonts</dir><cachedir>/tmp/.fontconfig</cachedir>
<alias><family>monospace</family><prefer><family>DejaVu Sans Mono</family></prefer></alias>
<alias><family>sans-serif</family><prefer><family>DejaVu Sans</family></prefer></alias></fontconfig>
"""
# GTK apps blink their text cursor: a screenshot would then depend on when it is taken
GTK_SETTINGS = "[Settings]\ngtk-cursor-blink = false\n"
SESSION_ENV = {
    "DISPLAY": ":0",
    "FONTCONFIG_FILE": "/root/.orchard-fonts.conf",  # the sandbox's /etc has no fonts/ folder
    "NO_AT_BRIDGE": "1",  # no session bus in the sandbox: AT-SPI would only time out
    "GTK_THEME": "Adwaita",
    "SHELL": "/bin/bash",
    "TERM": "xterm-256color",
}


@dataclass(frozen=True)
class App:
    """A desktop application: how to start it and how to recognise its windows (WM_CLASS)."""

    argv: tuple[str, ...]
    wm_class: str


APPS: dict[str, App] = {
    "mousepad": App(("mousepad", "--disable-server"), "Mousepad"),
    "terminal": App(
        ("stterm", "-f", "DejaVu Sans Mono:size=12", "-t", "Terminal", "-g", "90x24"), "st-256color"
    ),
    "gnumeric": App(("gnumeric", "--no-splash"), "Gnumeric"),
    "pcmanfm": App(("pcmanfm", "--no-desktop"), "Pcmanfm"),
}
OPENERS = {".txt": "mousepad", ".md": "mousepad", ".gnumeric": "gnumeric", ".csv": "gnumeric"}
WINDOW_TIMEOUT = 20.0
WM_READY = "/tmp/.orchard-wm-ready"
# Where openbox puts each app's window (x, y, width, height of the frame on a 1024x768 screen): a fixed
# layout, the same every episode, so a plan (the oracle's, a model's) can rely on it.
LAYOUT = {
    "Mousepad": (0, 0, 500, 700),
    "Gnumeric": (510, 0, 510, 700),
    "st-256color": (0, 0, 700, 500),
    "Pcmanfm": (200, 0, 700, 600),
}


def openbox_rc() -> str:
    """openbox's configuration: the fixed layout above, nothing else changed."""
    rules = "".join(
        f'<application class="{name}"><position force="yes"><x>{x}</x><y>{y}</y></position>'
        f"<size><width>{w}</width><height>{h}</height></size></application>"
        for name, (x, y, w, h) in LAYOUT.items()
    )
    return (
        f'<?xml version="1.0"?><openbox_config xmlns="http://openbox.org/3.4/rc"><applications>{rules}'
        "</applications></openbox_config>\n"
    )


def desktop_spec(memory: str = "2g") -> SandboxSpec:
    """The sandbox a desktop episode gets: network off, the session's environment, home in /root."""
    return SandboxSpec(memory=memory, pids=1024, cpu=None, network=False, env=SESSION_ENV, ttl=3600.0)


class DesktopSession:
    """One episode's desktop: sandbox + X display + window manager + the apps the task starts."""

    def __init__(self, backend: Any, width: int = 1024, height: int = 768, memory: str = "2g") -> None:
        self.sandbox = backend.create(desktop_spec(memory))
        self.display: XDisplay | None = None
        try:
            self.sandbox.write_file("/root/.orchard-fonts.conf", FONTS_CONF)
            self.sandbox.write_file("/root/.orchard-openbox.xml", openbox_rc())
            self.sandbox.write_file("/root/.config/gtk-3.0/settings.ini", GTK_SETTINGS)
            self.display = XDisplay(self.sandbox, width, height)
            # --startup runs once openbox manages windows (its root properties come earlier than that)
            self.start(
                ["openbox", "--config-file", "/root/.orchard-openbox.xml", "--startup", f"touch {WM_READY}"],
                "openbox",
            )
            self.wait_until(self._wm_ready, "the window manager")
        except BaseException:
            self.close()
            raise

    def _wm_ready(self) -> bool:
        try:
            self.sandbox.read_file(WM_READY)
        except SandboxError:
            return False
        return True

    def start(self, argv: list[str] | str, name: str = "app") -> None:
        """Start a program in the sandbox in the background, its output in /tmp/.orchard-NAME.log."""
        command = argv if isinstance(argv, str) else shlex.join(argv)
        log = f"/tmp/.orchard-{posixpath.basename(name)}.log"
        result = self.sandbox.exec(f"(cd /workspace && setsid {command} >{log} 2>&1 &)", session=False)
        if result.exit_code != 0:
            raise SandboxError(f"could not start {name}: {result.output.strip()}")

    def launch(self, app: str, *args: str, wait: bool = True) -> None:
        """Start a known app (see APPS) with arguments; wait for a new window of its class."""
        if app not in APPS:
            raise unknown_name("desktop app", app, APPS)
        spec = APPS[app]
        before = {w.window_id for w in self.windows()}
        self.start([*spec.argv, *args], app)
        if wait:
            try:
                self.wait_until(
                    lambda: any(w.app == spec.wm_class and w.window_id not in before for w in self.windows()),
                    f"a {app} window",
                )
            except SandboxError as exc:
                raise SandboxError(f"{exc}; its log ends: {self._log_tail(app)}") from None

    def _log_tail(self, name: str) -> str:
        try:
            return self.sandbox.read_file(f"/tmp/.orchard-{name}.log")[-500:].decode(errors="replace")
        except SandboxError:
            return "(no log)"

    def open(self, path: str) -> None:
        """OSWorld's `open`: the file with the app its extension names, a folder with the file manager."""
        absolute = self.sandbox.abspath(path)
        if self.sandbox.exec(f"test -d {shlex.quote(absolute)}", session=False).exit_code == 0:
            self.launch("pcmanfm", absolute)
            return
        extension = posixpath.splitext(absolute)[1].lower()
        if extension not in OPENERS:
            raise ConfigError(
                f"no app opens {extension or 'extensionless'} files; known: {', '.join(OPENERS)}"
            )
        self.launch(OPENERS[extension], absolute)

    def windows(self) -> list[Window]:
        """The display's windows, as the agent sees them."""
        assert self.display is not None
        return self.display.windows()

    def wait_until(self, ready: Callable[[], bool], what: str, timeout: float = WINDOW_TIMEOUT) -> None:
        """Poll `ready` until true; a SandboxError naming `what` if it does not come within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.05)
        raise SandboxError(f"{what} did not appear within {timeout:g} s")

    def close(self) -> None:
        """Stop the display and the sandbox (every app with it)."""
        if self.display is not None:
            self.display.close()
            self.display = None
        self.sandbox.close()
