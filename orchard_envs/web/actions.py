"""The browser's actions: the tools offered to the agent, what each does in the page, and BrowserGym's
action strings (`click('a51')`, `fill('b12', 'text')`) read as the same tool calls.

An action that cannot be done (no element with that bid, a timeout, a detached frame, a closed tab)
raises `WebActionError` or Playwright's own error; the env turns either into the observation's
`Error:` line and the episode goes on.
"""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING, Any

from orchard_envs.envs.tools import ActionError, ToolCall, function_tool
from orchard_envs.errors import OrchardError

if TYPE_CHECKING:
    from orchard_envs.web.runtime import Session as SessionLike

BID = re.compile(r"[a-z0-9]+")
MAX_WAIT_MS = 5000
ENDING = frozenset({"done", "report_infeasible"})

_bid = {"type": "string", "description": "the element's id: the [bid] in the AX tree"}
_xy = {"x": {"type": "number", "description": "pixels from the left"}, "y": {"type": "number"}}
_button = {"type": "string", "enum": ["left", "right", "middle"]}


class WebActionError(OrchardError):
    """The action could not be done on this page; the message goes to the agent."""


def web_tools() -> list[dict[str, Any]]:
    """The tools every web episode offers (OpenAI function schemas)."""
    at = {"bid": _bid, **_xy}
    return [
        function_tool("click", "Click an element (bid) or a point (x, y).", {**at, "button": _button}, []),
        function_tool("dblclick", "Double-click an element (bid) or a point (x, y).", dict(at), []),
        function_tool("hover", "Move the mouse over an element (bid) or a point (x, y).", dict(at), []),
        function_tool(
            "fill",
            "Replace the text of a text field.",
            {"bid": _bid, "text": {"type": "string"}},
            ["bid", "text"],
        ),
        function_tool("type", "Type text into the focused element.", {"text": {"type": "string"}}, ["text"]),
        function_tool(
            "press",
            "Press a key or combination (Enter, Tab, Control+a), on an element (bid) or the focused one.",
            {"key": {"type": "string"}, "bid": _bid},
            ["key"],
        ),
        function_tool(
            "select_option",
            "Choose an option (its label or value) of a <select>.",
            {"bid": _bid, "option": {"type": "string"}},
            ["bid", "option"],
        ),
        function_tool(
            "scroll",
            "Scroll the page (or the element under bid) by dx, dy pixels.",
            {"dx": {"type": "number"}, "dy": {"type": "number"}, "bid": _bid},
            ["dx", "dy"],
        ),
        function_tool(
            "drag",
            "Drag from one element (from_bid) or point (x, y) to another (to_bid or to_x, to_y).",
            {"from_bid": _bid, "to_bid": _bid, **_xy, "to_x": {"type": "number"}, "to_y": {"type": "number"}},
            [],
        ),
        function_tool("goto", "Open a URL in the active tab.", {"url": {"type": "string"}}, ["url"]),
        function_tool("go_back", "Go back in the active tab's history.", {}, []),
        function_tool("go_forward", "Go forward in the active tab's history.", {}, []),
        function_tool(
            "tab_new",
            "Open a new tab (optionally at url) and make it active.",
            {"url": {"type": "string"}},
            [],
        ),
        function_tool("tab_focus", "Make tab `index` active.", {"index": {"type": "integer"}}, ["index"]),
        function_tool("tab_close", "Close the active tab.", {}, []),
        function_tool("wait", "Wait ms milliseconds (at most 5000).", {"ms": {"type": "integer"}}, ["ms"]),
        function_tool(
            "done", "Finish the task, with the answer if it asks for one.", {"answer": {"type": "string"}}, []
        ),
        function_tool(
            "report_infeasible",
            "End the task as impossible, saying why.",
            {"reason": {"type": "string"}},
            ["reason"],
        ),
    ]


