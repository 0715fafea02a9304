"""The harness contract: the scaffold between a model's turns and an env's actions.

A harness decides the prompt, which of the env's tools the model sees and how, how a reply becomes env
actions, and how observations are shown back. It knows nothing about sandboxes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from orchard_envs.agents.base import AssistantTurn, end_action
from orchard_envs.errors import ConfigError

Action = dict[str, Any]  # {"name": tool, "arguments": {...}}: what env.step takes


@dataclass(frozen=True)
class Call:
    """One env action parsed from a reply, with the id its observation answers (tool-calling only)."""

    action: Action
    call_id: str | None = None


@dataclass(frozen=True)
class FormatError:
    """A reply no action could be read from; `message` is shown to the model."""

    message: str


ELIDED = "[{chars} characters of earlier output elided to fit the context window]"


def _size(message: dict[str, Any]) -> int:
    return len(str(message.get("content") or "")) + len(str(message.get("tool_calls") or ""))


def elide_old_observations(
    messages: list[dict[str, Any]], budget: int, keep_recent: int
) -> list[dict[str, Any]]:
    """Observations are the tool messages and the user messages after the first (the task) one."""
    total = sum(_size(message) for message in messages)
    if total <= budget:
        return messages
    first_user = next((i for i, m in enumerate(messages) if m["role"] == "user"), -1)
    out = list(messages)
    for index in range(len(messages) - keep_recent):
        if total <= budget:
            break
        message = messages[index]
        if message["role"] == "tool" or (message["role"] == "user" and index > first_user):
            note = ELIDED.format(chars=len(str(message.get("content") or "")))
            out[index] = {**message, "content": note}
            total += len(note) - _size(message)
    return out


def observation_text(observation: Any) -> str:
    """The text of an observation: a GUI env's `{"text", "screenshot"}` dict shows its text, a text env's
    string is itself (so every text harness drives GUI envs through their tool schemas)."""
    if isinstance(observation, dict):
        return str(observation.get("text", ""))
    return observation if isinstance(observation, str) else str(observation)


def end_tool(tools: list[dict[str, Any]]) -> str:
    """The tool that ends this env's episodes, named in prompts: `submit` (SWE) or `finish` (Claw)."""
    return end_action([tool["function"]["name"] for tool in tools])["name"]


class Harness(ABC):
    """How a model talks to an env: the prompt, tools offered, parsing of replies and observations."""

    name: ClassVar[str]

    def __init__(
        self,
        observation_chars: int = 20_000,
        max_format_errors: int = 3,
        context_chars: int = 400_000,
        keep_recent: int = 8,
        max_turns: int | None = None,
    ) -> None:
        if max_turns is not None and max_turns < 1:
            raise ConfigError(f"max_turns must be at least 1, not {max_turns}")
        # model replies before the runner cuts the episode (status `turn_limit`, not graded; the env's own
        # truncation is `step_limit`, graded); None: only the env's limit applies
        self.max_turns = max_turns
        self.observation_chars = observation_chars
        self.max_format_errors = max_format_errors
        self.context_chars = context_chars
        self.keep_recent = keep_recent

    def context(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """What the model sees. The whole conversation while it fits in `context_chars`; past that, the
        oldest observations are elided (the task statement and the last `keep_recent` messages always stay).
        The episode still records every message."""
        return elide_old_observations(messages, self.context_chars, self.keep_recent)

    def check_tools(self, tools: list[dict[str, Any]]) -> None:
        """Raise ConfigError if this harness cannot express the env's tools."""

    @abstractmethod
    def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        """(the opening messages, the tools offered to the model through the API)."""

    def opening(self, observation: Any) -> list[dict[str, Any]]:
        """Messages to add after `start`'s, from reset's observation (the GUI harness shows the first
        screenshot); none by default: the instruction already holds the text."""
        return []

    def api_tools(self, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tools sent through the model API (text harnesses describe them in the prompt instead)."""
        return offered

    @abstractmethod
    def parse(self, turn: AssistantTurn) -> list[Call] | FormatError:
        """The tool calls in a reply, or a FormatError to send back to the model."""

    @abstractmethod
    def observation(self, call: Call, observation: Any) -> dict[str, Any]:
        """The message that shows the model what its action did (`observation_text` of a GUI one)."""

    def format_error(self, error: FormatError) -> dict[str, Any]:
        """The message that tells the model what was wrong with its reply."""
        return {"role": "user", "content": f"Format error: {error.message}"}

    @abstractmethod
    def encode(self, action: Action) -> AssistantTurn:
        """A turn that this harness parses back into `action` (scripted agents speak through it)."""
