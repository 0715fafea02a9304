"""`gui`: screenshot in, coordinates out, for computer-use models (GUI envs: Web, Desktop).

The model sees a screenshot after every action (an OpenAI image part of a user message; only the last
`keep_screenshots` are sent, older ones are noted in text) and acts by pixel: `click(x, y)`, `type(text)`,
`press(key)`, `scroll`, `drag` ... as one `<tool_call>{json}</tool_call>` per reply (user messages carry
images, tool messages cannot). Element ids are not offered: a tool's `bid`-style parameters are dropped
from the schemas it shows. The episode records each screenshot as a file reference
(`orchard_envs.episodes.images`), never inlined.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from orchard_envs.episodes.images import image_part, to_openai
from orchard_envs.errors import ConfigError
from orchard_envs.harnesses.base import Call, elide_old_observations, end_tool, observation_text
from orchard_envs.harnesses.text import ReactHarness
from orchard_envs.text import clip

GUI_SYSTEM = """\
You operate a computer through its screen. Each message shows a screenshot (its size in pixels is given \
with the first one; the origin is at the top left); act on what you see with pixel coordinates. \
End every reply with exactly one tool call:

<tool_call>{{"name": "<tool>", "arguments": {{...}}}}</tool_call>

You see a new screenshot after each action. When the task is done, call `{end}`. Tools (JSON schemas):
{tools}"""
ID_PARAMETERS = ("bid", "from_bid", "to_bid")


def _coordinate_tool(tool: dict[str, Any]) -> dict[str, Any] | None:
    """The tool without element-id parameters; None if it cannot be used without one."""
    tool = copy.deepcopy(tool)
    parameters = tool["function"]["parameters"]
    if any(name in ID_PARAMETERS for name in parameters.get("required", [])):
        return None
    for name in ID_PARAMETERS:
        parameters.get("properties", {}).pop(name, None)
    return tool


class GuiHarness(ReactHarness):
    """Screenshots in, pixel actions out; text beside the screenshot only with `show_text=True`."""

    name = "gui"

    def __init__(self, keep_screenshots: int = 3, show_text: bool = False, **options: Any) -> None:
        super().__init__(**options)
        if keep_screenshots < 1:
            raise ConfigError(f"keep_screenshots must be at least 1, not {keep_screenshots}")
        self.keep_screenshots, self.show_text = keep_screenshots, show_text

    def check_tools(self, tools: list[dict[str, Any]]) -> None:
        """ConfigError unless the env offers a click by coordinates."""
        click = next((t for t in tools if t["function"]["name"] == "click"), None)
        if click is None or "x" not in click["function"]["parameters"].get("properties", {}):
            raise ConfigError("harness 'gui' needs a GUI env with click(x, y); use 'tool-calling' or 'react'")

    def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        """The coordinate tools described in the system prompt; the instruction's first paragraph (the task,
        not the page text) as the user's request."""
        offered = [t for t in (_coordinate_tool(tool) for tool in tools) if t is not None]
        schemas = "\n".join(json.dumps(tool["function"]) for tool in offered)
        names = [tool["function"]["name"] for tool in offered]
        system = GUI_SYSTEM.format(end="done" if "done" in names else end_tool(offered), tools=schemas)
        task = instruction if self.show_text else instruction.split("\n\n", 1)[0]
        return [{"role": "system", "content": system}, {"role": "user", "content": task}], offered

    def opening(self, observation: Any) -> list[dict[str, Any]]:
        """The first screenshot, with its size."""
        size = ""
        if isinstance(observation, dict) and "screenshot" in observation:
            height, width = observation["screenshot"].shape[:2]
            size = f" ({width}x{height} pixels)"
        return [self._screen_message(f"The screen now{size}:", observation)]

    def context(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation with the last `keep_screenshots` screenshots as image_url parts."""
        trimmed = elide_old_observations(messages, self.context_chars, self.keep_recent)
        return to_openai(trimmed, keep_last=self.keep_screenshots)

    def observation(self, call: Call, observation: Any) -> dict[str, Any]:
        """What the action did (its error, if any) and the screenshot after it, as one user message."""
        text = observation_text(observation)
        shown = text if self.show_text else "\n".join(_header(text))
        response = f"<tool_response>\n{clip(shown, self.observation_chars)}\n</tool_response>"
        return self._screen_message(response, observation)

    def _screen_message(self, text: str, observation: Any) -> dict[str, Any]:
        if not isinstance(observation, dict) or "screenshot" not in observation:
            return {"role": "user", "content": f"{text}\n{observation_text(observation)}"}
        return {
            "role": "user",
            "content": [{"type": "text", "text": text}, image_part(observation["screenshot"])],
        }


def _header(text: str) -> list[str]:
    """The lines a screenshot does not show: an error, blocked requests, the URL and tabs."""
    keep = ("Error:", "Blocked:", "URL:", "Tabs:", "Submitted", "The episode")
    return [line for line in text.splitlines() if line.startswith(keep)] or ["(done)"]