def run(session: SessionLike, call: ToolCall, timeout_ms: int) -> None:
    """Do one (non-ending) action in the session's active tab."""
    handler = _HANDLERS.get(call.name)
    if handler is None:
        raise WebActionError(f"{call.name!r} is not a browser action")
    handler(session, call.arguments, timeout_ms)


def _element(session: SessionLike, bid: Any) -> Any:
    if not isinstance(bid, str) or not BID.fullmatch(bid):
        raise WebActionError(f"{bid!r} is not an element id: bids are letters and digits, like '12'")
    locator = session.page.locator(f'[bid="{bid}"]')
    if locator.count() == 0:
        raise WebActionError(
            f"no element with bid {bid!r} on this page (read the AX tree for the current ids)"
        )
    return locator.first


def _point(args: dict[str, Any], x: str = "x", y: str = "y") -> tuple[float, float]:
    try:
        return float(args[x]), float(args[y])
    except (KeyError, TypeError, ValueError):
        raise WebActionError(f"give either bid or both {x} and {y} (numbers)") from None


def _pointer(kind: str) -> Any:
    def act(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
        button = args.get("button", "left")
        if "bid" in args:
            element = _element(session, args["bid"])
            if kind == "hover":
                element.hover(timeout=timeout_ms)
            else:
                getattr(element, kind)(button=button, timeout=timeout_ms)
            return
        x, y = _point(args)
        mouse = session.page.mouse
        if kind == "hover":
            mouse.move(x, y)
        else:
            getattr(mouse, kind)(x, y, button=button)

    return act


def _fill(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    _element(session, args["bid"]).fill(args["text"], timeout=timeout_ms)


def _type(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    session.page.keyboard.type(args["text"])


def _press(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    if "bid" in args:
        _element(session, args["bid"]).press(args["key"], timeout=timeout_ms)
    else:
        session.page.keyboard.press(args["key"])


def _select(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    element, option = _element(session, args["bid"]), args["option"]
    try:
        element.select_option(label=option, timeout=timeout_ms)
    except Exception:  # not a label: try it as the option's value
        element.select_option(value=option, timeout=timeout_ms)


def _scroll(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    dx, dy = _point(args, "dx", "dy")
    if "bid" in args:
        _element(session, args["bid"]).hover(timeout=timeout_ms)
    session.page.mouse.wheel(dx, dy)


def _drag(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    if "from_bid" in args and "to_bid" in args:
        _element(session, args["from_bid"]).drag_to(_element(session, args["to_bid"]), timeout=timeout_ms)
        return
    (x, y), (to_x, to_y) = _point(args), _point(args, "to_x", "to_y")
    mouse = session.page.mouse
    mouse.move(x, y)
    mouse.down()
    mouse.move(to_x, to_y, steps=5)
    mouse.up()


def _goto(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    url = args["url"]
    problem = session.guard.check_url(url)
    if problem:
        raise WebActionError(problem)
    session.page.goto(url)


def _history(direction: str) -> Any:
    def act(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
        getattr(session.page, direction)()

    return act


def _tab_new(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    if args.get("url"):
        problem = session.guard.check_url(args["url"])
        if problem:
            raise WebActionError(problem)
    page = session.context.new_page()
    session.active = len(session.pages) - 1
    if args.get("url"):
        page.goto(args["url"])


def _tab_focus(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    index, count = args["index"], len(session.pages)
    if not 0 <= index < count:
        raise WebActionError(f"there is no tab {index}: the tabs are 0..{count - 1}")
    session.active = index
    session.page.bring_to_front()


def _tab_close(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    session.page.close()
    session.active = max(0, session.active - 1)


def _wait(session: SessionLike, args: dict[str, Any], timeout_ms: int) -> None:
    session.page.wait_for_timeout(max(0, min(int(args["ms"]), MAX_WAIT_MS)))


_HANDLERS = {
    "click": _pointer("click"),
    "dblclick": _pointer("dblclick"),
    "hover": _pointer("hover"),
    "fill": _fill,
    "type": _type,
    "press": _press,
    "select_option": _select,
    "scroll": _scroll,
    "drag": _drag,
    "goto": _goto,
    "go_back": _history("go_back"),
    "go_forward": _history("go_forward"),
    "tab_new": _tab_new,
    "tab_focus": _tab_focus,
    "tab_close": _tab_close,
    "wait": _wait,
}

# BrowserGym's action functions: (our tool, its positional parameters as our argument names).
BROWSERGYM: dict[str, tuple[str, tuple[str, ...]]] = {
    "click": ("click", ("bid", "button")),
    "dblclick": ("dblclick", ("bid", "button")),
    "hover": ("hover", ("bid",)),
    "focus": ("click", ("bid",)),
    "fill": ("fill", ("bid", "text")),
    "clear": ("fill", ("bid",)),
    "select_option": ("select_option", ("bid", "option")),
    "press": ("press", ("bid", "key")),
    "scroll": ("scroll", ("dx", "dy")),
    "drag_and_drop": ("drag", ("from_bid", "to_bid")),
    "mouse_click": ("click", ("x", "y", "button")),
    "mouse_dblclick": ("dblclick", ("x", "y", "button")),
    "mouse_move": ("hover", ("x", "y")),
    "mouse_drag_and_drop": ("drag", ("x", "y", "to_x", "to_y")),
    "keyboard_type": ("type", ("text",)),
    "keyboard_press": ("press", ("key",)),
    "keyboard_insert_text": ("type", ("text",)),
    "goto": ("goto", ("url",)),
    "go_back": ("go_back", ()),
    "go_forward": ("go_forward", ()),
    "new_tab": ("tab_new", ()),
    "tab_close": ("tab_close", ()),
    "tab_focus": ("tab_focus", ("index",)),
    "noop": ("wait", ("ms",)),
    "send_msg_to_user": ("done", ("answer",)),
    "report_infeasible": ("report_infeasible", ("reason",)),
}
_KEYWORDS = {
    "value": "text",
    "key_comb": "key",
    "options": "option",
    "delta_x": "dx",
    "delta_y": "dy",
    "wait_ms": "ms",
    "text": "text",
    "from_x": "x",
    "from_y": "y",
}


def parse_browsergym(text: str) -> dict[str, Any]:
    """One BrowserGym action string as a tool call `{"name", "arguments"}`; ActionError if it is not one."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ActionError(
            'the action is neither JSON ({"name": ..., "arguments": ...}) nor a BrowserGym call '
            "like click('12')"
        ) from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ActionError("a BrowserGym action is one function call, like fill('12', 'text')")
    if call.func.id not in BROWSERGYM:
        raise ActionError(
            f"unknown BrowserGym action {call.func.id!r}; known: {', '.join(sorted(BROWSERGYM))}"
        )
    name, params = BROWSERGYM[call.func.id]
    try:
        values = [ast.literal_eval(arg) for arg in call.args]
        keywords = {_KEYWORDS.get(k.arg or "", k.arg or ""): ast.literal_eval(k.value) for k in call.keywords}
    except ValueError:
        raise ActionError("BrowserGym action arguments must be literals (strings, numbers, lists)") from None
    if len(values) > len(params):
        raise ActionError(f"{call.func.id}() takes at most {len(params)} positional argument(s)")
    arguments = {**dict(zip(params, values, strict=False)), **keywords}
    arguments.pop("modifiers", None)  # BrowserGym's modifier keys: not offered (press a combination instead)
    if call.func.id == "clear":
        arguments["text"] = ""
    if call.func.id == "noop":
        arguments.setdefault("ms", 1000)  # BrowserGym's default wait
    if name == "select_option" and isinstance(arguments.get("option"), list):
        if len(arguments["option"]) != 1:
            raise ActionError("select_option takes one option here")
        arguments["option"] = arguments["option"][0]
    return {"name": name, "arguments": arguments}
