"""Tool calls as actions: OpenAI function-calling schemas, and parsing that turns mistakes into messages.

An action is a JSON string or dict, either `{"name": ..., "arguments": {...}}` or an OpenAI `tool_call`
(`{"type": "function", "function": {"name": ..., "arguments": "<json>"}}`). A malformed one yields
`ActionError`, whose message the env returns as the observation.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from orchard_envs.errors import OrchardError, unknown_name

JSON_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict}


class ActionError(OrchardError):
    """The action is not a valid tool call; the message tells the agent how to fix it."""


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for: a tool's name and its parsed arguments."""

    name: str
    arguments: dict[str, Any]


def function_tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict:
    """One tool in OpenAI's function-calling format."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


def _type_problem(name: str, schema: dict[str, Any], value: Any) -> str | None:
    expected = schema.get("type")
    python_type = JSON_TYPES.get(expected or "")
    if python_type and (
        not isinstance(value, python_type) or (python_type is int and isinstance(value, bool))
    ):
        return f"argument {name!r} must be {expected}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"argument {name!r} must be one of {', '.join(schema['enum'])}, got {value!r}"
    if expected == "array" and "items" in schema:
        for item in value:
            problem = _type_problem(f"{name}[]", schema["items"], item)
            if problem:
                return problem
    return None


def check_arguments(tool: dict, arguments: dict[str, Any]) -> None:
    """Validate arguments against the tool's JSON schema (the subset these tools use)."""
    parameters = tool["function"]["parameters"]
    name = tool["function"]["name"]
    missing = [key for key in parameters["required"] if key not in arguments]
    if missing:
        raise ActionError(f"tool {name!r} is missing required argument(s): {', '.join(missing)}")
    for key, value in arguments.items():
        if key not in parameters["properties"]:
            known = ", ".join(parameters["properties"]) or "none"
            raise ActionError(f"tool {name!r} has no argument {key!r}; its arguments: {known}")
        problem = None if value is None else _type_problem(key, parameters["properties"][key], value)
        if problem:
            raise ActionError(f"tool {name!r}: {problem}")


def _decode(action: str | dict) -> dict:
    if isinstance(action, dict):
        return action
    if not isinstance(action, str):
        raise ActionError(f"an action must be a JSON string or a dict, not {type(action).__name__}")
    try:
        decoded = json.loads(action)
    except json.JSONDecodeError as exc:
        raise ActionError(
            f"the action is not valid JSON ({exc.msg} at position {exc.pos}); "
            'send {"name": "<tool>", "arguments": {...}}'
        ) from None
    if not isinstance(decoded, dict):
        raise ActionError('the action must be a JSON object: {"name": "<tool>", "arguments": {...}}')
    return decoded


def parse_action(action: str | dict, tools: list[dict]) -> ToolCall:
    """Turn an action into a validated `ToolCall`, or raise `ActionError` saying what is wrong."""
    call = _decode(action)
    call = call.get("function", call) if isinstance(call.get("function"), dict) else call
    name = call.get("name")
    if not isinstance(name, str):
        raise ActionError('the action has no tool "name"; send {"name": "<tool>", "arguments": {...}}')
    by_name = {tool["function"]["name"]: tool for tool in tools}
    if name not in by_name:
        raise ActionError(str(unknown_name("tool", name, by_name)).replace("known:", "tools:"))
    arguments = call.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ActionError(f"the arguments of {name!r} are not valid JSON ({exc.msg})") from None
    if not isinstance(arguments, dict):
        raise ActionError(f"the arguments of {name!r} must be a JSON object")
    check_arguments(by_name[name], arguments)
    return ToolCall(name, {k: v for k, v in arguments.items() if v is not None})


def copy_tools(tools: list[dict]) -> list[dict]:
    """A fresh copy for each `info`, so an agent that edits its tool list cannot change the env's."""
    return copy.deepcopy(tools)
