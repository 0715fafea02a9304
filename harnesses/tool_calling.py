"""`tool-calling`: native OpenAI function calling; the env's tools are offered as they are."""

from __future__ import annotations

import json
import uuid
from typing import Any

from orchard_envs.agents.base import AssistantTurn
from orchard_envs.harnesses.base import Action, Call, FormatError, Harness, end_tool, observation_text
from orchard_envs.text import clip

SYSTEM = (
    "You are an autonomous agent. Solve the task using the tools. Call exactly the tools you need, one or "
    "more per reply; you see each result before your next reply. When the task is done, call `{end}`."
)


class ToolCallingHarness(Harness):
    """Native OpenAI function calling: every env tool offered through the API."""

    name = "tool-calling"
    _end = "submit"

    def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        """A system prompt naming the end tool, and the instruction; every tool is offered."""
        self._end = end_tool(tools)
        system = SYSTEM.format(end=self._end)
        return [{"role": "system", "content": system}, {"role": "user", "content": instruction}], tools

    def parse(self, turn: AssistantTurn) -> list[Call] | FormatError:
        """The reply's API tool calls, arguments left as JSON text for the env to parse and explain."""
        if not turn.tool_calls:
            return FormatError(f"reply with a tool call (call `{self._end}` when you are done)")
        # Arguments stay as the model wrote them (JSON text): the env parses them and explains mistakes.
        return [
            Call(
                {
                    "name": (c.get("function") or {}).get("name"),
                    "arguments": (c.get("function") or {}).get("arguments"),
                },
                c.get("id"),
            )
            for c in turn.tool_calls
        ]

    def observation(self, call: Call, observation: Any) -> dict[str, Any]:
        """The tool's output, clipped, as a `tool` message answering the call's id."""
        return {
            "role": "tool",
            "tool_call_id": call.call_id,
            "content": clip(observation_text(observation), self.observation_chars),
        }

    def encode(self, action: Action) -> AssistantTurn:
        """An action as an API tool call with a fresh call id."""
        call = {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": action["name"], "arguments": json.dumps(action.get("arguments") or {})},
        }
        return AssistantTurn(content=None, tool_calls=[call])
