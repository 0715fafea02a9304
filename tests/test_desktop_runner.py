"""Desktop-v0 through the project's runner and harnesses: the `oracle` agent scores 1, the episode records
the window list as text, and the embedded model plays an episode end to end on that text."""

from __future__ import annotations

import shutil

import gymnasium as gym
import pytest
from conftest import require

from orchard_envs.agents import get_agent
from orchard_envs.envs import register_envs
from orchard_envs.harnesses import get_harness
from orchard_envs.runner import run_episode


@pytest.fixture(scope="module")
def env():
    require(shutil.which("Xvfb") is not None and shutil.which("openbox") is not None, "Xvfb/openbox missing")
    register_envs()
    with gym.make("orchard/Desktop-v0", task_ids=["text_replace-02", "infeasible-02"]) as made:
        yield made


@pytest.mark.parametrize("task_id", ["text_replace-02", "infeasible-02"])
def test_the_oracle_scores_one_through_the_runner(env, task_id):
    episode = run_episode(env, get_harness("tool-calling"), get_agent("oracle"), task_id=task_id)
    assert episode.metadata.reward == 1.0
    assert any("Windows (x, y" in str(m.get("content")) for m in episode.messages)  # the window list


def test_the_embedded_model_plays_an_episode_on_the_window_list(env, hf_generator):
    from orchard_envs.agents.hf import HFAgent

    agent = HFAgent(generator=hf_generator, max_new_tokens=48)
    episode = run_episode(env, get_harness("tool-calling", max_turns=2), agent, task_id="text_replace-02")
    assert (
        episode.metadata.reward in (0.0, 1.0)
        and len([m for m in episode.messages if m["role"] == "assistant"]) >= 1
    )
