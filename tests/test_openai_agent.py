"""The `openai` agent against a real orchard-serve (SmolLM2 on CPU), a scripted one, and small fake servers
that misbehave on purpose; then whole SWE episodes under every harness."""

from __future__ import annotations

import socket

import gymnasium as gym
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from helpers import FixedReplyGenerator, assert_round_trips, serving

from orchard_envs.agents import get_agent
from orchard_envs.agents.base import Agent, AssistantTurn, ContextOverflow, EpisodeContext
from orchard_envs.agents.hf_backend import HFGenerator
from orchard_envs.agents.openai_agent import OpenAIAgent
from orchard_envs.agents.sampling_seeds import draw_seed
from orchard_envs.episodes.schema import STATUSES
from orchard_envs.errors import BackendUnavailable, ConfigError
from orchard_envs.harnesses import get_harness
from orchard_envs.model_server.app import create_app
from orchard_envs.runner import run_episode
from orchard_envs.tasks.swe.instance import load_suite

SERVED = "smol"
KEY = "sesame"
HELLO = [{"role": "user", "content": "Say hello."}]
TASK = next(i for i in load_suite("swe-mini") if i.repo == "parse")
TOOL_REPLY = '<tool_call>\n{"name": "bash", "arguments": {"command": "ls"}}\n</tool_call>'
BASH = {"type": "function", "function": {"name": "bash", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def generator(hf_generator: HFGenerator) -> HFGenerator:
    return hf_generator


@pytest.fixture(scope="module")
def url(generator):
    with serving(create_app(generator, served_name=SERVED)) as base:
        yield f"{base}/v1"


@pytest.fixture(scope="module")
def keyed_url(generator):
    with serving(create_app(generator, served_name=SERVED, api_key=KEY)) as base:
        yield f"{base}/v1"


@pytest.fixture
def no_openai_env(monkeypatch):
    for name in ("OPENAI_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_act_returns_a_token_exact_turn(url, generator, no_openai_env):
    agent = OpenAIAgent(SERVED, base_url=url, max_tokens=12, temperature=0)
    assert agent.model == SERVED and agent.sampling == {"temperature": 0, "max_tokens": 12}
    turn = agent.act(HELLO, [])
    assert turn.token_ids and turn.prompt_token_ids and turn.logprobs
    assert len(turn.token_ids) == len(turn.logprobs) == turn.usage["completion_tokens"]
    assert len(turn.prompt_token_ids) == turn.usage["prompt_tokens"]
    body = [t for t in turn.token_ids if t not in generator.end_token_ids]
    assert turn.content == generator.tokenizer.decode(body, skip_special_tokens=False)
    assert turn.finish_reason in ("stop", "length") and turn.tool_calls == []


def test_tool_calls_come_back_in_openai_format(generator, no_openai_env):
    with serving(create_app(FixedReplyGenerator(generator, TOOL_REPLY))) as base:
        turn = OpenAIAgent("scripted", base_url=f"{base}/v1").act(HELLO, [BASH])
    (call,) = turn.tool_calls
    assert call["type"] == "function" and call["id"]
    assert call["function"] == {"name": "bash", "arguments": '{"command": "ls"}'}
    assert turn.finish_reason == "tool_calls" and turn.content is None
    assert turn.message() == {"role": "assistant", "content": None, "tool_calls": [call]}


def context_of(trial: int) -> EpisodeContext:
    """What the runner hands a model agent for trial `trial` of task t-1 (no hidden task)."""
    return EpisodeContext("orchard/SWE-v0", None, [], AssistantTurn, task_id="t-1", trial=trial)


def test_each_trial_is_its_own_draw_and_a_rerun_repeats_it(url, no_openai_env):
    """Seeded sampling at temperature 1 on the real server: trials differ (the seed used to be the run seed
    plus the turn, the same for every trial), and the same run seed gives the same draws again."""

    def draws() -> list[list[int] | None]:
        agent = OpenAIAgent(SERVED, base_url=url, seed=5, temperature=1.0, max_tokens=8)
        turns = []
        for trial in range(3):
            agent.start(context_of(trial))
            turns.append(agent.act(HELLO, []).token_ids)
        return turns

    first = draws()
    assert all(first) and len({repr(ids) for ids in first}) == 3
    assert draws() == first


def recorded_context(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> list[EpisodeContext]:
    """The contexts the runner hands `agent` at each start."""
    seen: list[EpisodeContext] = []
    start = agent.start

    def recording(context: EpisodeContext) -> None:
        seen.append(context)
        start(context)

    monkeypatch.setattr(agent, "start", recording)
    return seen


def test_the_runner_gives_the_openai_agent_no_hidden_task(env, url, monkeypatch, no_openai_env):
    agent = OpenAIAgent(SERVED, base_url=url, max_tokens=4)
    seen = recorded_context(agent, monkeypatch)
    run_episode(env, get_harness("react", max_turns=1), agent, task_id=TASK.instance_id, trial=2)
    (context,) = seen
    assert context.task is None and (context.task_id, context.trial) == (TASK.instance_id, 2)
    assert env.unwrapped.task.patch  # the env holds it; the agent was not handed it


def test_configured_from_the_environment(keyed_url, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", keyed_url)
    monkeypatch.setenv("OPENAI_MODEL", SERVED)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    agent = get_agent("openai", max_tokens=4, logprobs=False)
    assert agent.model == SERVED and agent.base_url == keyed_url
    turn = agent.act(HELLO, [])
    assert turn.token_ids and turn.logprobs is None  # not asked for


def test_setup_mistakes_are_config_errors(url, keyed_url, no_openai_env):
    with pytest.raises(ConfigError, match="OPENAI_MODEL"):
        OpenAIAgent(base_url=url)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIAgent(SERVED)  # no key and no local server
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIAgent(SERVED, base_url=keyed_url, api_key="wrong", max_retries=0).act(HELLO, [])
    with pytest.raises(ConfigError, match="OPENAI_MODEL"):
        OpenAIAgent("gpt-7", base_url=url, max_retries=0).act(HELLO, [])


def test_an_unreachable_server_is_backend_unavailable(no_openai_env):
    agent = OpenAIAgent(SERVED, base_url=f"http://127.0.0.1:{unused_port()}/v1", max_retries=0, timeout=5)
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        agent.act(HELLO, [])


def test_an_overlong_prompt_is_context_overflow(url, generator, monkeypatch, no_openai_env):
    monkeypatch.setattr(generator, "context_tokens", 16)
    with pytest.raises(ContextOverflow, match="context window"):
        OpenAIAgent(SERVED, base_url=url, max_retries=0).act(HELLO, [])


REFUSALS = {  # what strict servers say about extras they do not take
    "return_token_ids": "Unrecognized request argument supplied: return_token_ids",
    "logprobs": "This model does not support logprobs",
    "max_tokens": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
    "'max_completion_tokens' instead.",
}


def fussy_server() -> tuple[FastAPI, list[dict]]:
    """Refuses the extras above, one at a time (as OpenAI does), and fails for good under /broken."""
    app, seen = FastAPI(), []

    @app.post("/v1/chat/completions")
    async def complete(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body)
        for field, message in REFUSALS.items():
            if field in body:
                error = {"message": message, "type": "invalid_request_error", "param": field, "code": None}
                return JSONResponse({"error": error}, status_code=400)
        message = {"role": "assistant", "content": "hi"}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        usage = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
        response = {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
        return JSONResponse({**response, "usage": usage})

    @app.post("/broken/v1/chat/completions")
    async def broken() -> JSONResponse:
        return JSONResponse({"error": {"message": "out of memory", "type": "server_error"}}, status_code=503)

    return app, seen


def test_a_strict_server_is_asked_again_without_the_extras(no_openai_env):
    app, seen = fussy_server()
    with serving(app) as base:
        agent = OpenAIAgent("m", base_url=f"{base}/v1", seed=3, max_tokens=5)
        first, second = agent.act(HELLO, []), agent.act(HELLO, [])
        with pytest.raises(BackendUnavailable, match="out of memory"):
            OpenAIAgent("m", base_url=f"{base}/broken/v1", max_retries=0).act(HELLO, [])
    extras = ("return_token_ids", "logprobs", "max_tokens", "max_completion_tokens")
    assert [[e for e in extras if e in body] for body in seen] == [
        ["return_token_ids", "logprobs", "max_tokens"],
        ["logprobs", "max_tokens"],
        ["max_tokens"],
        ["max_completion_tokens"],
        ["max_completion_tokens"],  # remembered: the next turn asks right away
    ]
    turn_seeds = [draw_seed(3, "", 0, turn) for turn in (0, 1)]  # no episode started: task "", trial 0
    assert [body["seed"] for body in seen] == [*[turn_seeds[0]] * 4, turn_seeds[1]]  # a retry: the same draw
    assert first.content == second.content == "hi" and first.token_ids is None and first.logprobs is None
    assert first.usage == {"prompt_tokens": 3, "completion_tokens": 1}


@pytest.fixture(scope="module")
def env(local_backend):
    environment = gym.make("orchard/SWE-v0", backend=local_backend, max_steps=2)
    yield environment
    environment.close()


@pytest.mark.parametrize("harness", ["tool-calling", "react", "bash-only"])
def test_episodes_through_orchard_serve(env, url, harness, tmp_path, no_openai_env):
    agent = OpenAIAgent(SERVED, base_url=url, max_tokens=32, temperature=0)
    episode = run_episode(env, get_harness(harness, max_format_errors=1), agent, task_id=TASK.instance_id)
    meta = episode.metadata
    assert meta.status in STATUSES and meta.status not in ("error", "infra_error"), meta.error
    assert (meta.agent, meta.model, meta.harness) == ("openai", SERVED, harness)
    assert meta.sampling == {"temperature": 0, "max_tokens": 32}
    assert episode.turns and all(t.token_ids and t.prompt_token_ids for t in episode.turns)
    assert all(len(t.logprobs) == len(t.token_ids) for t in episode.turns)
    assert meta.tokens["completion"] == sum(len(t.token_ids) for t in episode.turns)
    assert_round_trips(episode, tmp_path)
