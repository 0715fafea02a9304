"""OSWorld's code-string action (`pyautogui.click(10, 20); time.sleep(1)`) run with only pyautogui in reach.

Two layers. First the host parses the snippet and refuses anything outside a small subset: imports of
`pyautogui` and `time` only, attribute access only as `pyautogui.NAME` / `time.sleep` with NAME from a
list, no name or attribute with an underscore in front (so no `__class__`, `__globals__`,
`__subclasses__`, `__builtins__`), and no `eval`, `exec`, `open`, `getattr`, `type` (the builtins given
are a short list of pure functions). Then the snippet runs in a child process, not in the host: that child
has a memory and CPU limit and a wall-clock timeout (a `while True: s += s` costs the child, not the
host), an empty environment (no host secrets), and runs in a bubblewrap jail with no network and no
writable path, seeing only the Python install and the display's host-only socket.

The run-time names alone are no boundary (the listed pyautogui functions are real functions, and their
`__globals__` reach `os`): the static check is what refuses that walk, and the jail is what a way past it
would meet.
"""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

PYAUTOGUI_NAMES = frozenset(
    {
        "click",
        "doubleClick",
        "tripleClick",
        "rightClick",
        "middleClick",
        "moveTo",
        "moveRel",
        "move",
        "dragTo",
        "dragRel",
        "drag",
        "mouseDown",
        "mouseUp",
        "scroll",
        "hscroll",
        "vscroll",
        "typewrite",
        "write",
        "press",
        "hotkey",
        "keyDown",
        "keyUp",
        "size",
        "position",
        "sleep",
    }
)
TIME_NAMES = frozenset({"sleep"})
SAFE_BUILTINS = (
    "abs",
    "bool",
    "dict",
    "enumerate",
    "float",
    "int",
    "len",
    "list",
    "max",
    "min",
    "print",
    "range",
    "round",
    "str",
    "sum",
    "tuple",
    "zip",
    "True",
    "False",
    "None",
)
FORBIDDEN_BUILTINS = frozenset(dir(builtins)) - set(SAFE_BUILTINS)  # eval, exec, open, getattr, type, ...
MODULES = {"pyautogui": PYAUTOGUI_NAMES, "time": TIME_NAMES}
MAX_CODE = 20_000
TIMEOUT = 30.0
MEMORY = 512 * 1024**2


class CodeRefused(ValueError):
    """The snippet uses something outside the allowed subset; the message says what."""


def check_code(code: str) -> None:
    """Raise CodeRefused unless `code` stays inside the subset described in the module docstring."""
    if len(code) > MAX_CODE:
        raise CodeRefused(f"the code is longer than {MAX_CODE} characters")
    try:
        tree = ast.parse(code, mode="exec")
    except SyntaxError as exc:
        raise CodeRefused(f"the code does not parse: {exc.msg} (line {exc.lineno})") from None
    for node in ast.walk(tree):
        _check_node(node)


def _check_node(node: ast.AST) -> None:
    if isinstance(node, ast.ImportFrom):
        raise CodeRefused("`from ... import` is not allowed; write `import pyautogui` or `import time`")
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name not in MODULES or (alias.asname and alias.asname != alias.name):
                raise CodeRefused(
                    f"only `import pyautogui` and `import time` are allowed, not {alias.name!r}"
                )
    elif isinstance(node, ast.Attribute):
        owner = node.value.id if isinstance(node.value, ast.Name) else None
        if owner not in MODULES or node.attr not in MODULES[owner]:
            allowed = "pyautogui." + ", pyautogui.".join(sorted(PYAUTOGUI_NAMES)) + ", time.sleep"
            raise CodeRefused(f"attribute {ast.unparse(node)!r} is not allowed; allowed: {allowed}")
    elif isinstance(node, ast.Name) and node.id.startswith("_"):
        raise CodeRefused(f"names starting with an underscore are not allowed ({node.id!r})")
    elif isinstance(node, ast.Name) and node.id in FORBIDDEN_BUILTINS:
        raise CodeRefused(f"{node.id!r} is not available; builtins here: {', '.join(SAFE_BUILTINS)}")
    elif isinstance(node, (ast.Global, ast.Nonlocal, ast.AsyncFunctionDef, ast.Await)):
        raise CodeRefused(f"{type(node).__name__} is not allowed")


CHILD = r"""
import resource, socket, sys, os
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
code = sys.stdin.read()
import Xlib.display, Xlib.support.unix_connect as uc
def connect(*args):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sys.argv[1])
    return sock
uc.get_socket = connect
os.environ["DISPLAY"] = ":0"
import pyautogui, time
pyautogui.FAILSAFE = False
pyautogui.PAUSE = 0.0
import builtins
names = set(sys.argv[3].split(","))
modules = {"pyautogui": set(sys.argv[4].split(",")), "time": {"sleep"}}
def sleep(seconds):
    time.sleep(max(0.0, min(5.0, float(seconds))))
real = {"pyautogui": pyautogui, "time": time}
def proxy(module):
    attrs = {name: sleep if name == "sleep" else getattr(real[module], name) for name in modules[module]}
    return type(module, (), {"__slots__": (), **{k: staticmethod(v) for k, v in attrs.items()}})()
proxies = {name: proxy(name) for name in modules}
def importer(name, *args, **kwargs):
    if name in proxies:
        return proxies[name]
    raise ImportError(f"only pyautogui and time can be imported, not {name!r}")
safe = {name: getattr(builtins, name) for name in names}
safe["__import__"] = importer
del builtins, os, resource, uc
try:
    exec(compile(code, "<action>", "exec"), {"__builtins__": safe, **proxies})
finally:
    pyautogui.platformModule._display.sync()
"""


def jail_argv(socket_dir: Path) -> list[str]:
    """bwrap around the child: the Python install read-only, the display's socket folder, nothing else."""
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib64"):
        path = Path("/") / name
        if path.is_symlink():
            argv += ["--symlink", str(path.readlink()), f"/{name}"]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), f"/{name}"]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]  # before the binds: a venv in /tmp
    for folder in sorted({sys.base_prefix, sys.prefix, sysconfig.get_paths()["purelib"]}):
        argv += ["--ro-bind", folder, folder]
    argv += ["--ro-bind", str(socket_dir), "/x"]
    return [*argv, "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]


def run_code(socket_dir: Path, code: str, timeout: float = TIMEOUT) -> str:
    """Check `code`, run it against the display whose host socket folder is `socket_dir`; return what it
    printed, or its error, as the agent's observation."""
    check_code(code)
    argv = [*jail_argv(socket_dir), sys.executable, "-I", "-c", CHILD, "/x/X0", str(MEMORY)]
    argv += [",".join(SAFE_BUILTINS), ",".join(sorted(PYAUTOGUI_NAMES))]
    try:
        done = subprocess.run(argv, input=code, capture_output=True, text=True, timeout=timeout, env={})
    except subprocess.TimeoutExpired:
        return f"Error: the code ran longer than {timeout:g} s and was stopped"
    output = (done.stdout + done.stderr)[-4000:]
    if done.returncode != 0:
        return "Error: the code failed:\n" + _last_error(output, done.returncode)
    return output.strip() or "The code ran."


def _last_error(output: str, code: int) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {code} (killed by a limit?)"


def describe_refusal(exc: Any) -> str:
    """The observation for a refused snippet."""
    return f"Error: {exc}"
