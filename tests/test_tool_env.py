"""The tool-env base on a toy env (no sandbox): one step loop, limits, clipping, and a typed verdict the
runner reads. SWE and Claw build on the same base, so the loop exists once."""

from __future__ import annotations

from typing import Any

import pytest

from orchard_envs.agents.base import Agent, AssistantTurn, EpisodeContext
from orchard_envs.envs.claw import ClawEnv
from orchard_envs.envs.swe import SWEEnv
from orchard_envs.envs.tool_env import ToolEnv
from orchard_envs.envs.tools import ToolCall, function_tool
from orchard_envs.envs.verdict import Verdict
from orchard_envs.errors import ConfigError
from orchard_envs.harnesses import get_harness
from orchard_envs.runner import run_episode

TOOLS = [
    function_tool("add", "Add n to the counter.", {"n": {"type": "integer"}}, ["n"]),
    function_tool("shout", "Print n characters.", {"n": {"type": "integer"}}, ["n"]),
    function_tool("submit", "End the episode.", {}, []),
]


class CountVerdict(Verdict):
    """A verdict with an env-specific field that the episode keeps."""

    count: int

    def episode_extras(self) -> dict[str, Any]:
        return {"final_count": self.count}


class CounterEnv(ToolEnv):
    """Reach a count of 2, then submit."""

    ending_tools = frozenset({"submit"})
    max_observation = 1_000

    def __init__(self, max_steps: int | None = 4, render_mode: str | None = None) -> None:
        super().__init__(max_steps=max_steps, render_mode=render_mode)
        self.count, self.ended = 0, 0

    def _begin(self, task_id: str | None) -> tuple[str, dict[str, Any]]:
        self.count, self._tools = 0, TOOLS
        return "Count to 2, then submit.", {"task": {"task_id": task_id or "count", "suite": "toy"}}

    def _run_tool(self, call: ToolCall, info: dict[str, Any]) -> str:
        if call.name == "add":
            self.count += call.arguments["n"]
            return f"count={self.count}"
        return "x" * call.arguments["n"] if call.name == "shout" else ""

    def _grade(self, ending_call: ToolCall | None) -> CountVerdict:
        solved = ending_call is not None and self.count == 2
        return CountVerdict(
            status="passed" if solved else "failed",
            reward=float(solved),
            resolved=solved,
            breakdown={"count": float(solved)},
            suspicious=["counted backwards"] if self.count < 0 else [],
            reason="" if solved else f"count is {self.count}",
            count=self.count,
        )

    def _end(self) -> None:
        self.ended += 1


def test_the_step_loop_parses_limits_and_grades_once():
    env = CounterEnv(max_steps=3)
    observation, info = env.reset(seed=0)
    assert observation == info["instruction"] and [t["function"]["name"] for t in info["tools"]] == [
        "add",
        "shout",
        "submit",
    ]
    observation, reward, terminated, truncated, info = env.step('{"name": "ad", "arguments": {}}')
    assert "did you mean 'add'" in observation and info["error"] == "invalid_action"
    assert (reward, terminated, truncated) == (0.0, False, False) and "verdict" not in info
    assert env.step({"name": "add", "arguments": {"n": 2}})[0] == "count=2"
    observation, reward, terminated, truncated, info = env.step({"name": "add", "arguments": {"n": 1}})
    assert (terminated, truncated, reward) == (False, True, 0.0)  # cut at max_steps, and graded
    assert isinstance(info["verdict"], CountVerdict) and info["grading"] == info["verdict"].as_info()
    assert info["grading"]["reason"] == "count is 3" and env.ended == 1
    with pytest.raises(ConfigError, match="call reset"):
        env.step({"name": "submit"})


def test_submit_terminates_with_the_verdicts_reward():
    env = CounterEnv()
    env.reset(seed=0)
    env.step({"name": "add", "arguments": {"n": 2}})
    observation, reward, terminated, truncated, info = env.step({"name": "submit"})
    assert (reward, terminated, truncated, info["verdict"].status) == (1.0, True, False, "passed")
    assert observation == "Submitted. Grading: passed."


def test_observations_are_clipped_to_the_declared_space():
    env = CounterEnv()
    env.reset(seed=0)
    observation, *_ = env.step({"name": "shout", "arguments": {"n": 5_000}})
    assert len(observation) <= env.max_observation and "characters omitted" in observation
    assert env.observation_space.contains(observation)


class Script(Agent):
    """Sends the given tool calls, one per turn."""

    name = "script"

    def __init__(self, *calls: dict[str, Any]) -> None:
        self.calls = list(calls)

    def start(self, context: EpisodeContext) -> None:
        self.encode = context.encode

    def act(self, messages, tools):
        return self.encode(self.calls.pop(0)) if self.calls else AssistantTurn(content="done")


def test_the_runner_records_the_typed_verdict():
    agent = Script({"name": "add", "arguments": {"n": -1}}, {"name": "submit", "arguments": {}})
    meta = run_episode(CounterEnv(), get_harness("tool-calling"), agent).metadata
    assert (meta.status, meta.reward, meta.resolved, meta.reward_breakdown) == (
        "submitted",
        0.0,
        False,
        {"count": 0.0},
    )
    extra = meta.model_extra
    assert extra["verify_status"] == "failed" and extra["error"] == "count is -1"
    assert extra["suspicious"] == ["counted backwards"] and extra["final_count"] == -1


def test_swe_and_claw_share_the_one_step_loop():
    for env_class in (SWEEnv, ClawEnv):
        assert issubclass(env_class, ToolEnv)
        assert "step" not in vars(env_class) and "reset" not in vars(env_class)
