"""Rendering OpenAI chat messages through a model's own chat template, and reading tool calls back.

Templates differ in what they understand. Some render `tools` and `tool` messages themselves (Qwen-style,
Llama-3.1-style); many (SmolLM2's among them) only know `role` + string `content`. For those, the tools are
described in the system message and tool results go in as user messages, in the widespread Hermes format
(`<tool_call>{json}</tool_call>` / `<tool_response>...</tool_response>`), which is also what we parse.

An assistant message this model wrote is rendered from the exact text it generated (`raw_text`), never
re-serialized from parsed tool calls, so the next prompt extends the last one token for token wherever the
template keeps history verbatim (see `prompt_ledger`).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)
TOOLS_PREAMBLE = """\
# Tools

You can call these functions (JSON schemas, one per line):
<tools>
{schemas}
</tools>

To call a function, write a JSON object with its name and arguments inside tags, one block per call:
<tool_call>
{{"name": "<function name>", "arguments": {{"<argument>": "<value>"}}}}
</tool_call>"""


@dataclass(frozen=True)
class ParsedReply:
    """A generated text split into what the harness sees: prose and OpenAI-format tool calls."""

    content: str | None
    tool_calls: list[dict[str, Any]]


class ChatFormat:
    """One tokenizer's chat template, made to accept any OpenAI conversation with tools."""

    def __init__(self, tokenizer: Any) -> None:
        template = tokenizer.chat_template
        if not isinstance(template, str) or not template:
            raise ValueError(
                "this tokenizer has no chat template; pass a chat (instruct) model, or set "
                "tokenizer.chat_template"
            )
        self.tokenizer = tokenizer
        self.native_tools = "tools" in template
        self.native_tool_role = "'tool'" in template or '"tool"' in template

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], *, add_generation_prompt: bool
    ) -> str:
        """The prompt text; `messages` may carry `raw_text` on assistant messages (used verbatim)."""
        prepared = [self._message(message) for message in messages]
        kwargs: dict[str, Any] = {}
        if tools and self.native_tools:
            kwargs["tools"] = tools
        elif tools:
            prepared = _with_tools_in_system(prepared, tools)
        return self.tokenizer.apply_chat_template(
            prepared, tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )

    def _message(self, message: dict[str, Any]) -> dict[str, Any]:
        role = message["role"]
        if role == "assistant" and "raw_text" in message:
            return {"role": "assistant", "content": message["raw_text"]}
        if role == "assistant" and message.get("tool_calls") and not self.native_tools:
            return {"role": "assistant", "content": _assistant_text(message)}
        if role == "tool" and not self.native_tool_role:
            return {"role": "user", "content": f"<tool_response>\n{_text(message)}\n</tool_response>"}
        prepared = {key: value for key, value in message.items() if key != "raw_text"}
        prepared["content"] = _text(message)
        if role == "assistant" and message.get("tool_calls"):
            prepared["tool_calls"] = [_with_parsed_arguments(call) for call in message["tool_calls"]]
        return prepared

    @staticmethod
    def parse(text: str, tools: list[dict[str, Any]]) -> ParsedReply:
        """Tool calls are read only when tools were offered; otherwise the whole text is the content. A block
        that is not a call (not JSON, no name) stays in the content as written: the harness then explains
        that the reply has no call, and nothing the model wrote vanishes."""
        if not tools:
            return ParsedReply(text, [])
        calls: list[dict[str, Any]] = []

        def take(match: re.Match[str]) -> str:
            call = _openai_call(match.group(1))
            if call is None:
                return match.group(0)
            calls.append(call)
            return ""

        prose = TOOL_CALL.sub(take, text).strip()
        # content is null only beside calls: an empty reply is an empty text (a message needs one or other)
        return ParsedReply(prose or (None if calls else ""), calls)


def _text(message: dict[str, Any]) -> str:
    """Content as one string: OpenAI allows None (assistant with tool calls) and lists of text parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _with_tools_in_system(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict]:
    schemas = "\n".join(json.dumps(tool.get("function", tool)) for tool in tools)
    preamble = TOOLS_PREAMBLE.format(schemas=schemas)
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{preamble}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": preamble}, *messages]


def _assistant_text(message: dict[str, Any]) -> str:
    """An assistant turn someone else wrote (a replay, a server client), in the Hermes text format."""
    parts = [_text(message)] if _text(message) else []
    for call in message["tool_calls"]:
        function = _with_parsed_arguments(call)["function"]
        payload = json.dumps({"name": function["name"], "arguments": function["arguments"]})
        parts.append(f"<tool_call>\n{payload}\n</tool_call>")
    return "\n".join(parts)


def _with_parsed_arguments(call: dict[str, Any]) -> dict[str, Any]:
    """Templates index into arguments as a mapping; OpenAI sends them as JSON text."""
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments)
        except json.JSONDecodeError:
            function["arguments"] = arguments
    return {**call, "function": function}


def _openai_call(block: str) -> dict[str, Any] | None:
    """A <tool_call> block as an OpenAI tool call; None when it names no function (an OpenAI tool call
    must, and so must an episode's)."""
    try:
        payload = json.loads(block)
    except json.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str) or not payload["name"]:
        return None
    name = payload["name"]
    raw = payload.get("arguments", payload.get("parameters", {}))
    arguments = raw if isinstance(raw, str) else json.dumps(raw)
    return {
        "id": f"call_{uuid.uuid4().hex[:12]}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }
