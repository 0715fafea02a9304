"""Agents that need no model: `noop`, `oracle` (a per-env solver), `replay` (a recorded episode), `random`."""

from __future__ import annotations

import copy
import importlib
import random
from typing import Any

from orchard_envs.agents.base import (
    END_TOOLS,
    Agent,
    AssistantTurn,
    EpisodeContext,
    ScriptedAgent,
    end_action,
)
from orchard_envs.errors import ConfigError

# Per env id, the function that plans a solution from the hidden task: plan(task, tool_names) -> actions.
ORACLE_PLANS: dict[str, str] = {
    "orchard/SWE-v0": "orchard_envs.agents.swe_oracle:plan",
    "orchard/Claw-v0": "orchard_envs.agents.claw_oracle:plan",
    "orchard/Desktop-v0": "orchard_envs.agents.desktop_oracle:plan",
}


# Per env id, an oracle that must see each observation before it acts (a web page's element ids).
ORACLE_AGENTS: dict[str, str] = {
    "orchard/Web-v0": "orchard_envs.agents.web_oracle:WebOracleAgent",
}


class NoopAgent(ScriptedAgent):
    """Ends the episode at once (submits; or finishes with an empty reply): every task must score 0."""

    name = "noop"
    wants_hidden_task = False  # it plans nothing: least privilege


class OracleAgent(ScriptedAgent):
    """Solves with the task's own solution: every task must score 1 with it."""

    name = "oracle"
    _delegate: Agent | None = None

    def start(self, context: EpisodeContext) -> None:
        """Plan from the hidden task; for an env whose oracle reads each observation, start that one."""
        self._delegate = None
        if context.env_id in ORACLE_AGENTS:
            module, _, attr = ORACLE_AGENTS[context.env_id].partition(":")
            self._delegate = getattr(importlib.import_module(module), attr)()
            self._delegate.start(context)
            return
        super().start(context)

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        """The next planned turn, or the observing oracle's."""
        if self._delegate is not None:
            return self._delegate.act(messages, tools)
        return super().act(messages, tools)

    def plan(self, context: EpisodeContext) -> list[dict[str, Any]]:
        """The env's oracle plan for the task; ConfigError for an env without one."""
        if context.env_id not in ORACLE_PLANS:
            known = ", ".join([*ORACLE_PLANS, *ORACLE_AGENTS])
            raise ConfigError(f"no oracle for env {context.env_id!r}; envs with one: {known}")
        module, _, attr = ORACLE_PLANS[context.env_id].partition(":")
        return getattr(importlib.import_module(module), attr)(context.task, context.tool_names)


class ReplayAgent(Agent):
    """Replays the assistant turns of a recorded episode verbatim (debugging, regression tests)."""

    name = "replay"

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self._recorded = [m for m in messages if m.get("role") == "assistant"]
        self._next = 0

    def start(self, context: EpisodeContext) -> None:
        """Replay from the first recorded turn."""
        self._next = 0

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AssistantTurn:
        """The next recorded assistant turn; ConfigError when the recording ran out."""
        if self._next >= len(self._recorded):
            raise ConfigError("the recorded episode has no more assistant turns to replay")
        message = self._recorded[self._next]
        self._next += 1
        return AssistantTurn(content=message.get("content"), tool_calls=list(message.get("tool_calls") or []))


class RandomAgent(ScriptedAgent):
    """Random tool calls with random (often wrong) arguments: a fuzzer for envs and harnesses."""

    name = "random"
    wants_hidden_task = False  # it plans from the tool names alone

    def __init__(self, seed: int = 0, steps: int = 5) -> None:
        super().__init__()
        self.rng, self.steps = random.Random(seed), steps

    def clone(self) -> RandomAgent:
        """A copy with its own generator, so concurrent episodes do not share draws."""
        twin = copy.copy(self)
        twin.rng = copy.deepcopy(self.rng)  # each concurrent episode draws from its own generator
        return twin

    def plan(self, context: EpisodeContext) -> list[dict[str, Any]]:
        """`steps` random calls of the env's tools, then the end action."""
        end = end_action(context.tool_names)
        names = [n for n in context.tool_names if n not in END_TOOLS] or [end["name"]]
        words = ["ls", "pwd", "cat README*", "x", "", "view", "/", "1"]
        actions = [
            {"name": self.rng.choice(names), "arguments": {"command": self.rng.choice(words)}}
            for _ in range(self.steps)
        ]
        return [*actions, end]


def replay_from(path: str, episode_id: str | None = None) -> ReplayAgent:
    """Replays a recorded episode's assistant turns (path=, episode_id=): debugging, regression tests."""
    from orchard_envs.episodes import read_episodes

    for episode in read_episodes(path):
        if episode_id is None or episode.metadata.episode_id == episode_id:
            return ReplayAgent(episode.messages)
    raise ConfigError(f"{path} has no episode {episode_id!r}")
