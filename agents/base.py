"""The agent contract: messages + tools in, one assistant turn out (with exact tokens where known).

An agent knows nothing about envs. Scripted agents (oracle, replay) that act from a plan get the plan's
actions rendered into turns by the harness (`EpisodeContext.encode`), so they work under every harness.
The env's hidden task (gold patch included) reaches only agents that declare `wants_hidden_task` (this
project's scripted solvers): a model agent or a user's agent gets a context without it.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from orchard_envs.agents.sampling_seeds import EpisodeDraws


class ContextOverflow(Exception):
    """The prompt alone fills the model's context window; the episode ends with status `context_limit`."""


@dataclass
class AssistantTurn:
    """One model reply, and the token-in-token-out record trainers need (never re-tokenized text)."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI format, arguments as JSON text
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def message(self) -> dict[str, Any]:
        """The OpenAI chat message this turn adds to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message


@dataclass
class EpisodeContext:
    """What the runner tells an agent at the start of an episode.

    `task` is the env's hidden task (gold patch included), set only for agents with `wants_hidden_task`;
    None for every other agent. `encode` renders an env action ({"name", "arguments"}) as a turn in the
    harness's format. `task_id` and `trial` identify the episode among the run's (task, trial) jobs, so
    sampling agents draw each trial independently (`draws`).
    """

    env_id: str
    task: Any
    tool_names: list[str]
    encode: Callable[[dict[str, Any]], AssistantTurn]
    task_id: str = ""
    trial: int = 0

    def draws(self, run_seed: int | None) -> EpisodeDraws:
        """This episode's draw seeds under the agent's run seed: one per turn, distinct per trial."""
        return EpisodeDraws(run_seed, self.task_id, self.trial)


class Agent(ABC):
    """A policy. `name` is its registry name; `model` and `sampling` go into every episode's metadata.
    `wants_hidden_task` declares a scripted solver of this project, the only kind handed `context.task`."""

    name: ClassVar[str]
    wants_hidden_task: ClassVar[bool] = False
    model: str = ""
    sampling: dict[str, Any] = {}

    def start(self, context: EpisodeContext) -> None:
        """Called before the first turn of each episode; models ignore it, scripted agents plan here."""

    def preflight(self) -> None:
        """Fail fast (ConfigError) when the agent cannot work at all, e.g. its endpoint is unreachable,
        before a run records hundreds of failed episodes."""

    def clone(self) -> Agent:
        """An agent for another concurrent episode: shares what is heavy and read-only (a loaded model, an
        HTTP client), not per-episode state. Subclasses with mutable per-episode objects override this."""
        return copy.copy(self)

    @abstractmethod
    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        """The next assistant turn for the conversation so far; `tools` are the schemas the harness offers."""


# The tool that ends an episode: SWE submits, Claw finishes with a reply, the GUI envs say they are done.
END_TOOLS = ("submit", "finish", "done")


def end_action(tool_names: list[str]) -> dict[str, Any]:
    """The action that ends an episode of an env with these tools (an empty reply where one is expected)."""
    if "submit" in tool_names:
        return {"name": "submit", "arguments": {}}
    if "finish" in tool_names:
        return {"name": "finish", "arguments": {"answer": ""}}
    if "done" in tool_names:
        return {"name": "done", "arguments": {}}
    return {"name": "submit", "arguments": {}}


class ScriptedAgent(Agent):
    """Plays a list of env actions planned at `start`, each rendered by the harness; then ends the episode.
    A scripted solver plans from the hidden task, so it is handed it; one that needs no task opts out."""

    wants_hidden_task: ClassVar[bool] = True

    def __init__(self) -> None:
        self._turns: list[AssistantTurn] = []
        self._encode: Callable[[dict[str, Any]], AssistantTurn] | None = None
        self._end: dict[str, Any] = end_action([])

    def start(self, context: EpisodeContext) -> None:
        """Encode the plan for this episode with the harness's encoder; `act` then replays it."""
        self._encode = context.encode
        self._end = end_action(context.tool_names)
        self._turns = [context.encode(action) for action in self.plan(context)]

    def plan(self, context: EpisodeContext) -> list[dict[str, Any]]:
        """The actions to play, in order; override it. The default only ends the episode."""
        return [end_action(context.tool_names)]

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        """The next planned turn; once the plan ran out, the env's end action."""
        if self._turns:
            return self._turns.pop(0)
        assert self._encode is not None, "start() was not called"
        return self._encode(self._end)  # the plan ran out: end the episode
