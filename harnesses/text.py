"""Text harnesses for models without native tool calling: `react` (a thought, then one JSON tool call in
<tool_call> tags) and `bash-only` (mini-swe-agent style: one shell command per turn, a sentinel submits)."""

from __future__ import annotations

import json
import re
from typing import Any

from orchard_envs.agents.base import AssistantTurn
from orchard_envs.errors import ConfigError
from orchard_envs.harnesses.base import Action, Call, FormatError, Harness, end_tool, observation_text
from orchard_envs.text import clip

REACT_SYSTEM = """\
You are an autonomous agent. Think step by step, then act. End every reply with exactly one tool call:

<tool_call>{{"name": "<tool>", "arguments": {{...}}}}</tool_call>

You see its result before your next reply. When the task is done, call `{end}`. Tools (JSON schemas):
{tools}"""

BASH_SYSTEM = """\
You are an autonomous agent working in a Linux shell. Every reply must contain exactly one bash code \
block, which is run in a persistent shell session; you see its output before your next reply:

```bash
<command>
```

When the task is done, reply with a block holding only `{sentinel}`."""

SUBMIT_SENTINEL = "echo ORCHARD_SUBMIT"
TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
BASH_BLOCK = re.compile(r"```(?:bash|sh)\n(.*?)\n```", re.S)


def _names(tools: list[dict[str, Any]]) -> list[str]:
    return [tool["function"]["name"] for tool in tools]


class ReactHarness(Harness):
    """A thought, then one <tool_call>{json}</tool_call>; tools described in the prompt (any model)."""

    name = "react"

    def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        """A system prompt listing the tool schemas as text, and the instruction."""
        schemas = "\n".join(json.dumps(tool["function"]) for tool in tools)
        return [
            {"role": "system", "content": REACT_SYSTEM.format(tools=schemas, end=end_tool(tools))},
            {"role": "user", "content": instruction},
        ], tools

    def api_tools(self, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """None: the tools are described in the prompt, not passed to the API."""
        return []

    def parse(self, turn: AssistantTurn) -> list[Call] | FormatError:
        """The reply must end with exactly one <tool_call>{...}</tool_call> of JSON."""
        found = TOOL_CALL.findall(turn.content or "")
        if len(found) != 1:
            return FormatError(
                f"end your reply with exactly one <tool_call>{{...}}</tool_call>; found {len(found)}"
            )
        try:
            call = json.loads(found[0])
        except json.JSONDecodeError as exc:
            return FormatError(f"the tool call is not valid JSON ({exc.msg})")
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            return FormatError('the tool call must be {"name": "<tool>", "arguments": {...}}')
        return [Call({"name": call["name"], "arguments": call.get("arguments") or {}})]

    def observation(self, call: Call, observation: Any) -> dict[str, Any]:
        """The tool's output, clipped, in a <tool_response> user message."""
        content = clip(observation_text(observation), self.observation_chars)
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}

    def encode(self, action: Action) -> AssistantTurn:
        """An action as the reply a model following this harness would write."""
        call = json.dumps({"name": action["name"], "arguments": action.get("arguments") or {}})
        return AssistantTurn(content=f"<tool_call>{call}</tool_call>")


class BashOnlyHarness(Harness):
    """mini-swe-agent style: one ```bash block per reply in the env's shell; a sentinel line submits."""

    name = "bash-only"

    def check_tools(self, tools: list[dict[str, Any]]) -> None:
        """ConfigError unless the env offers both 'bash' and 'submit'."""
        missing = {"bash", "submit"} - set(_names(tools))
        if missing:
            raise ConfigError(
                f"harness 'bash-only' needs an env with 'bash' and 'submit' tools; this env offers "
                f"{', '.join(_names(tools)) or 'none'}: use 'tool-calling' or 'react'"
            )

    def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        """A system prompt for bash code blocks; only 'bash' and 'submit' are offered."""
        offered = [tool for tool in tools if tool["function"]["name"] in ("bash", "submit")]
        system = BASH_SYSTEM.format(sentinel=SUBMIT_SENTINEL)
        return [{"role": "system", "content": system}, {"role": "user", "content": instruction}], offered

    def api_tools(self, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """None: the model replies with code blocks, not API tool calls."""
        return []

    def parse(self, turn: AssistantTurn) -> list[Call] | FormatError:
        """Exactly one ```bash block: a command, or the submit sentinel."""
        blocks = BASH_BLOCK.findall(turn.content or "")
        if len(blocks) != 1:
            return FormatError(f"reply with exactly one ```bash code block; found {len(blocks)}")
        command = blocks[0].strip()
        if command == SUBMIT_SENTINEL:
            return [Call({"name": "submit", "arguments": {}})]
        return [Call({"name": "bash", "arguments": {"command": command}})]

    def observation(self, call: Call, observation: Any) -> dict[str, Any]:
        """The command's output, clipped, as a user message."""
        content = clip(observation_text(observation), self.observation_chars)
        return {"role": "user", "content": f"Output:\n{content}"}

    def encode(self, action: Action) -> AssistantTurn:
        """An action as a ```bash block; ConfigError for tools other than bash and submit."""
        if action["name"] == "submit":
            return AssistantTurn(content=f"```bash\n{SUBMIT_SENTINEL}\n```")
        if action["name"] != "bash":
            raise ConfigError(f"harness 'bash-only' cannot express the tool {action['name']!r}")
        return AssistantTurn(content=f"```bash\n{action['arguments']['command']}\n```")
