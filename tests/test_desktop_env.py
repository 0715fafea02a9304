"""orchard/Desktop-v0 end to end on a real Xvfb with real apps in local sandboxes: the oracle's real input
events solve a task of every family (both action spaces), noop and wrong endings score 0."""

from __future__ import annotations

import shutil

import gymnasium as gym
import numpy as np
import pytest
from conftest import require

from orchard_envs.agents.desktop_oracle import plan
from orchard_envs.envs import register_envs

APPS = ("Xvfb", "bwrap", "nsenter", "openbox", "mousepad", "gnumeric", "ssconvert", "pcmanfm", "stterm")


@pytest.fixture(scope="module")
def env():
    missing = [app for app in APPS if shutil.which(app) is None]
    require(not missing, f"the desktop needs {', '.join(missing)} (scripts/setup.sh installs them)")
    register_envs()
    with gym.make("orchard/Desktop-v0") as made:
        yield made.unwrapped


def play(env, task_id: str, actions=None):
    observation, info = env.reset(options={"task_id": task_id})
    assert env.observation_space.contains(observation)
    names = [tool["function"]["name"] for tool in info["tools"]]
    reward, info = 0.0, {}
    for action in actions if actions is not None else plan(env.task, names):
        observation, reward, terminated, truncated, info = env.step(action)
        assert not observation["text"].startswith("Error"), observation["text"]
        if terminated or truncated:
            break
    return observation, reward, info


@pytest.mark.parametrize(
    "task_id",
    [
        "text_replace-00",
        "text_append-01",
        "sheet_compute-00",
        "sheet_fill-03",
        "files_rename-02",
        "terminal_output-00",
        "multi_app-01",
        "infeasible-00",
    ],
)
def test_the_oracle_solves_a_task_of_every_family_with_real_input_events(env, task_id):
    _, reward, info = play(env, task_id)
    assert reward == 1.0, info["grading"]["reason"]


def test_ending_at_once_scores_zero_even_on_infeasible_tasks(env):
    for task_id in ("text_replace-01", "sheet_compute-01", "infeasible-01"):
        _, reward, info = play(env, task_id, [{"name": "done", "arguments": {}}])
        assert reward == 0.0 and info["grading"]["ended_with"] == "done"
    _, reward, _ = play(env, "text_replace-01", [{"name": "fail", "arguments": {"reason": "no"}}])
    assert reward == 0.0  # giving up on a feasible task


def test_observation_is_the_screen_and_the_window_list(env):
    observation, _info = env.reset(options={"task_id": "multi_app-00"})
    text = observation["text"]
    assert "Mousepad" in text and "Gnumeric" in text and "width=" in text
    assert observation["screenshot"].shape == (768, 1024, 3) and observation["screenshot"].dtype == np.uint8
    assert observation["screenshot"].std() > 10  # apps are drawn, not a blank screen
    before = observation["screenshot"]
    after, *_ = env.step({"name": "typing", "arguments": {"text": "zzz"}})
    assert (after["screenshot"] != before).any()
    refused, *_ = env.step({"name": "click", "arguments": {"x": 5000, "y": 1}})
    assert refused["text"].startswith("Error: (5000, 1) is off the 1024x768 screen")
    unknown, *_ = env.step({"name": "press", "arguments": {"key": "hyperdrive"}})
    assert unknown["text"].startswith("Error: unknown key(s) 'hyperdrive'")
    env.step({"name": "done", "arguments": {}})


def test_the_code_string_action_space_runs_the_oracle_through_pyautogui_code():
    require(shutil.which("Xvfb") is not None, "Xvfb is not installed")
    register_envs()
    with gym.make("orchard/Desktop-v0", action_space="pyautogui") as made:
        env = made.unwrapped
        _, reward, info = play(env, "text_append-00")
        assert reward == 1.0, info["grading"]["reason"]
        _observation, _ = env.reset(options={"task_id": "text_replace-00"})
        refused, *_ = env.step({"name": "run_code", "arguments": {"code": "import os"}})
        assert refused["text"].startswith("Error: only `import pyautogui` and `import time`")
