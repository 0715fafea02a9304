"""The harness contract: the scaffold between a model's turns and an env's actions.

A harness decides the prompt, which of the env's tools the model sees and how, how a reply becomes env
actions, and how observations are shown back. It knows nothing about sandboxes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from orchard_envs.agents.base import AssistantTurn

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


class Harness(ABC):
    name: ClassVar[str]

    def __init__(self, observation_chars: int = 20_000, max_format_errors: int = 3) -> None:
        self.observation_chars = observation_chars
        self.max_format_errors = max_format_errors

    def check_tools(self, tools: list[dict[str, Any]]) -> None:
        """Raise ConfigError if this harness cannot express the env's tools."""

    @abstractmethod
    def start(self, instruction: str, tools: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        """(the opening messages, the tools offered to the model through the API)."""

    def api_tools(self, offered: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tools sent through the model API (text harnesses describe them in the prompt instead)."""
        return offered

    @abstractmethod
    def parse(self, turn: AssistantTurn) -> list[Call] | FormatError: ...

    @abstractmethod
    def observation(self, call: Call, observation: str) -> dict[str, Any]:
        """The message that shows the model what its action did."""

    def format_error(self, error: FormatError) -> dict[str, Any]:
        return {"role": "user", "content": f"Format error: {error.message}"}

    @abstractmethod
    def encode(self, action: Action) -> AssistantTurn:
        """A turn that this harness parses back into `action` (scripted agents speak through it)."""
