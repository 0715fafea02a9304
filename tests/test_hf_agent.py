"""The `hf` agent (real SmolLM2-135M-Instruct on CPU) driving orchard/SWE-v0 under every harness."""

from __future__ import annotations

import gymnasium as gym
import pytest
from helpers import assert_round_trips
from test_runner import HARNESSES, TASK

from orchard_envs.agents import get_agent
from orchard_envs.agents.hf import HFAgent
from orchard_envs.agents.hf_backend import HFGenerator
from orchard_envs.errors import ConfigError
from orchard_envs.harnesses import get_harness
from orchard_envs.runner import run_episode


@pytest.fixture(scope="module")
def generator(hf_generator: HFGenerator) -> HFGenerator:
    return hf_generator


@pytest.fixture(scope="module")
def env(local_backend):
    environment = gym.make("orchard/SWE-v0", backend=local_backend, max_steps=2)
    yield environment
    environment.close()


@pytest.mark.parametrize("harness", HARNESSES)
def test_smollm2_runs_an_swe_episode_token_in_token_out(env, generator, harness, tmp_path):
    agent = HFAgent(generator=generator, max_new_tokens=40)
    episode = run_episode(
        env, get_harness(harness, max_format_errors=1), agent, task_id=TASK.instance_id, seed=3
    )
    meta = episode.metadata
    assert meta.status in ("submitted", "step_limit", "format_errors"), meta.error
    assert (meta.agent, meta.model, meta.harness) == ("hf", "SmolLM2-135M-Instruct", harness)
    assistant = [i for i, m in enumerate(episode.messages) if m["role"] == "assistant"]
    assert [turn.message_index for turn in episode.turns] == assistant and len(assistant) >= 2
    for turn in episode.turns:
        assert turn.prompt_token_ids and turn.token_ids and len(turn.logprobs) == len(turn.token_ids)
    # ChatML keeps history verbatim, so every prompt extends the previous prompt + sample
    assert [turn.extends_previous for turn in episode.turns] == [None] + [True] * (len(episode.turns) - 1)
    assert meta.tokens["prefix_breaks"] == 0
    assert meta.tokens["completion"] == sum(len(turn.token_ids) for turn in episode.turns)
    assert_round_trips(episode, tmp_path)


def test_the_runner_gives_the_hf_agent_no_hidden_task(env, generator, monkeypatch):
    agent = HFAgent(generator=generator, max_new_tokens=4)
    seen = []
    start = agent.start
    monkeypatch.setattr(agent, "start", lambda context: (seen.append(context), start(context))[1])
    run_episode(env, get_harness("react", max_turns=1), agent, task_id=TASK.instance_id, trial=1)
    (context,) = seen
    assert context.task is None and (context.task_id, context.trial) == (TASK.instance_id, 1)
    assert env.unwrapped.task.patch  # the env holds the gold patch; the model agent was not handed it


def test_a_prompt_beyond_the_window_ends_the_episode_as_context_limit(env, generator, monkeypatch):
    monkeypatch.setattr(generator, "context_tokens", 64)
    agent = HFAgent(generator=generator, max_new_tokens=8)
    episode = run_episode(env, get_harness("bash-only"), agent, task_id=TASK.instance_id)
    assert episode.metadata.status == "context_limit" and "context window is 64" in episode.metadata.error


def test_the_registry_builds_hf_and_explains_a_missing_model(generator):
    assert get_agent("hf", generator=generator).model == "SmolLM2-135M-Instruct"
    with pytest.raises(ConfigError, match="no such model folder: /nonexistent/checkpoint"):
        get_agent("hf", model="/nonexistent/checkpoint")


def test_vllm_is_optional_and_says_how_to_get_it():
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"orchard-envs\[vllm\]"):
            get_agent("vllm")
    else:
        pytest.skip("vLLM is installed: tests/test_vllm_agent.py runs it instead")
