"""orchard/Claw-v0 end to end: real service processes over HTTP, every claw-mini task through the runner."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from orchard_envs.agents import get_agent
from orchard_envs.agents.base import Agent, AssistantTurn, ScriptedAgent
from orchard_envs.agents.claw_oracle import WrongAgent
from orchard_envs.errors import ConfigError
from orchard_envs.harnesses import get_harness
from orchard_envs.runner import run_episode
from orchard_envs.tasks.claw.task import load_suite

SUITE = load_suite("claw-mini")
FAULTED = [task for task in SUITE if task.faults]


@pytest.fixture(scope="module")
def env():
    environment = gym.make("orchard/Claw-v0", suite="claw-mini")
    yield environment
    environment.close()


@pytest.mark.parametrize("task_id", [task.task_id for task in SUITE])
def test_oracle_passes_noop_and_the_wrong_plan_fail(env, task_id):
    harness = get_harness("tool-calling")
    oracle = run_episode(env, harness, get_agent("oracle"), task_id=task_id).metadata
    assert (oracle.status, oracle.resolved, oracle.reward) == ("submitted", True, 1.0), oracle.error
    for agent in (get_agent("noop"), WrongAgent()):
        meta = run_episode(env, harness, agent, task_id=task_id).metadata
        assert meta.status == "submitted" and meta.resolved is False and meta.reward < 0.75, agent.name


def test_check_env_passes_with_warnings_as_errors(env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_reset_returns_the_prompt_and_openai_tools(env):
    task = SUITE[0]
    observation, info = env.reset(options={"task_id": task.task_id})
    assert observation == info["instruction"] == task.prompt
    assert [tool["function"]["name"] for tool in info["tools"]] == task.tools
    assert all(tool["type"] == "function" and "parameters" in tool["function"] for tool in info["tools"])
    assert info["task"]["task_id"] == task.task_id and info["task"]["category"] == task.category
    assert "oracle" not in json.dumps(info["task"])  # nothing of the solution leaks to the agent


def test_malformed_calls_are_observations_that_say_what_is_wrong(env):
    task = next(t for t in SUITE if "mail_read" in t.tools)
    env.reset(options={"task_id": task.task_id})
    observation, _, terminated, _, info = env.step({"name": "mail_raed", "arguments": {}})
    assert "mail_read" in observation and info["error"] == "invalid_action" and not terminated
    observation, *_ = env.step({"name": "mail_read", "arguments": {}})
    assert "missing required argument" in observation and "id" in observation
    observation, *_ = env.step({"name": "mail_read", "arguments": {"id": 7}})
    assert "must be string" in observation
    observation, _, _, _, info = env.step({"name": "mail_read", "arguments": {"id": "no-such-id"}})
    assert observation.startswith("Error 404") and info["error"] == "http_404"
    observation, _, terminated, _, _ = env.step('{"name": "finish", "arguments": {}}')
    assert "missing required argument" in observation and not terminated


def test_the_same_task_scores_the_same_every_time(env):
    task = (FAULTED or SUITE)[0]
    gradings = []
    for _ in range(2):
        meta = run_episode(env, get_harness("react"), get_agent("oracle"), task_id=task.task_id).metadata
        gradings.append((meta.reward, meta.reward_breakdown, meta.resolved))
    assert gradings[0] == gradings[1]


@pytest.mark.skipif(not FAULTED, reason="the suite has no task with a fault schedule")
def test_injected_faults_are_seen_and_recovery_is_scored(env):
    task = FAULTED[0]
    episode = run_episode(env, get_harness("tool-calling"), get_agent("oracle"), task_id=task.task_id)
    errors = [m for m in episode.messages if m["role"] == "tool" and m["content"].startswith("Error ")]
    assert errors, "the scheduled fault reached the agent as an error observation"
    assert episode.metadata.reward_breakdown["robustness"] == 1.0

    class NoRetry(ScriptedAgent):
        """The oracle's plan without the retries: the faulted calls are simply lost."""

        name = "no-retry"

        def plan(self, context):
            plan = [action.model_dump() for action in context.task.oracle]
            return [a for i, a in enumerate(plan) if i == 0 or a != plan[i - 1]]

    meta = run_episode(env, get_harness("tool-calling"), NoRetry(), task_id=task.task_id).metadata
    assert meta.reward_breakdown["robustness"] < 1.0 and meta.reward < 1.0


