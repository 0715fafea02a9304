"""An episode's steps: what each assistant message did (its calls) and what came back (their observations).

A step is one assistant message: its tool calls, or the action in its text under `react` / `bash-only`, read
by the same harness parser that ran the episode. Its observations are the messages after it up to the next
one: tool messages matched by call id, or the user messages a text harness answers with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from orchard_envs.agents.base import AssistantTurn
from orchard_envs.episodes import Episode
from orchard_envs.harnesses import HARNESSES, get_harness
from orchard_envs.harnesses.base import FormatError, Harness
from orchard_envs.trainers.credit.labels import replies

FORMAT_ERROR = "Format error:"  # harnesses.base.Harness.format_error
NOT_RUN = "Not run: the episode had ended."  # runner.run_episode, for calls after the episode ended
_harnesses: dict[str, Harness] = {}


@dataclass
class Call:
    """One tool call of a step, with what it observed."""

    name: str
    arguments: dict[str, Any]
    key: str  # the tool and its canonical arguments: what "the same action" means
    observation: str | None  # None: the env never ran it


@dataclass
class Step:
    """One assistant message of an episode, as credit assignment sees it."""

    number: int  # 1-based, as reasons and the judge count steps
    index: int  # into episode.messages
    action: str  # the reply as the judge sees it: its text and its tool calls
    calls: list[Call]
    format_error: str | None  # the harness's complaint when the reply held no action


def _text(content: Any) -> str:
    """A message's content as plain text (the text parts of a list of parts)."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def task_text(episode: Episode) -> str:
    """The task statement: the episode's first user message."""
    return next((_text(m.get("content")) for m in episode.messages if m.get("role") == "user"), "")


def _unwrap(observation: str) -> str:
    """The env's output inside a text harness's observation message (`react` / `bash-only`)."""
    if observation.startswith("<tool_response>"):
        return observation.removeprefix("<tool_response>\n").removesuffix("\n</tool_response>")
    return observation.removeprefix("Output:\n")


def _parse(turn: AssistantTurn, harness: str) -> list[Any] | FormatError:
    """The calls a harness reads from the reply: the same parser that ran the episode."""
    names = [harness] if harness in HARNESSES else ["tool-calling", "react", "bash-only"]
    parsed: list[Any] | FormatError = FormatError("no action")
    for name in names:
        if name not in _harnesses:
            _harnesses[name] = get_harness(name)
        parsed = _harnesses[name].parse(turn)
        if not isinstance(parsed, FormatError):
            break
    return parsed


def _call(action: dict[str, Any], observation: str | None) -> Call:
    name, raw = str(action.get("name")), action.get("arguments")
    if isinstance(raw, str):  # tool-calling: the model's JSON text, which the env parsed
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return Call(name, {}, f"{name} {raw}", observation)
    arguments = raw if isinstance(raw, dict) else {}
    return Call(name, arguments, f"{name} {json.dumps(raw, sort_keys=True, default=str)}", observation)


def parse_steps(episode: Episode) -> list[Step]:
    """One `Step` per assistant message, whatever the harness."""
    messages = episode.messages
    indices = replies(episode)
    steps: list[Step] = []
    for number, index in enumerate(indices, 1):
        after = messages[index + 1 : indices[number] if number < len(indices) else len(messages)]
        by_id = {m.get("tool_call_id"): _text(m.get("content")) for m in after if m.get("role") == "tool"}
        said = [_text(m.get("content")) for m in after if m.get("role") == "user"]
        format_error = next((text for text in said if text.startswith(FORMAT_ERROR)), None)
        shown = [_unwrap(text) for text in said if not text.startswith(FORMAT_ERROR)]
        content, tool_calls = _text(messages[index].get("content")), messages[index].get("tool_calls") or []
        parsed = _parse(AssistantTurn(content=content, tool_calls=list(tool_calls)), episode.metadata.harness)
        calls: list[Call] = []
        if isinstance(parsed, FormatError):
            format_error = format_error or f"{FORMAT_ERROR} {parsed.message}"
        elif format_error is None:  # text harnesses: one call, answered by the next user message
            for k, call in enumerate(parsed):
                observation = (
                    by_id.get(call.call_id) if call.call_id else (shown[k] if k < len(shown) else None)
                )
                calls.append(_call(call.action, None if observation == NOT_RUN else observation))
        rendered = [f"{c['function']['name']}({c['function']['arguments']})" for c in tool_calls]
        action = "\n".join(part for part in [content, *rendered] if part)
        steps.append(Step(number, index, action, calls, format_error))
    return steps
