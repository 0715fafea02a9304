"""The web oracle: plays a web task's reference plan through the browser tools, one real action per turn.

A plan names controls by role and accessible name (`{"do": "click", "role": "button", "name": "Pay now"}`);
each turn this agent reads the newest observation's AX tree (`parse_axtree`), finds the element and sends
the tool call with its bid, so it clicks and types like any agent would, never writing to a database. A
control not on the page yet (content a script still loads) gets a short `wait` and another look.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

from orchard_envs.agents.base import Agent, AssistantTurn, EpisodeContext
from orchard_envs.web.axtree import AXNode, parse_axtree

MAX_WAITS = 6  # short waits for one step's control to appear before the oracle gives up
WAIT_MS = 250
ROLE_ALIASES = {"textbox": {"textbox", "searchbox"}, "searchbox": {"searchbox", "textbox"}}
URL_LINE = re.compile(r"^URL: (?P<origin>https?://[^/\s]+)", re.MULTILINE)


def observation_text(messages: list[dict[str, Any]]) -> str:
    """The text of the newest tool or user message (an observation), whatever the harness's format."""
    for message in reversed(messages):
        if message.get("role") not in ("tool", "user"):
            continue
        content = message.get("content")
        if isinstance(content, list):
            return "\n".join(
                str(part["text"]) for part in content if isinstance(part, dict) and "text" in part
            )
        return str(content or "")
    return ""


def find(nodes: list[AXNode], role: str, name: str) -> AXNode | None:
    """The first element with this role (or an alias of it) and exactly this accessible name."""
    roles = ROLE_ALIASES.get(role, {role})
    for node in nodes:
        usable = node.bid and "disabled" not in node.properties
        if usable and node.name.strip() == name and node.role in roles:
            return node
    return None


def step_action(step: dict[str, Any], text: str) -> dict[str, Any] | None:
    """The tool call for one plan step on the page this observation shows; None when its element is not
    there (yet). A `check` of a box already ticked becomes an empty dict (nothing to do)."""
    kind = step["do"]
    if kind == "done":
        return {"name": "done", "arguments": {"answer": step["answer"]}}
    if kind == "infeasible":
        return {"name": "report_infeasible", "arguments": {"reason": step["reason"]}}
    if kind == "press":
        return {"name": "press", "arguments": {"key": step["key"]}}
    if kind == "goto":
        match = URL_LINE.search(text)
        return {"name": "goto", "arguments": {"url": (match["origin"] if match else "") + step["path"]}}
    node = find(parse_axtree(text), step["role"], step["name"])
    if node is None:
        return None
    if kind == "fill":
        return {"name": "fill", "arguments": {"bid": node.bid, "text": step["text"]}}
    if kind == "select":
        return {"name": "select_option", "arguments": {"bid": node.bid, "option": step["option"]}}
    if kind == "check" and node.properties.get("checked") == "true":
        return {}
    return {"name": "click", "arguments": {"bid": node.bid}}


class WebOracleAgent(Agent):
    """Plays `task.oracle` (every web-mini task must score 1 with it)."""

    name: ClassVar[str] = "web-oracle"
    wants_hidden_task: ClassVar[bool] = True
    plan_field: ClassVar[str] = "oracle"

    def __init__(self) -> None:
        self._steps: list[dict[str, Any]] = []
        self._encode: Callable[[dict[str, Any]], AssistantTurn] | None = None
        self._waits = 0

    def start(self, context: EpisodeContext) -> None:
        """Take the task's plan and the harness's encoder."""
        self._steps = list(getattr(context.task, self.plan_field))
        self._encode, self._waits = context.encode, 0

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        """The next step's tool call on the current page (or a short wait for its element)."""
        assert self._encode is not None, "start() was not called"
        text = observation_text(messages)
        while self._steps:
            step = self._steps[0]
            action = step_action(step, text)
            if action is None:
                if self._waits >= MAX_WAITS:
                    self._steps = []
                    missing = f"{step['role']} {step['name']!r}"
                    return self._encode({"name": "done", "arguments": {"answer": f"oracle: no {missing}"}})
                self._waits += 1
                return self._encode({"name": "wait", "arguments": {"ms": WAIT_MS}})
            self._steps.pop(0)
            self._waits = 0
            if action:
                return self._encode(action)
        return self._encode({"name": "done", "arguments": {"answer": ""}})


class WebWrongAgent(WebOracleAgent):
    """Plays `task.wrong`, a plausible but wrong plan: every web-mini task must score below 1 with it."""

    name: ClassVar[str] = "web-wrong"
    plan_field: ClassVar[str] = "wrong"
