"""Actions on an X display through pyautogui: OSWorld's `computer_13` tools and the code-string space.

pyautogui talks to the one Xlib connection it opened at import (`_pyautogui_x11._display`), so every call
here swaps the episode's own connection in under a process-wide lock and restores it after: many envs in
one process each drive their own display. pyautogui's fail-safe (a pointer in a corner raises) and its
pause between calls are off: the env settles the screen itself after each action.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from orchard_envs.envs.tools import ToolCall, function_tool

_LOCK = threading.RLock()
_PYAUTOGUI: Any = None
MAX_TEXT = 10_000
MAX_WAIT = 10.0
BUTTON = {"type": "string", "enum": ["left", "middle", "right"], "description": "mouse button (left)"}
X = {"type": "integer", "description": "pixels from the screen's left edge"}
Y = {"type": "integer", "description": "pixels from the screen's top edge"}
KEY = {"type": "string", "description": "a pyautogui key name: enter, tab, esc, ctrl, shift, alt, a, f2, ..."}


def load_pyautogui(display: Any) -> Any:
    """pyautogui, imported once (its import needs a display: the first one an env opens)."""
    global _PYAUTOGUI
    with _LOCK:
        if _PYAUTOGUI is None:
            import Xlib.display

            original, saved = Xlib.display.Display, os.environ.get("DISPLAY")
            Xlib.display.Display = lambda *args, **kwargs: display.xlib  # type: ignore[misc]
            os.environ.setdefault("DISPLAY", ":0")
            try:
                import pyautogui
            finally:
                Xlib.display.Display = original  # type: ignore[misc]
                if saved is None:
                    os.environ.pop("DISPLAY", None)
            pyautogui.FAILSAFE = False
            pyautogui.PAUSE = 0.0
            pyautogui.MINIMUM_DURATION = 0.0
            _PYAUTOGUI = pyautogui
        return _PYAUTOGUI


@contextlib.contextmanager
def driving(display: Any) -> Iterator[Any]:
    """pyautogui pointed at `display` for the duration (other envs' calls wait)."""
    with _LOCK:
        pyautogui = load_pyautogui(display)
        platform = pyautogui.platformModule
        saved = platform._display
        platform._display = display.xlib
        try:
            yield pyautogui
        finally:
            display.xlib.sync()
            platform._display = saved


def computer_tools(width: int, height: int) -> list[dict[str, Any]]:
    """The pyautogui-level tools (OSWorld's computer_13 names), plus wait, done and fail."""
    where = f" Screen: {width}x{height}, origin top left."
    point = {"x": X, "y": Y}
    return [
        function_tool("move_to", "Move the pointer to (x, y)." + where, point, ["x", "y"]),
        function_tool(
            "click",
            "Click at (x, y) (the pointer's place if omitted)." + where,
            {**point, "button": BUTTON, "clicks": {"type": "integer", "description": "1-3"}},
            [],
        ),
        function_tool("double_click", "Double-click at (x, y)." + where, point, []),
        function_tool("right_click", "Right-click at (x, y)." + where, point, []),
        function_tool("mouse_down", "Press a mouse button and hold it.", {"button": BUTTON}, []),
        function_tool("mouse_up", "Release a held mouse button.", {"button": BUTTON}, []),
        function_tool(
            "drag_to", "Drag with the left button held from the pointer's place to (x, y).", point, ["x", "y"]
        ),
        function_tool(
            "scroll",
            "Scroll the wheel: positive up, negative down, at (x, y) if given.",
            {"clicks": {"type": "integer"}, **point},
            ["clicks"],
        ),
        function_tool(
            "typing", "Type text as key presses (\\n is Enter).", {"text": {"type": "string"}}, ["text"]
        ),
        function_tool("press", "Press and release one key.", {"key": KEY}, ["key"]),
        function_tool("key_down", "Hold a key down.", {"key": KEY}, ["key"]),
        function_tool("key_up", "Release a held key.", {"key": KEY}, ["key"]),
        function_tool(
            "hotkey",
            'Press keys together, e.g. ["ctrl", "s"].',
            {"keys": {"type": "array", "items": {"type": "string"}}},
            ["keys"],
        ),
        *control_tools(),
    ]


def control_tools() -> list[dict[str, Any]]:
    """The tools every action space has: wait, done (the task is finished), fail (it cannot be done)."""
    return [
        function_tool("wait", "Wait for the screen to change.", {"seconds": {"type": "number"}}, []),
        function_tool("done", "The task is complete.", {}, []),
        function_tool("fail", "The task cannot be done here; say why.", {"reason": {"type": "string"}}, []),
    ]


def code_tools() -> list[dict[str, Any]]:
    """OSWorld's `pyautogui` action space: a Python snippet calling pyautogui, plus wait/done/fail."""
    code = {"type": "string", "description": "Python using only `pyautogui` (e.g. pyautogui.click(10, 20))"}
    return [
        function_tool(
            "run_code",
            "Run pyautogui code on the screen (nothing else is importable).",
            {"code": code},
            ["code"],
        ),
        *control_tools(),
    ]


class ActionRefused(ValueError):
    """The call's arguments are out of range; the message is the agent's observation."""


def perform(display: Any, call: ToolCall) -> None:
    """Run one computer_13 call with real input events (no wait/done/fail: the env answers those)."""
    args = call.arguments
    _check_point(display, args)
    if call.name == "typing" and len(args["text"]) > MAX_TEXT:
        raise ActionRefused(f"typing takes at most {MAX_TEXT} characters at a time")
    with driving(display) as gui:
        _dispatch(gui, call.name, args)


def _dispatch(gui: Any, name: str, args: dict[str, Any]) -> None:
    point = (args["x"], args["y"]) if "x" in args and "y" in args else (None, None)
    button = args.get("button", "left")
    if name == "move_to":
        gui.moveTo(*point)
    elif name == "click":
        gui.click(*point, clicks=max(1, min(3, args.get("clicks", 1))), button=button)
    elif name == "double_click":
        gui.doubleClick(*point)
    elif name == "right_click":
        gui.rightClick(*point)
    elif name in ("mouse_down", "mouse_up"):
        (gui.mouseDown if name == "mouse_down" else gui.mouseUp)(button=button)
    elif name == "drag_to":
        gui.dragTo(*point, button="left", duration=0.2)
    elif name == "scroll":
        gui.scroll(args["clicks"], *point)
    elif name == "typing":
        gui.typewrite(args["text"])
    else:
        _keys(gui, name, args)


def _keys(gui: Any, name: str, args: dict[str, Any]) -> None:
    keys = args.get("keys") or [args.get("key", "")]
    unknown = [key for key in keys if key.lower() not in gui.KEYBOARD_KEYS]
    if unknown:
        raise ActionRefused(f"unknown key(s) {', '.join(map(repr, unknown))}; use pyautogui key names")
    if name == "press":
        gui.press(keys[0].lower())
    elif name == "key_down":
        gui.keyDown(keys[0].lower())
    elif name == "key_up":
        gui.keyUp(keys[0].lower())
    else:
        gui.hotkey(*[key.lower() for key in keys])


def _check_point(display: Any, args: dict[str, Any]) -> None:
    if ("x" in args) != ("y" in args):
        raise ActionRefused("give both x and y, or neither")
    if "x" in args and not (0 <= args["x"] < display.width and 0 <= args["y"] < display.height):
        raise ActionRefused(f"({args['x']}, {args['y']}) is off the {display.width}x{display.height} screen")


def clamp_wait(seconds: Any) -> float:
    """The wait tool's pause: 1 s by default, at most MAX_WAIT."""
    value = 1.0 if seconds is None else float(seconds)
    return max(0.0, min(MAX_WAIT, value))
