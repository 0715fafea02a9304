"""Attacks on the desktop layer: the X socket, a server grab, and OSWorld code strings that try to escape.

Each runs the attack for real (an X client inside the sandbox, code strings through the runner)."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import require

from orchard_envs.desktop import restricted
from orchard_envs.desktop.apps import DesktopSession
from orchard_envs.envs.tools import ToolCall
from orchard_envs.errors import SandboxFileNotFound

# An X client in plain python3 (the sandbox has no Xlib): connect, then GrabServer and hold it.
GRAB = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect("\0/tmp/.X11-unix/X0")
s.sendall(struct.pack("<BxHHHHxx", 0x6C, 11, 0, 0, 0))
head = s.recv(8)
s.recv(struct.unpack("<HHHH", head)[3] * 4)
s.sendall(struct.pack("<BxH", 36, 1))  # GrabServer
print("grabbed", flush=True)
time.sleep(float(sys.argv[1]))
"""
REACH = r"""
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("\0/tmp/.X11-unix/X0")
    print("connected")
except OSError as exc:
    print("refused", exc.errno)
"""


@pytest.fixture
def session(local_backend):
    require(shutil.which("Xvfb") is not None and shutil.which("openbox") is not None, "Xvfb/openbox missing")
    desktop = DesktopSession(local_backend)
    yield desktop
    desktop.close()


def test_a_planted_x11_folder_link_leads_the_host_nowhere(session, local_backend, tmp_path):
    """The naive way in (the server makes its socket under the sandbox's /tmp) follows a link the sandbox
    planted there to a host folder. Here the display's sockets live in the sandbox's network namespace and
    a host-only folder, so a link in the sandbox's /tmp is never touched."""
    target = tmp_path / "host-folder"
    target.mkdir()
    sandbox = local_backend.create(session.sandbox.spec)
    try:
        sandbox.exec(f"ln -s {target} /tmp/.X11-unix", session=False)
        from orchard_envs.desktop.display import XDisplay

        display = XDisplay(sandbox)
        try:
            assert list(target.iterdir()) == []  # nothing was made (or chmodded) through the link
            assert display.screenshot().shape == (768, 1024, 3)
            seen = sandbox.exec(f"ls {display.socket_dir} 2>&1; python3 -c '{REACH}'", session=False).output
            assert "No such file" in seen and "connected" in seen  # no host folder; its own display only
        finally:
            display.close()
    finally:
        sandbox.close()


def test_another_sandbox_cannot_reach_this_display(session, local_backend):
    """The abstract socket exists only in this sandbox's network namespace: episode B cannot screenshot
    or type into episode A."""
    other = local_backend.create(session.sandbox.spec)
    try:
        assert "refused" in other.exec(f"python3 -c '{REACH}'", session=False).stdout
    finally:
        other.close()


def _read_or_empty(session, path: str) -> bytes:
    """A file the sandbox is about to create (a background program's log): empty until it exists."""
    try:
        return session.sandbox.read_file(path)
    except SandboxFileNotFound:
        return b""


