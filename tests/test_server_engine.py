"""ServerEngine: rollouts sampled by a served model (a real orchard-serve over uvicorn, the toy checkpoint of
rl_toy), token ids in and out over `/v1/completions`, and what it must equal: the same engine in-process."""

from __future__ import annotations

import gymnasium as gym
import httpx
import pytest
import rl_toy
from helpers import serving

from orchard_envs.agents.base import ContextOverflow
from orchard_envs.agents.hf import HFAgent
from orchard_envs.agents.hf_backend import HFGenerator, Sampling
from orchard_envs.agents.rollout.protocol import make_engine
from orchard_envs.agents.rollout.server_engine import ServerEngine
from orchard_envs.errors import BackendUnavailable, ConfigError
from orchard_envs.model_server.app import create_app
from orchard_envs.runner import run_episode

pytest.importorskip("torch")

PROMPTS = [[2, 4, 7, 8, 3], [2, 4, 9], [2, 5, 10, 11, 12, 13, 3, 2, 5]]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server-engine")
    return rl_toy.build_tiny_model(folder / "a", seed=0), rl_toy.build_tiny_model(folder / "b", seed=1)


@pytest.fixture
def served(checkpoints):
    """(engine over a fresh server on checkpoint a, the served generator)."""
    generator = HFGenerator(str(checkpoints[0]), device="cpu")
    with serving(create_app(generator, served_name="toy", api_key="k")) as url:
        engine = ServerEngine(url, api_key="k", tokenizer=str(checkpoints[0]))
        yield engine, generator
        engine.close()


def _local(checkpoint) -> HFGenerator:
    return HFGenerator(str(checkpoint), device="cpu")


@pytest.mark.parametrize(
    "sampling", [Sampling(12), Sampling(12, temperature=1.0, seed=7), Sampling(12, 0.8, 0.9, seed=3)]
)
def test_the_server_samples_what_the_same_engine_samples_in_process(served, checkpoints, sampling):
    engine, _ = served
    remote = engine.generate(PROMPTS, sampling)
    local = _local(checkpoints[0]).generate(PROMPTS, sampling)
    # the same rows through the same engine code on the same machine: bit-identical, JSON floats round-trip
    assert [g.token_ids for g in remote] == [g.token_ids for g in local]
    assert [g.logprobs for g in remote] == [g.logprobs for g in local]
    assert [g.finish_reason for g in remote] == [g.finish_reason for g in local]
    assert [g.prompt_tokens for g in remote] == [len(p) for p in PROMPTS]
    assert all(g.extra == {"weights_version": 0} for g in remote)


def test_the_engine_knows_the_served_model(served, checkpoints):
    engine, generator = served
    assert (engine.name, engine.context_tokens) == ("toy", generator.context_tokens)
    assert engine.end_token_ids == generator.end_token_ids
    assert engine.tokenizer.encode("say red") == generator.tokenizer.encode("say red")


def test_completions_take_token_ids_with_n_and_refuse_text(served):
    engine, _ = served
    body = {
        "prompt": PROMPTS[:2],
        "max_tokens": 4,
        "n": 2,
        "seed": 5,
        "temperature": 1.0,
        "logprobs": 0,
        "return_token_ids": True,
    }
    answer = engine.client.post("/v1/completions", json=body)
    assert answer.status_code == 200, answer.text
    choices = answer.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    assert [c["prompt_token_ids"] for c in choices] == [PROMPTS[0]] * 2 + [PROMPTS[1]] * 2
    for choice in choices:
        assert len(choice["logprobs"]["token_logprobs"]) == len(choice["token_ids"]) >= 1
    refused = engine.client.post("/v1/completions", json={"prompt": "say red", "max_tokens": 2})
    assert refused.status_code == 400 and "token-id prompts" in refused.json()["error"]["message"]


def test_bad_prompts_fail_their_own_call_with_the_reason(served, checkpoints):
    engine, _ = served
    with pytest.raises(ValueError, match="vocabulary"):
        engine.generate([[2, 10_000]], Sampling(2))
    with pytest.raises(ContextOverflow, match="context window"):
        engine.generate([[4] * (engine.context_tokens + 1)], Sampling(2))
    assert engine.generate([PROMPTS[0]], Sampling(3))[0].token_ids  # the server is still fine


def test_load_weights_from_a_state_dict_or_a_folder_changes_what_is_sampled(served, checkpoints, tmp_path):
    engine, _ = served
    other = _local(checkpoints[1])
    assert engine.load_weights(other.model.state_dict()) == 1
    assert not list(tmp_path.iterdir())
    remote = engine.generate(PROMPTS, Sampling(8))
    assert [g.token_ids for g in remote] == [g.token_ids for g in other.generate(PROMPTS, Sampling(8))]
    assert all(g.extra == {"weights_version": 1} for g in remote)
    assert engine.load_weights(checkpoints[0]) == 2
    first = _local(checkpoints[0]).generate(PROMPTS, Sampling(8))
    assert [g.token_ids for g in engine.generate(PROMPTS, Sampling(8))] == [g.token_ids for g in first]
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        engine.load_weights(tmp_path)


def test_the_hf_agent_over_the_server_plays_the_episode_it_plays_in_process(served, checkpoints):
    rl_toy.register()
    engine, _ = served
    episodes = []
    for generator in (engine, _local(checkpoints[0])):
        env = gym.make(rl_toy.ENV_ID)
        agent = HFAgent(generator=generator, max_new_tokens=6, temperature=1.0, seed=11)
        episodes.append(run_episode(env, rl_toy.FirstWordHarness(), agent, task_id="red", seed=11))
        env.close()
    remote, local = episodes
    assert remote.metadata.status == local.metadata.status
    assert [t.token_ids for t in remote.turns] == [t.token_ids for t in local.turns]
    assert [t.prompt_token_ids for t in remote.turns] == [t.prompt_token_ids for t in local.turns]
    assert remote.metadata.model == "toy"


def test_make_engine_and_the_mistakes_it_names(served, checkpoints):
    engine, _ = served
    made = make_engine("server", base_url=engine.base_url, api_key="k", tokenizer=str(checkpoints[0]))
    assert isinstance(made, ServerEngine) and made.name == "toy"
    with pytest.raises(ConfigError, match="serves: toy"):
        ServerEngine(engine.base_url, "gpt-4", api_key="k")
    with pytest.raises(ConfigError, match="incorrect API key"):
        ServerEngine(engine.base_url, api_key="wrong")
    no_tokenizer = ServerEngine(engine.base_url, api_key="k")
    with pytest.raises(ConfigError, match="tokenizer=PATH"):
        no_tokenizer.end_token_ids  # noqa: B018
    with pytest.raises(BackendUnavailable, match="is the server running"):
        ServerEngine("http://127.0.0.1:9", timeout=2)
    assert httpx.get(f"{engine.base_url}/health").status_code == 200
