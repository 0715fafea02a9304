"""The Desktop oracle: the task's plan as real input events (clicks and keys through the env's tools).

`focus` clicks the middle of the app's window, which openbox always places where `apps.LAYOUT` says, so
the whole plan is known before the first step.
"""

from __future__ import annotations

from typing import Any

from orchard_envs.desktop.apps import LAYOUT


def _action(step: dict[str, Any], code: bool) -> dict[str, Any]:
    kind = step["do"]
    if kind == "focus":
        x, y, width, height = LAYOUT[step["app"]]
        return _call("click", {"x": x + width // 2, "y": y + height // 2}, code)
    if kind == "click":
        x, y, _, _ = LAYOUT[step["app"]]
        return _call("click", {"x": x + step["dx"], "y": y + step["dy"]}, code)
    if kind == "type":
        return _call("typing", {"text": step["text"]}, code)
    if kind == "hotkey":
        return _call("hotkey", {"keys": list(step["keys"])}, code)
    if kind == "press":
        return _call("press", {"key": step["key"]}, code)
    if kind == "wait":
        return {"name": "wait", "arguments": {"seconds": step["seconds"]}}
    if kind == "fail":
        return {"name": "fail", "arguments": {"reason": step.get("reason", "")}}
    return {"name": "done", "arguments": {}}


CODE = {
    "click": "pyautogui.click({x}, {y})",
    "typing": "pyautogui.typewrite({text!r})",
    "hotkey": "pyautogui.hotkey(*{keys!r})",
    "press": "pyautogui.press({key!r})",
}


def _call(name: str, arguments: dict[str, Any], code: bool) -> dict[str, Any]:
    if not code:
        return {"name": name, "arguments": arguments}
    return {"name": "run_code", "arguments": {"code": "import pyautogui\n" + CODE[name].format(**arguments)}}


def plan(task: Any, tool_names: list[str]) -> list[dict[str, Any]]:
    """The task's oracle steps as env actions (computer_13 tools, or run_code snippets when that is the
    action space)."""
    code = "run_code" in tool_names
    return [_action(step, code) for step in task.oracle]