def test_a_server_grab_from_inside_the_sandbox_does_not_hang_the_host(session):
    """GrabServer makes every other client wait; the host's connection is impervious (XTEST GrabControl),
    so screenshots, the window list and input still work while the grab is held. Without it the host
    blocks until the grabber lets go (here: 600 s); the thread's join is only a hang guard."""
    session.sandbox.write_file("/tmp/grab.py", GRAB)
    session.start(["python3", "/tmp/grab.py", "600"], "grab")
    session.wait_until(lambda: b"grabbed" in _read_or_empty(session, "/tmp/.orchard-grab.log"), "the grab")
    time.sleep(0.2)
    display = session.display
    assert display is not None
    from orchard_envs.desktop import actions

    results: list[object] = []

    def use_the_display() -> None:
        results.append(display.screenshot().shape)
        results.append(len(display.windows()))
        actions.perform(display, ToolCall("move_to", {"x": 10, "y": 10}))
        results.append("moved")

    worker = threading.Thread(target=use_the_display, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert results == [(768, 1024, 3), 0, "moved"], results
    session.close()  # kills the grabber with the sandbox


ESCAPES = [
    "import os\nos.system('touch {canary}')",
    "__import__('os').system('touch {canary}')",
    "from os import system\nsystem('touch {canary}')",
    "pyautogui.os.system('touch {canary}')",
    "pyautogui.click.__globals__['os'].system('touch {canary}')",
    "().__class__.__bases__[0].__subclasses__()",
    "open('{canary}', 'w').write('x')",
    "eval(\"__import__('os').system('touch {canary}')\")",
    "exec('import os')",
    "getattr(pyautogui, 'o' + 's').system('touch {canary}')",
    "g = (x for x in [1])\ng.gi_frame.f_globals['__builtins__']",
    "'{{0.__class__}}'.format(1)",
    "import subprocess\nsubprocess.run(['touch', '{canary}'])",
    "type(pyautogui)",
    "[c for c in ().__class__.__mro__]",
    "import time as os",
]


@pytest.mark.parametrize("escape", ESCAPES)
def test_classic_escapes_from_the_code_string_are_refused(session, escape, tmp_path):
    canary = tmp_path / "canary"
    code = escape.format(canary=canary)
    assert session.display is not None
    try:
        observation = restricted.run_code(session.display.socket_dir, code)
    except restricted.CodeRefused:
        observation = "refused"
    assert observation == "refused" or observation.startswith("Error"), observation
    assert not canary.exists()


def test_the_checker_alone_refuses_every_escape():
    """The first layer, without any runtime: each escape fails the static check."""
    for escape in ESCAPES:
        with pytest.raises(restricted.CodeRefused):
            restricted.check_code(escape.format(canary="/tmp/x"))
    restricted.check_code("import pyautogui\nimport time\npyautogui.click(1, 2)\ntime.sleep(0.1)")


def test_the_runners_jail_sees_no_host_file_and_no_network(session, tmp_path):
    """The second layer: even code that got past the checks runs where host files and the network are
    absent and nothing is writable, so a way out of the namespace still reaches nothing."""
    secret = Path(tmp_path) / "secret.txt"
    secret.write_text("api-key")
    assert session.display is not None
    import subprocess
    import sys

    probe = (
        f"import os, socket, sys\nprint(os.path.exists({str(secret)!r}))\n"
        "print(sorted(os.listdir(os.path.dirname(sys.prefix))))\n"
        "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('online')\n"
        "except OSError:\n    print('offline')\n"
        "try:\n    open(os.path.join(sys.prefix, 'x'), 'w')\nexcept OSError:\n    print('read-only')\n"
    )
    argv = [*restricted.jail_argv(session.display.socket_dir), sys.executable, "-I", "-c", probe]
    lines = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={}).stdout.splitlines()
    venv = Path(sys.prefix).name
    assert lines == ["False", f"[{venv!r}]", "offline", "read-only"], lines  # only the venv beside it


def test_the_jail_finds_a_python_installed_under_tmp(tmp_path, monkeypatch):
    """The jail's private /tmp was mounted after the Python install's bind, so a checkout under /tmp (a CI
    clone) had its venv hidden and every code string failed with `execvp ... No such file`."""
    import subprocess
    import sys
    import venv

    venv.create(tmp_path / "venv", symlinks=True)  # no pip: a second or so
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    socket_dir = tmp_path / "display"
    socket_dir.mkdir()
    python = str(tmp_path / "venv" / "bin" / "python")
    argv = [*restricted.jail_argv(socket_dir), python, "-I", "-c", "print('ran')"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={})
    assert done.stdout == "ran\n", done.stderr


def test_a_memory_bomb_in_the_code_string_costs_only_the_child(session):
    assert session.display is not None
    observation = restricted.run_code(session.display.socket_dir, "s = 'a'\nwhile True:\n    s += s")
    assert observation.startswith("Error: the code failed") and "MemoryError" in observation
