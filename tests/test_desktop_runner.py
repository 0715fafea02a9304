"""Desktop-v0 through the project's runner and harnesses: the oracle's plan played by a scripted agent
scores 1, the episode records the window list as text, and the embedded model plays an episode end to
end on that text."""

from __future__ import annotations

import shutil
from typing import Any

import gymnasium as gym
import pytest
from conftest import require

from orchard_envs.agents.base import EpisodeContext, ScriptedAgent
from orchard_envs.agents.desktop_oracle import plan
from orchard_envs.envs import register_envs
from orchard_envs.harnesses import get_harness
from orchard_envs.runner import run_episode


class DesktopOracle(ScriptedAgent):
    """The desktop oracle as a scripted agent (until `oracle` knows this env)."""

    name = "desktop-oracle"

    def plan(self, context: EpisodeContext) -> list[dict[str, Any]]:
        return plan(context.task, context.tool_names)


@pytest.fixture(scope="module")
def env():
    require(shutil.which("Xvfb") is not None and shutil.which("openbox") is not None, "Xvfb/openbox missing")
    register_envs()
    with gym.make("orchard/Desktop-v0", task_ids=["text_replace-02", "infeasible-02"]) as made:
        yield made


@pytest.mark.parametrize("task_id", ["text_replace-02", "infeasible-02"])
def test_the_oracle_scores_one_through_the_runner(env, task_id):
    episode = run_episode(env, get_harness("tool-calling"), DesktopOracle(), task_id=task_id)
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
