"""`orchard/SWE-v0` end to end on real sandboxes: the Gymnasium contract, tools, mistakes, limits, grading."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from orchard_envs.agents.swe_oracle import gold_patch_actions
from orchard_envs.errors import ConfigError
from orchard_envs.tasks.swe.instance import load_suite

SUITE = "swe-mini"
TASK = next(i for i in load_suite(SUITE) if i.repo == "inflection")  # a small, fast test suite


@pytest.fixture
def env(local_backend):
    environment = gym.make("orchard/SWE-v0", suite=SUITE, backend=local_backend, max_steps=6)
    yield environment
    environment.close()


def test_make_without_prior_import():
    code = (
        "import gymnasium as gym; env = gym.make('orchard_envs:orchard/SWE-v0'); "
        "print(env.spec.id, env.spec.entry_point); env.close()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["orchard/SWE-v0", "orchard_envs.envs.swe:SWEEnv"]


def test_check_env_passes_with_warnings_as_errors(env):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_reset_gives_instruction_tools_and_metadata_but_not_the_answer(env):
    obs, info = env.reset(options={"task_id": TASK.instance_id})
    assert TASK.problem_statement.strip() in obs and obs == info["instruction"]
    assert [t["function"]["name"] for t in info["tools"]] == ["bash", "str_replace_editor", "submit"]
    assert all(t["type"] == "function" and "parameters" in t["function"] for t in info["tools"])
    assert info["task"]["instance_id"] == TASK.instance_id
    leaked = json.dumps(info)
    assert TASK.patch not in leaked and "FAIL_TO_PASS" not in leaked
    assert env.observation_space.contains(obs)


def test_seeded_reset_picks_the_same_task(env):
    first = env.reset(seed=7)[1]["task"]["instance_id"]
    assert env.reset(seed=7)[1]["task"]["instance_id"] == first


@pytest.mark.parametrize(
    "action, expected",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"arguments": {}}, 'no tool "name"'),
        ({"name": "bsh", "arguments": {"command": "ls"}}, "did you mean 'bash'"),
        ({"name": "bash", "arguments": {}}, "missing required argument(s): command"),
        ({"name": "bash", "arguments": {"command": 3}}, "'command' must be string"),
        ({"name": "bash", "arguments": {"command": "ls", "cwd": "/"}}, "has no argument 'cwd'"),
        ({"name": "bash", "arguments": "{bad"}, "arguments of 'bash' are not valid JSON"),
        ({"name": "str_replace_editor", "arguments": {"command": "delete", "path": "x"}}, "must be one of"),
        (
            {
                "name": "str_replace_editor",
                "arguments": {"command": "view", "path": "x", "view_range": ["a"]},
            },
            "must be integer",
        ),
        (42, "must be a JSON string or a dict"),
    ],
)
def test_malformed_action_is_an_observation_not_an_exception(env, action, expected):
    env.reset(options={"task_id": TASK.instance_id})
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs.startswith("Error: ") and expected in obs
    assert (reward, terminated, truncated, info["error"]) == (0.0, False, False, "invalid_action")


def test_openai_tool_call_shape_and_persistent_session(env):
    env.reset(options={"task_id": TASK.instance_id})
    call = {
        "type": "function",
        "function": {"name": "bash", "arguments": json.dumps({"command": "cd inflection"})},
    }
    env.step(call)
    obs, *_, info = env.step({"name": "bash", "arguments": {"command": "pwd; export X=1"}})
    assert obs.strip() == "/workspace/repo/inflection" and info["exit_code"] == 0
    obs, *_, info = env.step(json.dumps({"name": "bash", "arguments": {"command": "echo $X; exit 3"}}))
    assert obs.startswith("1") and "[exit code 3]" in obs and info["exit_code"] == 3


def test_editor_mistake_is_an_observation(env):
    env.reset(options={"task_id": TASK.instance_id})
    obs, _, terminated, _, info = env.step(
        {
            "name": "str_replace_editor",
            "arguments": {
                "command": "str_replace",
                "path": "setup.py",
                "old_str": "no such text",
                "new_str": "x",
            },
        }
    )
    assert obs.startswith("Error: ") and info["error"] == "tool_error" and not terminated


def test_command_timeout_is_reported(local_backend):
    with gym.make("orchard/SWE-v0", backend=local_backend, command_timeout=1) as env:
        env.reset(options={"task_id": TASK.instance_id})
        obs, *_, _info = env.step({"name": "bash", "arguments": {"command": "sleep 30"}})
        assert "[timed out after 1 s]" in obs
        obs, *_ = env.step({"name": "bash", "arguments": {"command": "echo alive"}})
        assert obs.strip() == "alive"


def test_step_limit_truncates_and_grades(local_backend):
    with gym.make("orchard/SWE-v0", backend=local_backend, max_steps=2) as env:
        env.reset(options={"task_id": TASK.instance_id})
        assert env.step({"name": "bash", "arguments": {"command": "true"}})[3] is False
        _obs, reward, terminated, truncated, info = env.step(
            {"name": "bash", "arguments": {"command": "true"}}
        )
        assert (terminated, truncated, reward) == (False, True, 0.0)
        assert info["grading"]["status"] == "unresolved" and info["grading"]["patch"] == ""


def test_an_oversized_diff_is_an_unresolved_episode_not_an_infrastructure_error(env):
    """A diff over the agent sandbox's output cap (a log written into the repository, say) is the agent's
    doing: the episode ends unresolved with the reason, instead of raising an error the runner retries."""
    env.reset(options={"task_id": TASK.instance_id})
    big = "head -c 1500000 /dev/zero | tr '\\0' a | fold -w 100 > debug.log"  # 1.5 MB, over the 1 MB cap
    env.step({"name": "bash", "arguments": {"command": big}})
    obs, reward, terminated, _truncated, info = env.step({"name": "submit", "arguments": {}})
    grading = info["grading"]
    assert (reward, terminated, grading["status"]) == (0.0, True, "unresolved")
    assert "larger than the sandbox output cap" in grading["reason"] and "unresolved" in obs


def test_submit_reports_patch_tests_and_timings(env):
    env.reset(options={"task_id": TASK.instance_id})
    for action in gold_patch_actions(TASK.patch):
        _obs, reward, terminated, truncated, info = env.step(action)
    grading = info["grading"]
    assert (reward, terminated, truncated, grading["status"]) == (1.0, True, False, "resolved")
    assert grading["patch"].startswith("diff --git") and grading["graded_patch"] == grading["patch"]
    assert sorted(grading["tests"]["fail_to_pass_success"]) == sorted(TASK.FAIL_TO_PASS)
    assert {"sandbox", "verify", "tests", "total", "extract"} <= set(grading["timings"])
    assert grading["suspicious"] == [] and grading["canary"]


def test_misuse_raises_clear_errors(env):
    with pytest.raises(ConfigError, match="call reset"):
        env.unwrapped.step({"name": "submit"})  # gym.make's OrderEnforcing would say ResetNeeded first
    with pytest.raises(ConfigError, match="no task 'nope'"):
        env.reset(options={"task_id": "nope"})
    env.reset(options={"task_id": TASK.instance_id})
    env.step({"name": "submit"})
    with pytest.raises(ConfigError, match="episode is over"):
        env.step({"name": "submit"})


def test_unknown_suite_names_the_bundled_ones():
    with pytest.raises(ConfigError, match="swe-mini"):
        gym.make("orchard/SWE-v0", suite="swe-maxi")