class Chatter(Agent):
    """Lists forever: the task's max_turns must cut the episode, which is then graded."""

    name = "chatter"

    def __init__(self, tool: str) -> None:
        self.tool = tool

    def act(self, messages, tools):
        return AssistantTurn(content=f'<tool_call>{{"name": "{self.tool}", "arguments": {{}}}}</tool_call>')


def test_max_turns_truncates_and_grades(env):
    task = next(t for t in SUITE if "todo_list" in t.tools)
    meta = run_episode(env, get_harness("react"), Chatter("todo_list"), task_id=task.task_id).metadata
    assert meta.status == "step_limit" and meta.steps == task.max_turns and meta.resolved is False


def test_envs_side_by_side_do_not_share_state():
    task = next(t for t in SUITE if {"todo_create", "todo_list"} <= set(t.tools))
    first = gym.make("orchard/Claw-v0", task_ids=[task.task_id])
    second = gym.make("orchard/Claw-v0", task_ids=[task.task_id])
    try:
        first.reset(options={"task_id": task.task_id})
        second.reset(options={"task_id": task.task_id})
        first.step({"name": "todo_create", "arguments": {"title": "only in the first env"}})
        listed, *_ = second.step({"name": "todo_list", "arguments": {}})
        assert "only in the first env" not in listed
        assert first.unwrapped._host.urls != second.unwrapped._host.urls
    finally:
        first.close()
        second.close()


def test_bad_configuration_is_a_clear_error(env):
    with pytest.raises(ConfigError, match="no task 'nope'"):
        env.reset(options={"task_id": "nope"})
    with pytest.raises(ConfigError, match="no task"):
        gym.make("orchard/Claw-v0", split="test", task_ids=["nope"])
    fresh = gym.make("orchard/Claw-v0")
    with pytest.raises(ConfigError, match="call reset"):
        fresh.unwrapped.step({"name": "finish", "arguments": {"answer": ""}})
    fresh.close()


ONE_PER_CATEGORY = list({task.category: task for task in SUITE}.values())


@pytest.mark.parametrize("task_id", [task.task_id for task in ONE_PER_CATEGORY])
def test_the_react_harness_drives_claw_too(env, task_id):
    meta = run_episode(env, get_harness("react"), get_agent("oracle"), task_id=task_id).metadata
    assert (meta.resolved, meta.reward, meta.format_errors) == (True, 1.0, 0)


def test_bash_only_refuses_claw_with_a_clear_message(env):
    with pytest.raises(ConfigError, match="needs an env with 'bash' and 'submit'"):
        run_episode(env, get_harness("bash-only"), get_agent("noop"), task_id=SUITE[0].task_id)


def test_claw_cli_runs_trials_reports_pass_at_k_and_checks_tasks(tmp_path):
    import subprocess
    import sys

    from orchard_envs.episodes import read_episodes

    cli = [sys.executable, "-m", "orchard_envs.tasks.cli", "claw"]
    out = tmp_path / "episodes.jsonl"
    run = [*cli, "run", "--agent", "oracle", "--out", str(out), "--split", "test", "--limit", "2"]
    done = subprocess.run([*run, "--trials", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2 tasks x 2: pass@2 1.000, pass^2 1.000" in done.stdout
    assert len(list(read_episodes(out))) == 4
    checked = subprocess.run([*cli, "check", "--task", SUITE[0].task_id], capture_output=True, text=True)
    assert checked.returncode == 0 and "1 tasks: 0 problems" in checked.stdout
    bad = subprocess.run([*run, "--option", "speed=1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "agent 'oracle'" in bad.stderr and "Traceback" not in bad.stderr
